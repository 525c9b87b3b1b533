"""The DAO (services/dispatch/store/) against real PostgreSQL: what each statement writes, and
that every change carries its delivery event in the outbox."""

import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlmodel import Session

from services.common.crypto import Sealer, generate_key_spec
from services.common.db import session_scope
from services.common.messages import decode_delivery_event
from services.common.outbox import OutboxMessage
from services.dispatch.models import Delivery, DispatchNotice, DispatchSender
from services.dispatch.store import deliveries, incidents, notices, reports, senders
from services.dispatch.store.deliveries import Change, NewDelivery
from testkit.notices import incident_message, notice_message, person

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
SEALER = Sealer(generate_key_spec("t"))


def _events(engine) -> list:
    with Session(engine) as session:
        rows = session.execute(select(OutboxMessage.payload).order_by(OutboxMessage.id)).scalars()
        return [decode_delivery_event(p) for p in rows]


def _rows(engine) -> dict[tuple[str, str], Delivery]:
    with Session(engine) as session:
        return {(d.notice_id, d.channel): d for d in session.exec(select(Delivery)).scalars()}


def _store_notice(engine, n: int, channels: dict[str, float], incident_id: str = "inc-1",
                  status: str = "queued"):
    """A stored, planned notice with one delivery per channel, due at the given offsets (s)."""
    notice = notice_message(SEALER, n, person(n), incident_id=incident_id)
    with session_scope(engine) as session:
        notices.insert_notices(session, [notices.NewNotice(notice, notice.to_bytes(), True)], NOW)
        deliveries.insert_deliveries(session, [
            NewDelivery(notice.notice_id, incident_id, notice.person_id, 1, channel, status,
                        f"{notice.notice_id}:{channel}", (NOW + timedelta(seconds=due)).timestamp())
            for channel, due in channels.items()
        ], NOW)
    return notice


def test_upsert_incident_keeps_the_latest_revision(dispatch_engine):
    second, first = incident_message(revision=2), incident_message(revision=1)
    with session_scope(dispatch_engine) as session:
        assert incidents.upsert_incident(session, second, second.to_bytes()) == (True, second)
    with session_scope(dispatch_engine) as session:
        stored, latest = incidents.upsert_incident(session, first, first.to_bytes())
    assert not stored and latest.revision == 2  # an older revision changes nothing
    with Session(dispatch_engine) as session:
        assert incidents.load_incident(session, "inc-1").revision == 2
        assert incidents.load_incident(session, "inc-nope") is None


def test_insert_notices_is_idempotent(dispatch_engine):
    a, b = (notice_message(SEALER, n, person(n)) for n in (1, 2))
    with session_scope(dispatch_engine) as session:
        new = notices.insert_notices(session, [notices.NewNotice(a, a.to_bytes(), False)], NOW)
    assert new == {a.notice_id}
    with session_scope(dispatch_engine) as session:
        new = notices.insert_notices(
            session, [notices.NewNotice(a, a.to_bytes(), True), notices.NewNotice(b, b.to_bytes(), True)], NOW)
        assert new == {b.notice_id}  # the replay of `a` inserted nothing, and changed nothing
        assert notices.incidents_awaited(session) == ["inc-1"]
        assert notices.incidents_awaited(session, "inc-other") == []
        [claimed] = notices.claim_unplanned(session, ["inc-1"], limit=10)
        assert claimed.notice_id == a.notice_id
        assert notices.claim_unplanned(session, ["inc-1"], limit=10) == []  # claimed once
    with Session(dispatch_engine) as session:
        assert all(n.planned for n in session.exec(select(DispatchNotice)).scalars())


def test_insert_deliveries_publishes_their_events(dispatch_engine):
    notice = _store_notice(dispatch_engine, 1, {"email": 0})
    assert [(e.notice_id, e.channel, e.status, e.attempt) for e in _events(dispatch_engine)] == [
        (notice.notice_id, "email", "queued", 0)]


def test_claim_due_claims_due_deliveries_on_the_channels_asked(dispatch_engine):
    due = _store_notice(dispatch_engine, 1, {"email": -5, "sms": -1})
    later = _store_notice(dispatch_engine, 2, {"email": 60})
    postal = _store_notice(dispatch_engine, 3, {"postal": -5})
    with session_scope(dispatch_engine) as session:
        claimed = deliveries.claim_due(session, "owner-a", NOW, 120.0,
                                       {"email": 10, "sms": 10, "postal": 10})
    assert [(c.notice_id, c.channel, c.attempt) for c in claimed] == [
        (due.notice_id, "email", 1), (due.notice_id, "sms", 1)]  # oldest due first; no postal
    sms = claimed[1]
    assert sms.reference == f"{due.notice_id}:sms" and sms.says_emailed  # its email is on its way
    assert sms.notice_payload == due.to_bytes()
    assert (sms.gateway, sms.may_hold, sms.says_update) == (None, False, False)
    rows = _rows(dispatch_engine)
    email = rows[(due.notice_id, "email")]
    assert (email.status, email.lease_owner) == ("sending", "owner-a")
    # The lease is on the database's clock (the test's NOW is a date in the past).
    assert abs(email.lease_until - (time.time() + 120.0)) < 30
    assert email.first_attempt_at == NOW.timestamp()
    assert rows[(later.notice_id, "email")].status == "queued"
    assert rows[(postal.notice_id, "postal")].status == "queued"
    assert [e.status for e in _events(dispatch_engine)][-2:] == ["sending", "sending"]
    with session_scope(dispatch_engine) as session:
        assert deliveries.claim_due(session, "owner-a", NOW, 120.0, {"email": 10, "sms": 10}) == []
        assert deliveries.claim_due(session, "owner-a", NOW, 120.0, {"postal": 10}) == []
        assert deliveries.pending_count(session) == 3  # two sending, one queued email; not postal


def test_claim_due_takes_at_most_the_permits_of_each_channel(dispatch_engine):
    for n in range(1, 6):
        _store_notice(dispatch_engine, n, {"email": -n, "sms": -n})
    with session_scope(dispatch_engine) as session:
        claimed = deliveries.claim_due(session, "a", NOW, 60.0, {"email": 2, "sms": 1})
    assert sorted(c.channel for c in claimed) == ["email", "email", "sms"]


def test_concurrent_claims_never_share_a_delivery(dispatch_engine):
    """Two replicas claiming at once: SKIP LOCKED gives each different rows."""
    for n in range(1, 5):
        _store_notice(dispatch_engine, n, {"email": -n})
    with session_scope(dispatch_engine) as first, session_scope(dispatch_engine) as second:
        a = deliveries.claim_due(first, "a", NOW, 120.0, {"email": 2})  # not committed yet
        b = deliveries.claim_due(second, "b", NOW, 120.0, {"email": 10})
    assert len(a) == 2 and len(b) == 2
    assert not {c.id for c in a} & {c.id for c in b}


def _renew(engine, owner, lease_s):
    with session_scope(engine) as session:
        return senders.renew(session, owner, lease_s)


def _expire(engine, me, lease_s, now=NOW):
    with session_scope(engine) as session:
        return deliveries.expire_leases(session, me, lease_s, now)


@contextmanager
def heartbeating(engine, owner, lease_s):
    """`owner` renewing its lease every 50 ms, as a sender's heartbeat does, until the block ends."""
    stop = threading.Event()

    def beat():
        while not stop.is_set():
            _renew(engine, owner, lease_s)
            stop.wait(0.05)

    thread = threading.Thread(target=beat, daemon=True)
    _renew(engine, owner, lease_s)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_claims_of_a_live_owner_are_never_recovered(dispatch_engine):
    notice = _store_notice(dispatch_engine, 1, {"email": -1})
    _renew(dispatch_engine, "b", 60.0)
    with heartbeating(dispatch_engine, "a", 0.5):
        with session_scope(dispatch_engine) as session:
            deliveries.claim_due(session, "a", NOW, 0.5, {"email": 1})
        for _ in range(6):  # a slow send: well past the claim's lease, but "a" keeps renewing
            time.sleep(0.2)
            assert _expire(dispatch_engine, "b", 60.0, NOW + timedelta(hours=1)) == []
    assert _rows(dispatch_engine)[(notice.notice_id, "email")].status == "sending"


A_LEASE_S = 2.0


def test_a_dead_owners_claims_are_recovered_once_its_lease_lapses(dispatch_engine):
    notice = _store_notice(dispatch_engine, 1, {"email": -1, "sms": -1})
    _renew(dispatch_engine, "b", 60.0)  # alive before "a" dies: it sees the lapse
    # The lease runs on the database's clock from here: it must outlast the next three steps on
    # a loaded box (0.3 s did not, at load 30: "still leased" found it lapsed), then lapse.
    _renew(dispatch_engine, "a", A_LEASE_S)
    with session_scope(dispatch_engine) as session:
        deliveries.claim_due(session, "a", NOW, A_LEASE_S, {"email": 1})
    assert _expire(dispatch_engine, "a", A_LEASE_S) == []  # nobody recovers their own claims
    assert _expire(dispatch_engine, "b", 60.0) == []  # still leased
    later = NOW + timedelta(seconds=11)
    deadline = time.monotonic() + 30
    while not (recovered_keys := _expire(dispatch_engine, "b", 60.0, later)):  # until it lapses
        assert time.monotonic() < deadline, "the dead owner's lease never lapsed"
        time.sleep(0.1)
    [recovered] = recovered_keys
    assert (recovered.notice_id, recovered.channel) == (notice.notice_id, "email")
    row = _rows(dispatch_engine)[(notice.notice_id, "email")]
    assert (row.status, row.reason_code, row.lease_until, row.lease_owner, row.may_hold) == (
        "technical-failure", "lease-expired", None, None, True)
    assert row.reference == f"{notice.notice_id}:email"  # the same reference next time
    assert row.next_attempt_at == later.timestamp()
    last = _events(dispatch_engine)[-1]
    assert (last.status, last.reason_code, last.attempt) == ("technical-failure", "lease-expired", 1)
    with Session(dispatch_engine) as session:  # the dead owner is forgotten
        assert session.get(DispatchSender, "a") is None


def test_after_an_outage_owners_get_a_lease_to_come_back(dispatch_engine):
    """The database was away longer than the lease: every lease lapsed at once. A sender coming
    back must not recover another's claims before that one had a whole lease to reconnect."""
    notice = _store_notice(dispatch_engine, 1, {"email": -1})
    lease = 0.6
    _renew(dispatch_engine, "a", lease)
    _renew(dispatch_engine, "b", lease)
    with session_scope(dispatch_engine) as session:
        deliveries.claim_due(session, "a", NOW, lease, {"email": 1})
    time.sleep(lease + 0.2)  # the "outage": nobody renews
    with heartbeating(dispatch_engine, "b", lease):  # b is back first, alive from now
        assert _expire(dispatch_engine, "b", lease) == []  # a gets a lease's time
        with heartbeating(dispatch_engine, "a", lease):  # ... and comes back within it
            time.sleep(lease + 0.2)
            assert _expire(dispatch_engine, "b", lease) == []
            assert _rows(dispatch_engine)[(notice.notice_id, "email")].lease_owner == "a"
        time.sleep(lease + 0.2)  # now a really is gone while b watches
        assert len(_expire(dispatch_engine, "b", lease)) == 1


def test_a_stopped_senders_claims_are_recovered_at_once_even_by_a_newcomer(dispatch_engine):
    """A sender that stops gives its lease up: it holds no answers any more, so the claims it
    abandoned are recovered at once — even by a sender that started after it stopped (a
    restart), which would otherwise wait a whole lease as after an outage."""
    notice = _store_notice(dispatch_engine, 1, {"email": -1})
    lease = 60.0
    _renew(dispatch_engine, "a", lease)
    with session_scope(dispatch_engine) as session:
        deliveries.claim_due(session, "a", NOW, lease, {"email": 1})
    with session_scope(dispatch_engine) as session:
        senders.retire(session, "a")
    _renew(dispatch_engine, "b", lease)  # alive only since after a stopped
    [recovered] = _expire(dispatch_engine, "b", lease)
    assert recovered.notice_id == notice.notice_id
    assert _rows(dispatch_engine)[(notice.notice_id, "email")].may_hold  # same reference again


def test_claims_from_before_owners_keep_their_own_lease(dispatch_engine):
    notice = _store_notice(dispatch_engine, 1, {"email": -1}, status="sending")
    with session_scope(dispatch_engine) as session:  # as 0001's sender left it: no owner
        session.execute(update(Delivery).values(lease_until=time.time() - 1))
    _renew(dispatch_engine, "b", 60.0)
    assert len(_expire(dispatch_engine, "b", 60.0)) == 1
    assert _rows(dispatch_engine)[(notice.notice_id, "email")].status == "technical-failure"


def test_supersede_older_replaces_unsent_versions_only(dispatch_engine):
    sent = _store_notice(dispatch_engine, 1, {"email": -1, "postal": -1})
    queued = _store_notice(dispatch_engine, 2, {"sms": 600})  # held until morning
    with session_scope(dispatch_engine) as session:
        row = deliveries.lock_delivery(session, sent.notice_id, "email")
        deliveries.write_changes(session, [Change(row, "sent", "smtp", None)], NOW)
    newer = [notice_message(SEALER, n, person(n), version=2) for n in (1, 2)]
    with session_scope(dispatch_engine) as session:
        notices.insert_notices(session, [notices.NewNotice(n, n.to_bytes(), True) for n in newer], NOW)
        deliveries.insert_deliveries(session, [
            NewDelivery(n.notice_id, "inc-1", n.person_id, 2, "email", "queued",
                        f"{n.notice_id}:email", NOW.timestamp()) for n in newer], NOW)
        assert deliveries.supersede_older(session, [sent.person_id, queued.person_id], NOW) == 2
    rows = _rows(dispatch_engine)
    assert rows[(sent.notice_id, "email")].status == "sent"  # already out: stays
    assert rows[(sent.notice_id, "postal")].status == "superseded"  # not mailed yet
    assert rows[(queued.notice_id, "sms")].status == "superseded"
    assert {rows[(n.notice_id, "email")].status for n in newer} == {"queued"}
    assert [(e.channel, e.status) for e in _events(dispatch_engine)[-2:]] == [
        ("postal", "superseded"), ("sms", "superseded")]


def test_write_changes_sets_only_what_a_change_names(dispatch_engine):
    notice = _store_notice(dispatch_engine, 1, {"email": -1, "sms": -1})
    with session_scope(dispatch_engine) as session:
        deliveries.claim_due(session, "a", NOW, 10.0, {"email": 10, "sms": 10})
        rows = deliveries.lock_deliveries(session, [d.id for d in _rows(dispatch_engine).values()])
        email, sms = sorted(rows.values(), key=lambda r: r.channel)
        deliveries.write_changes(session, [
            Change(email, "sent", "smtp", "smtp-250", provider_reference="<m@x>"),
            Change(sms, "temporary-failure", "sms-primary", "http-429", next_attempt_at=123.0,
                   reference=f"{notice.notice_id}:sms:g1", generation=1),
        ], NOW)
    with session_scope(dispatch_engine) as session:
        email = deliveries.lock_delivery(session, notice.notice_id, "email")
        deliveries.write_changes(session, [Change(email, "delivered", "smtp", "receipt-delivered")], NOW)
        assert deliveries.statuses_by_notice(session, [notice.notice_id]) == {
            notice.notice_id: {"email": "delivered", "sms": "temporary-failure"}}
        assert deliveries.lock_delivery(session, notice.notice_id, "postal") is None
    rows = _rows(dispatch_engine)
    email, sms = rows[(notice.notice_id, "email")], rows[(notice.notice_id, "sms")]
    assert email.provider_reference == "<m@x>"  # KEEP by default: the receipt left it alone
    assert (email.reason_code, email.lease_until) == ("receipt-delivered", None)
    assert (sms.reference, sms.generation, sms.next_attempt_at) == (f"{notice.notice_id}:sms:g1", 1, 123.0)
    assert sms.provider_reference is None
    assert [(e.channel, e.status, e.provider) for e in _events(dispatch_engine)[-3:]] == [
        ("email", "sent", "smtp"), ("sms", "temporary-failure", "sms-primary"),
        ("email", "delivered", "smtp")]


def test_summary_and_unreachable_list(dispatch_engine):
    sent = _store_notice(dispatch_engine, 1, {"email": 0})
    postal = _store_notice(dispatch_engine, 2, {"postal": 0})
    nobody = _store_notice(dispatch_engine, 3, {"none": 0}, status="unreachable")
    waiting = notice_message(SEALER, 4, person(4))
    _store_notice(dispatch_engine, 5, {"postal": 0}, incident_id="inc-2")  # not listed
    with session_scope(dispatch_engine) as session:
        notices.insert_notices(session, [notices.NewNotice(waiting, waiting.to_bytes(), False)], NOW)
        row = deliveries.lock_delivery(session, sent.notice_id, "email")
        deliveries.write_changes(session, [Change(row, "sent", "smtp", None)], NOW)
    with Session(dispatch_engine) as session:
        counts = reports.summary(session, "inc-1")
        listed = reports.unreachable(session, "inc-1")
    assert (counts.incident_id, counts.notices, counts.awaiting_incident) == ("inc-1", 4, 1)
    assert counts.by_channel == {"email": {"sent": 1}, "postal": {"queued": 1},
                                 "none": {"unreachable": 1}}
    assert [(u.channel, u.notice_payload) for u in listed] == [
        ("postal", postal.to_bytes()), ("none", nobody.to_bytes())]
