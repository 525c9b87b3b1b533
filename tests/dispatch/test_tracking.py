"""The units of work (services/dispatch/tracking.py) on real PostgreSQL: planning, recording
what gateways answered, fallback and receipts, each as one transaction through the store."""

import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlmodel import Session

from services.common.crypto import Sealer, generate_key_spec
from services.common.db import session_scope
from services.common.messages import DeliveryStatus as S
from services.common.messages import NoticeCorrection, decode_delivery_event
from services.common.outbox import OutboxMessage
from services.dispatch import tracking
from services.dispatch.delivery_state import ReceiptOutcome
from services.dispatch.incidents import IncidentBook
from services.dispatch.models import Delivery
from services.dispatch.policy import QuietHours, RetryPolicy
from services.dispatch.providers.base import Lookup, StatusAnswer
from services.dispatch.providers.receipts import Receipt
from services.dispatch.store import deliveries, incidents, reports, senders
from services.dispatch.tracking import SendOutcome
from testkit.notices import incident_message, notice_message, person

pytestmark = pytest.mark.postgres

NZ = ZoneInfo("Pacific/Auckland")
NOW = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)  # 14:00 in Auckland: not quiet
SEALER = Sealer(generate_key_spec("t"))
RETRY = RetryPolicy(base_seconds=10, cap_seconds=10, max_attempts=3, max_total=timedelta(hours=1))
OWNER = "sender-a"


@pytest.fixture
def book(dispatch_engine) -> IncidentBook:
    return IncidentBook()


def _incident(engine, book, incident_id="inc-1", **policy):
    message = incident_message(incident_id, **policy)
    with session_scope(engine) as session:
        incidents.upsert_incident(session, message, message.to_bytes())
    book.remember(message)


def _run(engine, fn, *args):
    with session_scope(engine) as session:
        return fn(session, *args)


def _statuses(engine, notice) -> dict[str, str]:
    with Session(engine) as session:
        rows = session.exec(select(Delivery).where(Delivery.notice_id == notice.notice_id)).scalars()
        return {d.channel: d.status for d in rows}


def _row(engine, notice, channel) -> Delivery:
    with Session(engine) as session:
        return session.exec(select(Delivery).where(
            Delivery.notice_id == notice.notice_id, Delivery.channel == channel)).scalars().one()


def _events(engine) -> list:
    with Session(engine) as session:
        return [decode_delivery_event(p) for p in
                session.execute(select(OutboxMessage.payload).order_by(OutboxMessage.id)).scalars()]


def _send(engine, book, status, now=NOW, channels=("email", "sms"), **answer) -> list:
    """Claim what is due and record `status` as the gateway's answer for each."""
    claimed = _claim(engine, now, channels)
    outcomes = [SendOutcome(c.id, c.attempt, status, "gw", **answer) for c in claimed]
    _run(engine, tracking.record_results, book, outcomes, RETRY, None, now, OWNER)
    return claimed


def _claim(engine, now=NOW, channels=("email", "sms"), owner=OWNER, lease_s=60.0, **kw):
    return _run(engine, tracking.claim, owner, lease_s, now, {c: 100 for c in channels}, **kw)


def _record(engine, book, outcomes, now=NOW, owner=OWNER):
    return _run(engine, tracking.record_results, book, outcomes, RETRY, None, now, owner)


def _receive(engine, book, notice, channel, status, provider_status, reference=None):
    receipt = Receipt("prov-1", reference or f"{notice.notice_id}:{channel}", status,
                      provider_status, None)
    return _run(engine, tracking.record_receipt, book, "sms-primary", receipt, RETRY, None, NOW)


# ------------------------------------------------------------------------------ planning


def test_notices_are_planned_on_their_first_channels_or_wait_for_their_incident(
    dispatch_engine, book
):
    _incident(dispatch_engine, book)
    email = notice_message(SEALER, 1, person(1))
    nothing = notice_message(SEALER, 2, person(2, email=False, mobile=False, address=False))
    early = notice_message(SEALER, 3, person(3), incident_id="inc-2")
    received = [(n, n.to_bytes()) for n in (email, nothing, early, email)]
    assert _run(dispatch_engine, tracking.record_notices, book, received, None, NOW) == 3
    assert _run(dispatch_engine, tracking.record_notices, book, received, None, NOW) == 0  # replay
    assert _statuses(dispatch_engine, email) == {"email": "queued"}
    assert _statuses(dispatch_engine, nothing) == {"none": "unreachable"}
    assert _statuses(dispatch_engine, early) == {}
    assert _row(dispatch_engine, email, "email").reference == f"{email.notice_id}:email"

    assert _run(dispatch_engine, tracking.plan_waiting, book, None, NOW) == 0  # inc-2 unknown
    _incident(dispatch_engine, book, "inc-2", mode="both")
    assert _run(dispatch_engine, tracking.plan_waiting, book, None, NOW, "inc-2") == 1
    assert _statuses(dispatch_engine, early) == {"email": "queued", "sms": "queued"}
    assert [(e.status, e.attempt) for e in _events(dispatch_engine)] == [
        ("queued", 0), ("unreachable", 0), ("queued", 0), ("queued", 0)]



def test_a_correction_with_nothing_to_correct_when_planned_is_counted_not_needed(
    dispatch_engine, book
):
    """Version 1 still queued (never sent) when a sent-in-error correction arrives: version 1
    is superseded and the correction has nothing to correct, so nothing is sent. It is kept
    as a `not-needed` delivery per channel, so the Commissioner's `corrections.<channel>.
    not-needed` counts it — as it counts one settled at claim time — once."""
    _incident(dispatch_engine, book)
    first = notice_message(SEALER, 1, person(1))
    later = notice_message(SEALER, 1, person(1), version=2)
    correction = later.model_copy(update={"correction": NoticeCorrection(
        kind="sent_in_error", review_id="rev-1", agencies=list(later.agencies))})
    _run(dispatch_engine, tracking.record_notices, book, [(first, first.to_bytes())], None, NOW)
    _run(dispatch_engine, tracking.record_notices, book,
         [(correction, correction.to_bytes())], None, NOW)
    assert _statuses(dispatch_engine, first) == {"email": "superseded"}
    assert _statuses(dispatch_engine, correction) == {"email": "not-needed"}
    assert _row(dispatch_engine, correction, "email").reason_code == "correction_not_needed"
    assert _claim(dispatch_engine) == []  # nothing to send
    counts = _run(dispatch_engine, reports.commissioner_counts, "inc-1").incident
    assert counts["corrections.email.not-needed"] == 1
    assert [(e.notice_id, e.status) for e in _events(dispatch_engine)][-1] == (
        correction.notice_id, "not-needed")

def test_an_incident_stored_by_another_replica_is_loaded(dispatch_engine):
    writer, reader = IncidentBook(), IncidentBook()
    _incident(dispatch_engine, writer)
    notice = notice_message(SEALER, 1, person(1))
    assert reader.cached("inc-1") is None
    _run(dispatch_engine, tracking.record_notices, reader, [(notice, notice.to_bytes())], None, NOW)
    assert _statuses(dispatch_engine, notice) == {"email": "queued"}
    assert reader.cached("inc-1").revision == 1


def test_sms_queued_in_quiet_hours_is_due_when_they_end(dispatch_engine, book):
    _incident(dispatch_engine, book, mode="sms_else_email")
    night = datetime(2026, 3, 10, 23, 0, tzinfo=NZ).astimezone(UTC)
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())],
         QuietHours(), night)
    morning = datetime(2026, 3, 11, 8, 0, tzinfo=NZ).astimezone(UTC)
    assert _row(dispatch_engine, notice, "sms").next_attempt_at == morning.timestamp()


# ------------------------------------------------------------------------------ results and fallback


def test_permanent_failures_walk_the_fallback_order_to_unreachable(dispatch_engine, book):
    _incident(dispatch_engine, book)  # email_else_sms, fallback email → sms → postal
    with_address = notice_message(SEALER, 1, person(1))
    without = notice_message(SEALER, 2, person(2, address=False))
    received = [(n, n.to_bytes()) for n in (with_address, without)]
    _run(dispatch_engine, tracking.record_notices, book, received, None, NOW)

    assert [c.channel for c in _send(dispatch_engine, book, S.PERMANENT_FAILURE)] == ["email"] * 2
    assert _statuses(dispatch_engine, without) == {"email": "permanent-failure", "sms": "queued"}
    assert [c.channel for c in _send(dispatch_engine, book, S.PERMANENT_FAILURE)] == ["sms"] * 2
    assert _statuses(dispatch_engine, with_address) == {
        "email": "permanent-failure", "sms": "permanent-failure", "postal": "queued"}
    assert _statuses(dispatch_engine, without) == {
        "email": "permanent-failure", "sms": "permanent-failure", "none": "unreachable"}
    fallbacks = [(e.channel, e.status) for e in _events(dispatch_engine) if e.reason_code == "fallback"]
    assert sorted(fallbacks) == [("none", "unreachable"), ("postal", "queued"),
                                 ("sms", "queued"), ("sms", "queued")]


def test_the_incidents_fallback_list_limits_the_walk(dispatch_engine, book):
    _incident(dispatch_engine, book, fallback=("email", "sms"))  # no letters
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    _send(dispatch_engine, book, S.PERMANENT_FAILURE)
    _send(dispatch_engine, book, S.PERMANENT_FAILURE)
    assert _statuses(dispatch_engine, notice) == {
        "email": "permanent-failure", "sms": "permanent-failure", "none": "unreachable"}


def test_in_both_mode_one_failure_waits_for_the_other_channel(dispatch_engine, book):
    _incident(dispatch_engine, book, mode="both")
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    claimed = _claim(dispatch_engine)
    email, sms = sorted(claimed, key=lambda c: c.channel)
    _record(dispatch_engine, book, [
        SendOutcome(email.id, 1, S.PERMANENT_FAILURE, "smtp", detail="smtp-550")])
    assert _statuses(dispatch_engine, notice) == {"email": "permanent-failure", "sms": "sending"}
    _record(dispatch_engine, book, [
        SendOutcome(sms.id, 1, S.PERMANENT_FAILURE, "gw", detail="http-400")])
    assert _statuses(dispatch_engine, notice) == {
        "email": "permanent-failure", "sms": "permanent-failure", "postal": "queued"}


def test_two_channels_failing_at_once_in_two_transactions_still_fall_back(dispatch_engine, book):
    """"Both" mode: the email is refused in one transaction while the SMS's 'failed' receipt
    is applied in another. Each used to see the other channel still working and leave the
    fallback to it: the person ended on neither the postal nor the unreachable list."""
    _incident(dispatch_engine, book, mode="both")
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    email, sms = sorted(_claim(dispatch_engine), key=lambda c: c.channel)
    _record(dispatch_engine, book, [SendOutcome(sms.id, 1, S.SENT, "sms-primary")])
    failed = Receipt("prov-1", sms.reference, S.PERMANENT_FAILURE, "failed", None)
    receipt = threading.Thread(target=_run, args=(
        dispatch_engine, tracking.record_receipt, book, "sms-primary", failed, RETRY, None, NOW))
    with session_scope(dispatch_engine) as refusal:  # committed when the block ends
        tracking.record_results(refusal, book, [
            SendOutcome(email.id, 1, S.PERMANENT_FAILURE, "smtp", detail="smtp-550")],
            RETRY, None, NOW, OWNER)
        receipt.start()
        receipt.join(timeout=1.0)  # decides while the refusal is not committed yet
    receipt.join()
    assert _statuses(dispatch_engine, notice) == {
        "email": "permanent-failure", "sms": "permanent-failure", "postal": "queued"}


def test_accepted_sends_record_the_providers_reference(dispatch_engine, book):
    _incident(dispatch_engine, book)
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    _send(dispatch_engine, book, S.SENT, provider_reference="m-1", detail="smtp-250")
    row = _row(dispatch_engine, notice, "email")
    assert (row.status, row.provider, row.provider_reference, row.reason_code, row.lease_until) == (
        "sent", "gw", "m-1", "smtp-250", None)


def test_temporary_failures_back_off_then_give_up_and_fall_back(dispatch_engine, book):
    _incident(dispatch_engine, book)
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    _send(dispatch_engine, book, S.TEMPORARY_FAILURE, retry_after=30.0, detail="smtp-451")
    row = _row(dispatch_engine, notice, "email")
    assert row.status == "temporary-failure" and row.reason_code == "smtp-451"
    assert row.next_attempt_at >= NOW.timestamp() + 30.0  # Retry-After is a minimum
    assert _send(dispatch_engine, book, S.TEMPORARY_FAILURE) == []  # not due yet
    later = NOW + timedelta(minutes=1)
    _send(dispatch_engine, book, S.TECHNICAL_FAILURE, now=later, detail="timeout")
    assert _row(dispatch_engine, notice, "email").status == "technical-failure"
    _send(dispatch_engine, book, S.TEMPORARY_FAILURE, now=later + timedelta(minutes=1))
    row = _row(dispatch_engine, notice, "email")
    assert (row.status, row.attempts, row.reason_code) == ("permanent-failure", 3, "retries-exhausted")
    assert _statuses(dispatch_engine, notice)["sms"] == "queued"


def test_an_answer_for_an_attempt_that_moved_on_is_dropped(dispatch_engine, book):
    """The first sender's claim was recovered (its lease lapsed) and another claimed it again:
    the first one's late answer is dropped — it never records over another's claim."""
    _incident(dispatch_engine, book)
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    _run(dispatch_engine, senders.renew, "sender-b", 60.0)
    [first] = _claim(dispatch_engine, channels=["email"], lease_s=0.2)
    time.sleep(0.3)
    assert _run(dispatch_engine, tracking.expire_leases, "sender-b", 60.0, NOW) == 1
    late = SendOutcome(first.id, first.attempt, S.SENT, "smtp")
    assert _record(dispatch_engine, book, [late]) == 0  # recovered: not current any more
    [second] = _claim(dispatch_engine, channels=["email"], owner="sender-b")
    assert _record(dispatch_engine, book, [late]) == 0  # and the row is b's now
    assert _statuses(dispatch_engine, notice) == {"email": "sending"}
    assert second.attempt == 2 and second.may_hold  # the first attempt may have got through
    current = SendOutcome(second.id, second.attempt, S.SENT, "smtp")
    assert _record(dispatch_engine, book, [current], owner="sender-b") == 1


# ------------------------------------------------------------------------------ receipts


def test_receipts_update_repeat_contradict_and_miss(dispatch_engine, book):
    _incident(dispatch_engine, book, mode="sms_else_email")
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    _send(dispatch_engine, book, S.SENT)
    engine = dispatch_engine
    assert _receive(engine, book, notice, "sms", S.DELIVERED, "delivered") is ReceiptOutcome.UPDATED
    assert _receive(engine, book, notice, "sms", S.DELIVERED, "delivered") is ReceiptOutcome.DUPLICATE
    # A handset's 'delivered' is final: a contradicting late receipt is ignored.
    assert _receive(engine, book, notice, "sms", S.PERMANENT_FAILURE, "failed") is ReceiptOutcome.STALE
    assert _receive(engine, book, notice, "email", S.DELIVERED, "delivered") is ReceiptOutcome.UNKNOWN
    row = _row(engine, notice, "sms")
    assert (row.status, row.reason_code, row.provider_reference) == ("delivered", "receipt-delivered", "prov-1")


def test_a_late_bounce_after_delivered_falls_back(dispatch_engine, book):
    _incident(dispatch_engine, book)
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    _send(dispatch_engine, book, S.SENT)
    assert _receive(dispatch_engine, book, notice, "email", S.DELIVERED, "delivered") == "updated"
    assert _receive(dispatch_engine, book, notice, "email", S.PERMANENT_FAILURE, "bounced") == "updated"
    assert _statuses(dispatch_engine, notice) == {"email": "permanent-failure", "sms": "queued"}


def test_an_expired_sms_is_resent_under_a_new_reference(dispatch_engine, book):
    _incident(dispatch_engine, book, mode="sms_else_email")
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    _send(dispatch_engine, book, S.SENT)
    first = f"{notice.notice_id}:sms"
    assert _receive(dispatch_engine, book, notice, "sms", S.TEMPORARY_FAILURE, "expired") == "updated"
    row = _row(dispatch_engine, notice, "sms")
    assert (row.status, row.reference, row.generation) == ("temporary-failure", f"{first}:g1", 1)
    assert row.next_attempt_at > NOW.timestamp()
    # A receipt for the first generation no longer applies.
    assert _receive(dispatch_engine, book, notice, "sms", S.DELIVERED, "delivered", first) == "stale"


def test_a_receipt_naming_the_unreachable_row_is_stale(dispatch_engine, book):
    """'unreachable' is a final state: nothing can report on a delivery never sent. (Before the
    state machine knew it, such a signed receipt crashed the handler with a ValueError.)"""
    _incident(dispatch_engine, book)
    notice = notice_message(SEALER, 1, person(1, email=False, mobile=False, address=False))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    assert _receive(dispatch_engine, book, notice, "none", S.DELIVERED, "delivered") == "stale"
    assert _statuses(dispatch_engine, notice) == {"none": "unreachable"}


# ------------------------------------------------------------------------------ status lookups


def _lookups(engine, now, providers=("gw",), interval_s=60.0, max_age_s=3600.0, limit=100):
    return _run(engine, tracking.take_status_lookups, list(providers), now, limit, interval_s,
                max_age_s)


def _looked_up(engine, book, due, status, provider_status):
    answer = StatusAnswer(Lookup.STATUS, "http-200", status, provider_status, due.reference)
    return _run(engine, tracking.record_lookup, book, due, answer, RETRY, None, NOW, 3600.0)


def test_an_accepted_sms_is_asked_about_after_the_wait_then_each_interval_and_email_never(
        dispatch_engine, book):
    _incident(dispatch_engine, book, mode="both")
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    claimed = _claim(dispatch_engine)
    outcomes = [SendOutcome(c.id, c.attempt, S.SENT, "gw", provider_reference=f"m-{c.channel}")
                for c in claimed]
    _run(dispatch_engine, tracking.record_results, book, outcomes, RETRY, None, NOW, OWNER, 600.0)
    assert _statuses(dispatch_engine, notice) == {"email": "sent", "sms": "sent"}
    assert _lookups(dispatch_engine, NOW + timedelta(seconds=599)) == []  # a receipt may come
    [due] = _lookups(dispatch_engine, NOW + timedelta(seconds=600))  # the SMS only
    assert (due.notice_id, due.channel, due.reference, due.provider, due.provider_reference) == (
        notice.notice_id, "sms", f"{notice.notice_id}:sms", "gw", "m-sms")
    assert _lookups(dispatch_engine, NOW + timedelta(seconds=600)) == []  # stamped: not twice
    assert _lookups(dispatch_engine, NOW + timedelta(seconds=600), providers=["dry-run"]) == []
    assert len(_lookups(dispatch_engine, NOW + timedelta(seconds=660))) == 1  # the interval on
    # Past the maximum age (from its first attempt) nobody asks again: it is counted.
    late = NOW + timedelta(seconds=3601)
    assert _lookups(dispatch_engine, late + timedelta(seconds=60)) == []
    assert _run(dispatch_engine, deliveries.count_unconfirmed_sms, ["gw"],
                late.timestamp() - 3600.0) == 1


def test_a_lookup_saying_failed_falls_back_once_and_a_receipt_after_it_is_a_duplicate(
        dispatch_engine, book):
    _incident(dispatch_engine, book, mode="sms_else_email")
    notice = notice_message(SEALER, 1, person(1))
    _run(dispatch_engine, tracking.record_notices, book, [(notice, notice.to_bytes())], None, NOW)
    _send(dispatch_engine, book, S.SENT, provider_reference="m-1")
    [due] = _lookups(dispatch_engine, NOW + timedelta(hours=1), max_age_s=86400.0)
    engine = dispatch_engine
    assert _looked_up(engine, book, due, S.PERMANENT_FAILURE, "failed") is ReceiptOutcome.UPDATED
    assert _statuses(engine, notice) == {"sms": "permanent-failure", "email": "queued"}
    assert _row(engine, notice, "sms").reason_code == "lookup-failed"
    # Asked again (another replica's answer, a pass retried), then the lost receipt after all:
    # nothing more is queued, the one fallback stays.
    assert _looked_up(engine, book, due, S.PERMANENT_FAILURE, "failed") is ReceiptOutcome.DUPLICATE
    assert _receive(engine, book, notice, "sms", S.PERMANENT_FAILURE, "failed") is ReceiptOutcome.DUPLICATE
    assert _looked_up(engine, book, due, S.DELIVERED, "delivered") is ReceiptOutcome.STALE
    fallbacks = [e for e in _events(engine) if e.channel == "email" and e.status == "queued"]
    assert len(fallbacks) == 1
    assert _statuses(engine, notice) == {"sms": "permanent-failure", "email": "queued"}


def test_a_lookup_leaves_a_final_delivery_and_a_resent_generation_alone(dispatch_engine, book):
    _incident(dispatch_engine, book, mode="sms_else_email")
    delivered, expired = (notice_message(SEALER, n, person(n)) for n in (1, 2))
    _run(dispatch_engine, tracking.record_notices, book,
         [(n, n.to_bytes()) for n in (delivered, expired)], None, NOW)
    _send(dispatch_engine, book, S.SENT, provider_reference="m-1")
    due = {d.notice_id: d for d in _lookups(dispatch_engine, NOW + timedelta(hours=1),
                                            max_age_s=86400.0)}
    engine = dispatch_engine
    # The receipt came between the pass taking it and the answer: the answer changes nothing.
    assert _receive(engine, book, delivered, "sms", S.DELIVERED, "delivered") == "updated"
    assert _looked_up(engine, book, due[delivered.notice_id], S.PERMANENT_FAILURE,
                      "failed") is ReceiptOutcome.STALE
    assert _statuses(engine, delivered) == {"sms": "delivered"}
    # Expired and resent under a new reference since: an answer about the old one is stale.
    assert _receive(engine, book, expired, "sms", S.TEMPORARY_FAILURE, "expired") == "updated"
    assert _looked_up(engine, book, due[expired.notice_id], S.PERMANENT_FAILURE,
                      "failed") is ReceiptOutcome.STALE
    assert _statuses(engine, expired) == {"sms": "temporary-failure"}
