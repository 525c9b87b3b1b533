"""Dispatch under faults (issue 10, items 6 and 9–13): real Kafka, real PostgreSQL (behind a
TCP proxy where the database must go away), the local SMTP and SMS gateways with their fault
controls. Every test ends with a reconciliation against what the gateways themselves logged
(SMTP maildir, SMS message log): sends per person per channel against what each person should
have got — exactly once, never twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from services.common.crypto import Sealer
from services.common.messages import NoticeAgency, NoticeCorrection
from services.gateways.sms_server import SmsGateway
from services.gateways.smtp_server import SmtpGateway
from testkit.infra import free_port
from testkit.notices import incident_message, notice_message, person

from .faults import TcpProxy
from .reconcile import Reconciliation
from .stack import (
    COORDINATOR,
    RECEIPT_SECRET,
    REPO,
    MutableClock,
    dispatch_settings,
    healthy,
    publish_to_dispatch,
    running_dispatch,
    subprocess_env,
    until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

NZ = ZoneInfo("Pacific/Auckland")


@pytest.fixture
def mail(tmp_path) -> Path:
    return tmp_path / "maildir"


@pytest.fixture
async def smtp(mail):
    async with SmtpGateway(maildir=mail, webhook_secret=RECEIPT_SECRET) as gw:
        yield gw


@pytest.fixture
async def sms(tmp_path):
    async with SmsGateway(callback_secret=RECEIPT_SECRET,
                          message_log=tmp_path / "sms-primary.jsonl") as gw:
        yield gw


@pytest.fixture
async def sms2(tmp_path):
    async with SmsGateway(callback_secret=RECEIPT_SECRET,
                          message_log=tmp_path / "sms-secondary.jsonl") as gw:
        yield gw


def _rows(db_url: str) -> list[tuple[str, str, str, str | None]]:
    """(notice_id, channel, status, reason_code) of every delivery, read past any proxy."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT notice_id, channel, status, reason_code FROM delivery ORDER BY id").fetchall()


def _statuses(db_url: str) -> dict[tuple[str, str], str]:
    return {(n, c): s for n, c, s, _ in _rows(db_url)}




SETTLED = {"sent", "delivered", "permanent-failure", "superseded", "unreachable", "queued",
           "not-needed"}


def _settled(db_url: str, rows: int) -> bool:
    """`rows` deliveries, none of them in flight or awaiting a retry (postal waits: queued)."""
    found = _rows(db_url)
    return len(found) >= rows and all(
        s in SETTLED and (s != "queued" or c == "postal") for _, c, s, _ in found)


# ------------------------------------------------------------------------------- item 9


@pytest.mark.parametrize("fault", ["slow", "rate-limited"])
async def test_slow_or_rate_limited_smtp_beyond_the_lease_sends_each_email_once(
    fault, service_env, pg_database, smtp, sms, mail
):
    """24 emails through 2 SMTP connections that answer DATA after 0.3 s (or at 8/s): 3 s of
    sending against a 2 s lease. Claims are taken only as sends can start, and the lease is
    renewed while they run: no claim lapses mid-send, no second copy."""
    db = pg_database("dispatch")
    overrides = dict(sending_lease_s=2.0, send_deadline_s=1.5, smtp_pool_size=2,
                     sender_concurrency=64)
    if fault == "slow":
        smtp.hold("DATA", 0.3)
    else:
        overrides |= dict(email_rate_per_s=8.0, email_burst=1)
    settings = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                 sms_url=sms.url, quiet_hours_enabled=False, **overrides)
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        notices = [notice_message(stack.sealer, n, person(n)) for n in range(1, 25)]
        await stack.publish_notices(notices)
        await until(lambda: _settled(db, 24), "every email sent", timeout=90)
        await asyncio.sleep(2.5)  # a lease more: a lapsed claim's second copy would show now
    recon = Reconciliation.of({n.person_id: {"email": 1} for n in notices},
                              {n.notice_id: n.person_id for n in notices}, maildir=mail)
    recon.assert_exact()
    assert all(len(ids) == 1 for ids in recon.message_ids.values())
    assert {s for _, _, s, _ in _rows(db)} == {"sent"}


async def test_a_relay_slow_to_answer_the_final_dot_gets_each_email_once(
    service_env, pg_database, smtp, sms, mail
):
    """The relay takes each message at its final dot and answers 250 only after the send
    deadline (and after the lease: the heartbeat keeps it), within the SMTP command timeout.
    Cut there, the send was recorded ambiguous and sent again with the same reference — an
    SMTP relay does not de-duplicate, so every person got the email twice or more. No crash,
    so no window: once DATA has started it runs to its answer."""
    db = pg_database("dispatch")
    smtp.answer_after_taking(4.0)
    settings = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                 sms_url=sms.url, quiet_hours_enabled=False,
                                 send_deadline_s=0.5, sending_lease_s=3.0, smtp_timeout_s=20.0,
                                 smtp_pool_size=4)
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        notices = [notice_message(stack.sealer, n, person(n)) for n in range(1, 9)]
        await stack.publish_notices(notices)
        await until(lambda: _settled(db, 8), "every email answered", timeout=120)
        attempts = [row.attempts for row in stack.deliveries()]
    recon = Reconciliation.of({n.person_id: {"email": 1} for n in notices},
                              {n.notice_id: n.person_id for n in notices}, maildir=mail)
    print("emails at the gateway per person:", sorted(s["email"] for s in recon.sends.values()),
          "attempts:", attempts, "statuses:", sorted(_statuses(db).values()))
    recon.assert_exact()
    assert set(_statuses(db).values()) == {"sent"}
    assert attempts == [1] * 8


async def test_a_send_past_its_deadline_ends_and_is_retried(
    service_env, pg_database, smtp, sms, mail
):
    """A relay holding its answer to RCPT past the per-send deadline: the attempt is cut off
    before DATA (the relay has nothing of it) well inside the lease, instead of running on
    past it, and retried with the same reference. (A started DATA is never cut: above.)"""
    db = pg_database("dispatch")
    smtp.hold("RCPT", 3.0)
    settings = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                 sms_url=sms.url, quiet_hours_enabled=False,
                                 sending_lease_s=4.0, send_deadline_s=1.0)
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        notice = notice_message(stack.sealer, 1, person(1))
        await stack.publish_notices([notice])
        await until(lambda: any(r == "deadline" for *_, r in _rows(db)), "the deadline", 15)
        assert smtp.data_received == 0  # cut before DATA
        smtp.hold("RCPT", 0.0)
        await until(lambda: _settled(db, 1), "sent on the retry")
        [row] = stack.deliveries()
    assert (row.status, row.reference) == ("sent", f"{notice.notice_id}:email")
    assert row.attempts >= 2  # cut off at least once (retries may come before the hold ends)
    recon = Reconciliation.of({notice.person_id: {"email": 1}},
                              {notice.notice_id: notice.person_id}, maildir=mail)
    recon.assert_exact()


# ------------------------------------------------------------------------------- item 10


def _owned(db_url: str) -> dict[str, int]:
    """Claims ('sending' rows) per lease owner, read past any proxy."""
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute("SELECT lease_owner, count(*) FROM delivery "
                                 "WHERE status = 'sending' GROUP BY lease_owner").fetchall())


def _leases(db_url: str) -> dict[str, bool]:
    """owner -> whether its lease holds now, on the database's clock."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT owner, lease_until >= EXTRACT(EPOCH FROM now()) "
                            "FROM dispatch_sender").fetchall()
    return {owner: bool(holds) for owner, holds in rows}


@pytest.mark.slow  # ~40 s alone: an outage of a lease, then B's lease of grace
async def test_database_outage_longer_than_the_lease_resends_nothing(
    service_env, pg_database, smtp, sms, mail
):
    """Two replicas, each reaching PostgreSQL through its own TCP proxy (the server itself is
    never touched). 16 emails are mid-DATA, 8 claimed by each (8 connection slots each); the
    relay takes each at its final dot and answers 8 s later. Both routes are cut: "the
    database" is down for longer than the lease, every lease lapses, and the answers come
    back meanwhile and wait in memory. The order that would lose the race is then forced:
    B gets the database back first, renews its lease and completes two housekeeping passes
    (lease recovery) while A is still cut off, holding answers for claims still 'sending'
    under its lapsed lease. Only then is A's route given back. B must leave A's claims alone
    for a lease after coming back itself (store/senders.lapsed_owners), so A writes its
    answers. Nothing crashed, so there is no SMTP window: not one email may go out twice."""
    db = pg_database("dispatch")
    route_a, route_b = TcpProxy.for_url(db), TcpProxy.for_url(db)
    await route_a.start()
    await route_b.start()
    smtp.answer_after_taking(8.0)
    lease = 12.0
    common = dict(smtp_port=smtp.port, sms_url=sms.url, quiet_hours_enabled=False,
                  sending_lease_s=lease, send_deadline_s=4.0, smtp_timeout_s=30.0,
                  smtp_pool_size=8)
    a = dispatch_settings(service_env, route_a.url(db), port=free_port(), **common)
    b = dispatch_settings(service_env, route_b.url(db), port=free_port(), **common)
    try:
        async with running_dispatch(a) as stack_a, running_dispatch(b) as stack_b:
            sender_a, sender_b = stack_a.app.state.runtime.sender, stack_b.app.state.runtime.sender
            await stack_a.publish_incident(incident_message())
            notices = [notice_message(stack_a.sealer, n, person(n)) for n in range(1, 17)]
            await stack_a.publish_notices(notices)
            # Each replica has at most 8 sends in flight: 16 taken and unanswered means 8 each.
            await until(lambda: smtp.accepted == 16, "all 16 taken by the relay", timeout=120)
            owned = await asyncio.to_thread(_owned, db)
            assert owned == {sender_a.owner: 8, sender_b.owner: 8}, owned
            await route_a.cut()
            await route_b.cut()
            # The outage: until both leases have lapsed and both replicas hold their answers.
            await until(lambda: not any(_leases(db).values())
                         and sender_a.in_flight == sender_b.in_flight == 0,
                         "both leases lapsed, every answer back", timeout=120)
            held = sender_a.held_answers
            assert held == 8, f"A holds {held} answers"  # the scenario's precondition
            await route_b.restore()
            await until(lambda: _leases(db).get(sender_b.owner, False),
                         "B's lease renewed", timeout=60)
            passes = sender_b.housekeeping_passes
            await until(lambda: sender_b.housekeeping_passes >= passes + 2,
                         "B's housekeeping to run twice with A cut off", timeout=60)
            owned = await asyncio.to_thread(_owned, db)
            print(f"after B's passes: claims per owner {owned}, A holds "
                  f"{sender_a.held_answers} answers, relay took {smtp.accepted}")
            await route_a.restore()
            await until(lambda: _settled(db, 16), "all recorded", timeout=120)
    finally:
        await route_a.stop()
        await route_b.stop()
    recon = Reconciliation.of({n.person_id: {"email": 1} for n in notices},
                              {n.notice_id: n.person_id for n in notices}, maildir=mail)
    print("emails at the gateway per person:", sorted(s["email"] for s in recon.sends.values()))
    recon.assert_exact()
    assert {s for _, _, s, _ in _rows(db)} == {"sent"}


async def test_a_replica_whose_clock_runs_ahead_recovers_nothing_still_in_flight(
    service_env, pg_database, smtp, sms, mail
):
    """Replica B's clock is ten minutes ahead of A's. Leases are judged on the database's
    clock, so B never takes A's slow sends for abandoned ones and sends them again."""
    db = pg_database("dispatch")
    smtp.hold("DATA", 0.5)
    common = dict(smtp_port=smtp.port, sms_url=sms.url, quiet_hours_enabled=False,
                  sending_lease_s=3.0, send_deadline_s=2.5, smtp_pool_size=4)
    ahead = MutableClock(datetime.now(UTC) + timedelta(minutes=10))
    a = dispatch_settings(service_env, db, port=free_port(), **common)
    b = dispatch_settings(service_env, db, port=free_port(), **common)
    async with running_dispatch(a) as stack, running_dispatch(b, clock=ahead):
        await stack.publish_incident(incident_message())
        notices = [notice_message(stack.sealer, n, person(n)) for n in range(1, 17)]
        await stack.publish_notices(notices)
        await until(lambda: _settled(db, 16), "all sent", timeout=120)  # a rebalance or two
        await asyncio.sleep(1.0)
    recon = Reconciliation.of({n.person_id: {"email": 1} for n in notices},
                              {n.notice_id: n.person_id for n in notices}, maildir=mail)
    recon.assert_exact()






@pytest.mark.slow
async def test_killed_mid_send_the_claims_are_recovered_at_the_same_gateway(
    service_env, pg_database, smtp, tmp_path
):
    """Dispatch (its own process) is killed -9 while ten SMS are at the primary gateway, which
    took them and has not answered. The primary is then down for a while. The next replica
    recovers the claims once the dead one's lease lapses and retries ONLY the primary (the
    delivery rows say it may hold them): never the secondary, which would send them again.

    The kill must land while all ten are unanswered. Under CPU starvation the ten sends can
    start seconds apart, so the first sender holds its answers far longer (15 s) than that
    spread can plausibly be, with a send deadline and lease to match; the recovering sender
    keeps the short lease. Every wait is on a condition, with a timeout that a loaded box
    (slow process start, slow group join) cannot reach."""
    primary_port = free_port()
    primary_log, secondary_log = tmp_path / "sms-primary.jsonl", tmp_path / "sms-secondary.jsonl"
    primary = SmsGateway(callback_secret=RECEIPT_SECRET, port=primary_port, message_log=primary_log)
    secondary = SmsGateway(callback_secret=RECEIPT_SECRET, message_log=secondary_log)
    await primary.start()
    await secondary.start()
    db = pg_database("dispatch")
    common = dict(smtp_port=smtp.port, sms_url=primary.url, sms2_url=secondary.url,
                  quiet_hours_enabled=False, sms_timeout_s=30.0, retry_base_s=0.2,
                  retry_cap_s=0.5, retry_max_attempts=60)
    # The killed sender: its claims lapse 20 s after its last heartbeat, and no send of it can
    # end (answer or deadline) before 15 s — the kill comes as soon as the tenth is taken.
    first = dispatch_settings(service_env, db, port=free_port(), sending_lease_s=20.0,
                              send_deadline_s=18.0, **common)
    primary.slow_down(15.0)  # takes each message, answers 15 s later
    # ... and sends no delivery receipt meanwhile: a receipt racing the kill would record
    # 'delivered' for a message the dead sender never heard back about (seen in CI).
    primary.behaviour.hold_receipts = True
    proc = subprocess.Popen([sys.executable, "-m", "services.dispatch"], cwd=REPO,  # noqa: S603
                            env=subprocess_env(first), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        sealer = Sealer(first.data_keys.get_secret_value())
        notices = [notice_message(sealer, n, person(n)) for n in range(1, 11)]
        await until(lambda: healthy(first.port), "dispatch up", timeout=180)
        await publish_to_dispatch(first, incident_message(mode="sms_else_email"), notices)
        await until(lambda: len(primary.messages) == 10, "the primary took all ten", timeout=180)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert set(_statuses(db).values()) == {"sending"}  # nothing recorded
        await primary.stop()  # down: connections refused (the held receipts die with it)
        primary.slow_down(0.0)
        primary.behaviour.hold_receipts = False
        second = dispatch_settings(service_env, db, port=free_port(), sending_lease_s=4.0,
                                   send_deadline_s=3.5, **common)
        async with running_dispatch(second):
            await until(lambda: "lease-expired" in {r for *_, r in _rows(db)}
                         or any(s != "sending" for s in _statuses(db).values()),
                         "claims recovered", timeout=180)
            await asyncio.sleep(2.0)  # retries against the dead primary
            assert secondary.messages == {}  # never failed over: the primary may hold them
            primary.port = primary_port
            await primary.start()
            await until(lambda: _settled(db, 10), "all sent", timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        await primary.stop()
        await secondary.stop()
    recon = Reconciliation.of({n.person_id: {"sms": 1} for n in notices},
                              {n.notice_id: n.person_id for n in notices},
                              sms_logs=[primary_log, secondary_log])
    recon.assert_exact()


@pytest.mark.slow
async def test_sigterm_while_data_waits_for_its_answer_past_the_grace_sends_each_email_once(
    service_env, pg_database, smtp, sms, mail
):
    """Dispatch (its own process) gets SIGTERM while eight emails are mid-DATA: the relay
    took each at its final dot and answers 250 only 8 s later — past the 1 s stop grace,
    within the SMTP command timeout. Cancelled at the grace, the sends were abandoned as
    'sending' and the next sender sent them again with the same Message-ID, which a relay
    does not de-duplicate. A started DATA runs to its answer; the stop still cuts the rest."""
    db = pg_database("dispatch")
    smtp.answer_after_taking(8.0)
    common = dict(smtp_port=smtp.port, sms_url=sms.url, quiet_hours_enabled=False,
                  sending_lease_s=30.0, send_deadline_s=20.0, smtp_timeout_s=30.0,
                  smtp_pool_size=8)
    first = dispatch_settings(service_env, db, port=free_port(), sender_stop_grace_s=1.0,
                              **common)
    proc = subprocess.Popen([sys.executable, "-m", "services.dispatch"], cwd=REPO,  # noqa: S603
                            env=subprocess_env(first), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        sealer = Sealer(first.data_keys.get_secret_value())
        notices = [notice_message(sealer, n, person(n)) for n in range(1, 9)]
        await until(lambda: healthy(first.port), "dispatch up", timeout=180)
        await publish_to_dispatch(first, incident_message(), notices)
        await until(lambda: smtp.accepted == 8, "the relay took all eight", timeout=180)
        assert set(_statuses(db).values()) == {"sending"}  # every answer still to come
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 120)
        smtp.answer_after_taking(0.0)
        second = dispatch_settings(service_env, db, port=free_port(), **common)
        async with running_dispatch(second):
            # anything the stop abandoned is recovered at once (its lease was given up)
            await until(lambda: _settled(db, 8), "all sent", timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    recon = Reconciliation.of({n.person_id: {"email": 1} for n in notices},
                              {n.notice_id: n.person_id for n in notices}, maildir=mail)
    print("exit", rc, "emails at the gateway per person:",
          sorted(s["email"] for s in recon.sends.values()))
    recon.assert_exact()
    assert rc == 0


async def test_a_claim_waits_for_its_incident_revision_not_the_send(
    service_env, pg_database, smtp, sms, tmp_path
):
    """A sender that has not seen the incident (another replica stored it) must load the
    revision it renders with BEFORE its claim commits: read after the claim, a slow database
    holds a committed claim outside the send deadline, its lease running, nothing sent. The
    revision table is locked (a slow database, for that read only) while a fresh sender
    starts on the queued SMS: it must block without a claim committed; once the lock goes,
    each SMS goes out once."""
    db = pg_database("dispatch")
    night = datetime(2026, 3, 10, 23, 0, tzinfo=NZ).astimezone(UTC)
    first = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                              sms_url=sms.url, quiet_hours_enabled=True)
    notices: list = []
    async with running_dispatch(first, clock=MutableClock(night)) as stack:
        await stack.publish_incident(incident_message(mode="sms_else_email"))
        notices = [notice_message(stack.sealer, n, person(n)) for n in range(1, 6)]
        await stack.publish_notices(notices)
        await until(lambda: [s for *_, s, _r in _rows(db)] == ["queued"] * 5,
                     "five SMS queued for the morning", timeout=120)
    assert sms.messages == {}
    with psycopg.connect(db) as lock:
        lock.execute("LOCK TABLE dispatch_incident_revision IN ACCESS EXCLUSIVE MODE")

        def blocked_on_the_revision() -> bool:
            with psycopg.connect(db) as conn:
                return conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                    "'dispatch_incident_revision'::regclass").fetchone()[0] > 0

        morning = datetime(2026, 3, 11, 8, 1, tzinfo=NZ).astimezone(UTC)
        second = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                   sms_url=sms.url, quiet_hours_enabled=True)
        async with running_dispatch(second, clock=MutableClock(morning)):
            await until(blocked_on_the_revision, "the sender reading the revision", timeout=120)
            assert "sending" not in {s for *_, s, _r in _rows(db)}  # no claim without content
            assert sms.messages == {}
            lock.rollback()  # the database answers again
            await until(lambda: _settled(db, 5), "every SMS sent", timeout=120)
    recon = Reconciliation.of({n.person_id: {"sms": 1} for n in notices},
                              {n.notice_id: n.person_id for n in notices},
                              sms_logs=[tmp_path / "sms-primary.jsonl"])
    recon.assert_exact()


# ------------------------------------------------------------------------------- item 11


async def test_a_deferred_email_is_not_resent_while_the_provider_still_tries(
    service_env, pg_database, smtp, sms, mail
):
    """The relay defers three emails: one it keeps trying silently, one it delivers later, one
    it finally bounces. Only the bounce is acted on (fallback to SMS); nothing goes out under a
    second Message-ID."""
    db = pg_database("dispatch")
    port = free_port()
    smtp.bounce_webhook_url = f"http://127.0.0.1:{port}/v1/receipts/smtp"
    smtp.behaviour.defer_seconds = 1.0
    for n, action in ((1, "defer"), (2, "defer-then-deliver"), (3, "defer-then-bounce")):
        smtp.set_recipient(f"person{n}@example.nz", action)
    settings = dispatch_settings(service_env, db, port=port, smtp_port=smtp.port, sms_url=sms.url,
                                 quiet_hours_enabled=False)
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        notices = [notice_message(stack.sealer, n, person(n)) for n in range(1, 5)]
        await stack.publish_notices(notices)
        await until(lambda: len([w for w in smtp.webhooks_sent if w["status"] != "deferred"]) >= 2
                     and len(sms.messages) >= 1, "the outcomes after the deferrals")
        await until(lambda: _settled(db, 5), "settled")
        await asyncio.sleep(1.0)
        statuses = _statuses(db)
    by = {n.person_id: n.notice_id for n in notices}
    recon = Reconciliation.of(
        {by_p: {"email": 1, "sms": 1 if by_p == notices[2].person_id else 0} for by_p in by},
        {v: k for k, v in by.items()}, maildir=mail, sms_logs=[sms.message_log])
    recon.assert_exact()
    assert all(len(ids) == 1 for ids in recon.message_ids.values())  # one Message-ID each
    assert statuses[(notices[0].notice_id, "email")] == "sent"  # still with the relay
    assert statuses[(notices[1].notice_id, "email")] == "delivered"
    assert statuses[(notices[2].notice_id, "email")] == "permanent-failure"
    assert statuses[(notices[2].notice_id, "sms")] == "delivered"


async def test_after_the_deferral_timeout_the_resend_reuses_the_message_id(
    service_env, pg_database, smtp, sms, mail
):
    db = pg_database("dispatch")
    port = free_port()
    smtp.bounce_webhook_url = f"http://127.0.0.1:{port}/v1/receipts/smtp"
    smtp.set_recipient("person1@example.nz", "defer")
    settings = dispatch_settings(service_env, db, port=port, smtp_port=smtp.port, sms_url=sms.url,
                                 quiet_hours_enabled=False, email_deferral_timeout_s=1.5)
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        notice = notice_message(stack.sealer, 1, person(1))
        await stack.publish_notices([notice])
        await until(lambda: smtp.accepted >= 2, "the resend after the timeout", timeout=30)
        smtp.set_recipient("person1@example.nz", "accept")
        await asyncio.sleep(0.5)
    recon = Reconciliation.of({}, {notice.notice_id: notice.person_id}, maildir=mail)
    assert len(recon.message_ids[notice.person_id]) == 1  # one Message-ID, however often sent


# ------------------------------------------------------------------------------- item 12


@pytest.mark.parametrize("fault", ["502", "504", "reset"])
async def test_sms_answers_that_leave_it_open_are_never_failed_over(
    fault, service_env, pg_database, smtp, sms, sms2
):
    """The primary takes each SMS and then answers 502/504 (a proxy gave up) or resets the
    connection. That is not a certain failure: the retry goes to the primary with the same
    reference (and is de-duplicated there), never to the secondary."""
    db = pg_database("dispatch")
    if fault == "reset":
        sms.reset_after_store_next(8)
    else:
        sms.fail_after_store_next(8, int(fault))
    settings = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                 sms_url=sms.url, sms2_url=sms2.url, quiet_hours_enabled=False)
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message(mode="sms_else_email"))
        notices = [notice_message(stack.sealer, n, person(n)) for n in range(1, 9)]
        await stack.publish_notices(notices)
        await until(lambda: _settled(db, 8), "every SMS settled")
        await asyncio.sleep(0.5)
    recon = Reconciliation.of({n.person_id: {"sms": 1} for n in notices},
                              {n.notice_id: n.person_id for n in notices},
                              sms_logs=[sms.message_log, sms2.message_log])
    recon.assert_exact()
    assert sms2.send_attempts == 0
    assert set(_statuses(db).values()) == {"delivered"}


async def test_a_retried_sms_carries_the_same_body_so_no_409(
    service_env, pg_database, smtp, sms, sms2, mail
):
    """"Both" mode: the SMS times out at the primary after it took it ("we have emailed you"),
    and meanwhile the email fails for good. The retry must send the SAME text — it is the same
    message — not "we are posting you": a different body is a 409 at the primary, which used to
    end as a failed SMS (and a letter) for a person the SMS had reached."""
    db = pg_database("dispatch")
    smtp.set_recipient("person1@example.nz", "reject")
    sms.slow_down(1.5)  # takes it, answers after the client's timeout
    sms.behaviour.receipt_delay = 4.0  # and its receipt comes after the retry
    settings = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                 sms_url=sms.url, sms2_url=sms2.url, quiet_hours_enabled=False,
                                 sms_timeout_s=0.5, retry_base_s=0.5, retry_cap_s=0.5)
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message(mode="both"))
        notice = notice_message(stack.sealer, 1, person(1))
        await stack.publish_notices([notice])
        await until(lambda: _statuses(db).get((notice.notice_id, "email")) == "permanent-failure"
                     and sms.send_attempts >= 1, "email failed, SMS tried")
        sms.slow_down(0.0)
        await until(lambda: _settled(db, 2), "settled")
        await asyncio.sleep(4.0)  # the receipt
        statuses = _statuses(db)
    assert statuses == {(notice.notice_id, "email"): "permanent-failure",
                        (notice.notice_id, "sms"): "delivered"}  # no letter: the SMS reached them
    recon = Reconciliation.of({notice.person_id: {"sms": 1}}, {notice.notice_id: notice.person_id},
                              maildir=mail, sms_logs=[sms.message_log, sms2.message_log])
    recon.assert_exact()
    [sent] = sms.messages.values()
    assert "emailed you" in sent.body


# ------------------------------------------------------------------------------- item 13


async def test_an_amendment_supersedes_the_version_still_queued_in_quiet_hours(
    service_env, pg_database, smtp, sms, mail
):
    """At night version 1 of a notice is queued for the morning (SMS); version 2 arrives before
    morning. Only version 2 goes out, and it does not claim to update a notice nobody got. For a
    person whose version 1 was emailed at once, version 2 follows it and says it updates it."""
    db = pg_database("dispatch")
    clock = MutableClock(datetime(2026, 3, 10, 23, 0, tzinfo=NZ).astimezone(UTC))
    settings = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                 sms_url=sms.url, quiet_hours_enabled=True)
    async with running_dispatch(settings, clock=clock) as stack:
        await stack.publish_incident(incident_message())
        by_sms = [notice_message(stack.sealer, n, person(n, email=False)) for n in (1, 2, 3)]
        by_email = notice_message(stack.sealer, 4, person(4))
        await stack.publish_notices([*by_sms, by_email])
        await until(lambda: smtp.accepted == 1, "the email at night")
        amended = [notice_message(stack.sealer, n, person(n, email=False), version=2)
                   for n in (1, 2, 3)]
        email_v2 = notice_message(stack.sealer, 4, person(4), version=2)
        await stack.publish_notices([*amended, email_v2])
        await until(lambda: smtp.accepted == 2, "the amended email")
        await until(lambda: len(_rows(db)) == 8, "all planned")
        clock.now = datetime(2026, 3, 11, 8, 1, tzinfo=NZ).astimezone(UTC)
        await until(lambda: _settled(db, 8), "morning sends")
        await asyncio.sleep(1.0)
        statuses = _statuses(db)
    notices = [*by_sms, by_email, *amended, email_v2]
    person_of = {n.notice_id: n.person_id for n in notices}
    recon = Reconciliation.of({n.person_id: {"sms": 1} for n in by_sms} | {
        by_email.person_id: {"email": 2}}, person_of, maildir=mail, sms_logs=[sms.message_log])
    recon.assert_exact()
    assert [statuses[(n.notice_id, "sms")] for n in by_sms] == ["superseded"] * 3
    assert {m.reference.split(":")[0] for m in sms.messages.values()} == {
        n.notice_id for n in amended}
    assert all("updated" not in m.body for m in sms.messages.values())  # v1 never reached them
    amended_mail = [m for m in smtp.messages
                    if m.message["X-Panui-Reference"].startswith(email_v2.notice_id)]
    assert "updates the notice we sent you" in amended_mail[0].message.get_body(
        ("plain",)).get_content()


def _correcting(notice, kind: str):  # noqa: ANN001, ANN202 - a NoticeMessage
    """`notice` (a later version) as dedupe's correction of the version before it: the lab's
    records were withdrawn; the GP's stand (agency_not_involved) or nothing does (sent_in_error)."""
    lab = NoticeAgency(agency_id="lab-1", name="Test Community Lab",
                       data_categories=["lab_results"], document_count=1)
    correction = NoticeCorrection(
        kind=kind, review_id="rev-1",
        agencies=[lab] if kind == "agency_not_involved" else list(notice.agencies))
    return notice.model_copy(update={"correction": correction})


async def test_a_correction_says_only_what_corrects_what_the_person_was_sent(
    service_env, pg_database, smtp, sms, mail
):
    """At night version 1 of two SMS-only people's notices is queued for the morning; a
    correction (version 2) arrives before morning. Nobody got version 1, so: sent in error —
    nothing is sent at all (version 1 superseded unsent, the correction has nothing to correct);
    an agency named wrongly — the correction goes out as the person's first notice, never
    "correction to the notice we sent you". A person emailed at once that night gets the
    correction, as before."""
    db = pg_database("dispatch")
    clock = MutableClock(datetime(2026, 3, 10, 23, 0, tzinfo=NZ).astimezone(UTC))
    settings = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                 sms_url=sms.url, quiet_hours_enabled=True)
    async with running_dispatch(settings, clock=clock) as stack:
        await stack.publish_incident(incident_message())
        in_error, wrong_agency = (notice_message(stack.sealer, n, person(n, email=False))
                                  for n in (1, 2))
        emailed = notice_message(stack.sealer, 3, person(3))
        await stack.publish_notices([in_error, wrong_agency, emailed])
        await until(lambda: smtp.accepted == 1, "the email at night")
        corrections = [
            _correcting(notice_message(stack.sealer, 1, person(1, email=False), version=2),
                        "sent_in_error"),
            _correcting(notice_message(stack.sealer, 2, person(2, email=False), version=2),
                        "agency_not_involved"),
            _correcting(notice_message(stack.sealer, 3, person(3), version=2), "sent_in_error")]
        await stack.publish_notices(corrections)
        await until(lambda: smtp.accepted == 2, "the correction email")
        # 3 first + 3 corrections (the one with nothing to correct kept as not-needed)
        await until(lambda: len(_rows(db)) == 6, "all planned")
        clock.now = datetime(2026, 3, 11, 8, 1, tzinfo=NZ).astimezone(UTC)
        await until(lambda: _settled(db, 6) and sms.send_attempts >= 1, "morning sends")
        await asyncio.sleep(1.0)
        statuses = _statuses(db)
    assert statuses[(in_error.notice_id, "sms")] == "superseded"
    assert statuses[(wrong_agency.notice_id, "sms")] == "superseded"
    # Nothing to correct: never sent, kept for the Commissioner's counts.
    assert [(k[1], v) for k, v in statuses.items() if k[0] == corrections[0].notice_id] == [
        ("sms", "not-needed")]
    person_of = {n.notice_id: n.person_id for n in [in_error, wrong_agency, emailed, *corrections]}
    Reconciliation.of({wrong_agency.person_id: {"sms": 1}, emailed.person_id: {"email": 2}},
                      person_of, maildir=mail, sms_logs=[sms.message_log]).assert_exact()
    [first] = sms.messages.values()
    assert first.reference.split(":")[0] == corrections[1].notice_id
    assert "correction" not in first.body.lower() and "Test Community Lab" not in first.body
    assert "notice about" in first.body
    [mailed] = [m for m in smtp.messages
                if m.message["X-Panui-Reference"].startswith(corrections[2].notice_id)]
    assert "sent to you by mistake" in mailed.message.get_body(("plain",)).get_content()


def _deferred_then_bounced(service_env, pg_database, smtp, sms, **extra):  # noqa: ANN001, ANN003, ANN202
    """A dispatch database and settings where person 1 (email only) has every message deferred
    2 s and then bounced, the bounce posted back to this dispatch. (db, settings, recipient)."""
    db = pg_database("dispatch")
    port = free_port()
    smtp.bounce_webhook_url = f"http://127.0.0.1:{port}/v1/receipts/smtp"
    smtp.behaviour.defer_seconds = 2.0
    recipient = person(1, mobile=False, address=False)
    smtp.set_recipient(recipient["email"], "defer-then-bounce")
    settings = dispatch_settings(service_env, db, port=port, smtp_port=smtp.port, sms_url=sms.url,
                                 quiet_hours_enabled=False, retry_max_attempts=1000, **extra)
    return db, settings, recipient


async def _bounced_while_a_correction_waits(stack, db: str, smtp, recipient: dict):  # noqa: ANN001, ANN202
    """Person 1's version 1 accepted by the relay (`sent`, no receipt yet); a sent-in-error
    correction arrives, so it is planned, and is refused for now (451) while version 1 bounces;
    then the relay accepts again and the correction comes to be decided. (first, correction)."""
    address = recipient["email"]
    first = notice_message(stack.sealer, 1, recipient, dates_of_birth=["1979-11-30"])
    await stack.publish_notices([first])
    await until(lambda: _statuses(db).get((first.notice_id, "email")) == "sent",
                 "version 1 accepted by the relay")
    smtp.set_recipient(address, "tempfail")  # the correction waits, the bounce is coming
    correction = _correcting(notice_message(stack.sealer, 1, recipient, version=2,
                                            dates_of_birth=["1979-11-30"]), "sent_in_error")
    await stack.publish_notices([correction])
    await until(lambda: _statuses(db).get((correction.notice_id, "email")) in (
        "temporary-failure", "technical-failure"), "the correction planned and refused")
    await until(lambda: _statuses(db).get((first.notice_id, "email")) == "permanent-failure",
                 "version 1 bounced")
    smtp.set_recipient(address, "accept")
    await until(lambda: _statuses(db).get((correction.notice_id, "email")) not in (
        "queued", "sending", "temporary-failure", "technical-failure"), "the correction decided")
    return first, correction


async def test_a_sent_in_error_correction_planned_while_the_notice_was_in_flight_is_not_sent_once_it_bounced(
    service_env, pg_database, smtp, sms, mail
):
    """Version 1 is accepted by the relay (in flight: `sent`, no receipt yet) when a sent-in-
    error correction (version 2) arrives, so the correction is planned: it may have reached
    them. Its first attempts are refused for now (451); meanwhile version 1 bounces. When the
    correction comes to be sent, no earlier version reached the person: nothing is sent — the
    delivery is `not-needed`, shown to the call centre (with no text, nothing was sent) and
    counted in the Commissioner's numbers. Never "we sent you a notice in error" about a
    notice they never got."""
    from testkit.staff import SIGNING_KEY, token

    db, settings, recipient = _deferred_then_bounced(service_env, pg_database, smtp, sms,
                                                     token_signing_key=SIGNING_KEY)
    address = recipient["email"]
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        first, correction = await _bounced_while_a_correction_waits(stack, db, smtp, recipient)
        statuses = _statuses(db)
        reasons = {(n, c): r for n, c, _, r in _rows(db)}
        lookup = await stack.http.post("/v1/incidents/inc-1/notice-lookups", headers={
            "authorization": f"Bearer {token(['call-centre'])[0]}"}, json={
            "reference": correction.reference_code, "date_of_birth": "1979-11-30"})
        report = await stack.http.get("/v1/incidents/inc-1/report", headers=COORDINATOR)
    assert statuses[(correction.notice_id, "email")] == "not-needed"
    assert reasons[(correction.notice_id, "email")] == "correction_not_needed"
    assert not smtp.messages_to(address) or all(
        not m.message["X-Panui-Reference"].startswith(correction.notice_id)
        for m in smtp.messages_to(address))
    Reconciliation.of({first.person_id: {"email": 1}},
                      {first.notice_id: first.person_id, correction.notice_id: first.person_id},
                      maildir=mail, sms_logs=[sms.message_log]).assert_exact()
    assert lookup.status_code == 200, lookup.text
    body = lookup.json()
    assert [(d["channel"], d["status"]) for d in body["deliveries"]] == [("email", "not-needed")]
    assert body["sent"] == []  # nothing was sent, so nothing to read out
    assert report.status_code == 200, report.text
    counts = {(c["measure"], c.get("agency_id")): c["value"] for c in report.json()["counts"]}
    assert counts[("corrections.email.not-needed", None)] == 1



@pytest.mark.slow
async def test_an_unneeded_correction_behind_many_due_follow_ups_is_never_sent(
    service_env, pg_database, smtp, sms, mail
):
    """As above, but with 501 follow-ups due ahead of the correction by id: letters amending
    letters never posted (the first version superseded unsent), waiting for a mail-out. They
    are due, version 2, and no earlier version of theirs reached anyone — yet each has
    something to say. The sent-in-error correction behind them must still end `not-needed`,
    never sent: the relay's own log is the evidence. (Before, the check before each claim
    looked at the first 500 such follow-ups by id only, so the correction was claimed and sent.)"""
    db, settings, recipient = _deferred_then_bounced(service_env, pg_database, smtp, sms)
    by_post = [person(n, email=False, mobile=False) for n in range(1001, 1502)]
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        await stack.publish_notices([notice_message(stack.sealer, n, r)
                                     for n, r in zip(range(1001, 1502), by_post, strict=True)])
        await until(lambda: len(_rows(db)) == 501, "the first letters queued")
        await stack.publish_notices([notice_message(stack.sealer, n, r, version=2)
                                     for n, r in zip(range(1001, 1502), by_post, strict=True)])
        await until(lambda: sum(s == "queued" for _, c, s, _ in _rows(db) if c == "postal")
                     == 501 and len(_rows(db)) == 1002, "the amending letters queued")

        first, correction = await _bounced_while_a_correction_waits(stack, db, smtp, recipient)
        rows = _rows(db)
    ids = [n for n, c, _, _ in rows]
    assert ids.index(correction.notice_id) > 1001  # behind every letter by id
    statuses = {(n, c): (s, r) for n, c, s, r in rows}
    assert statuses[(correction.notice_id, "email")] == ("not-needed", "correction_not_needed")
    assert all(m.message["X-Panui-Reference"].split(":")[0] != correction.notice_id
               for m in smtp.messages)
    # The letters still have something to say: queued for the mail-out, untouched.
    assert sum(s == "queued" for (_, c), (s, _) in statuses.items() if c == "postal") == 501
    Reconciliation.of({first.person_id: {"email": 1}},
                      {first.notice_id: first.person_id, correction.notice_id: first.person_id},
                      maildir=mail, sms_logs=[sms.message_log]).assert_exact()


# ------------------------------------------------------------------------------- item 6


async def test_both_channels_failing_together_still_put_everyone_on_a_list(
    service_env, pg_database, smtp, sms
):
    """"Both" mode, 30 people: every email is refused (550) and every SMS fails on the handset,
    the two failures arriving together. Each person must end on exactly one list: the postal
    mail-out (address held) or the public notice (none)."""
    db = pg_database("dispatch")
    for n in range(1, 31):
        smtp.set_recipient(f"person{n}@example.nz", "reject")
        sms.set_outcome(f"+6421{n:07d}", "failed")
    smtp.hold("RCPT", 0.02)  # the email's refusal and the SMS receipt land together
    settings = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                 sms_url=sms.url, quiet_hours_enabled=False)
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message(mode="both"))
        notices = [notice_message(stack.sealer, n, person(n, address=bool(n % 2)))
                   for n in range(1, 31)]
        await stack.publish_notices(notices)
        await until(lambda: _settled(db, 60) and len(sms.receipts_sent) >= 30,
                     "both channels failed")
        await asyncio.sleep(1.0)
        statuses = _statuses(db)
    listed = {n.notice_id: [c for c in ("postal", "none") if (n.notice_id, c) in statuses]
              for n in notices}
    assert {nid: chans for nid, chans in listed.items() if len(chans) != 1} == {}
    assert all(listed[n.notice_id] == (["postal"] if i % 2 else ["none"])
               for i, n in enumerate(notices, start=1))
    recon = Reconciliation.of({n.person_id: {"sms": 1} for n in notices},
                              {n.notice_id: n.person_id for n in notices},
                              sms_logs=[sms.message_log])
    recon.assert_exact()  # and nobody got anything twice


@pytest.mark.parametrize("batch", [1, 8], ids=["single", "batched"])
async def test_an_sms_cut_off_by_the_deadline_after_a_failover_stays_at_the_gateway_it_moved_to(
    batch, service_env, pg_database, smtp, sms, sms2
):
    """The primary refuses each SMS before taking it (503: certainly not taken), so it moves to
    the secondary (the move recorded first), which takes it and answers after the send
    deadline. Cut off there, the SMS may be at the secondary — and only there. It was recorded
    as maybe held by the primary (the claim's gateway, not the one it moved to), so the retry
    went to the primary, which sent a second SMS (8 of 8 people texted twice). With batches (up
    to 8 per request) the cut also comes while a batch's refused messages are failing over."""
    db = pg_database("dispatch")
    sms.fail_next(8, 503)
    sms2.slow_down(3.0)  # takes it, answers after the deadline
    sms2.behaviour.hold_receipts = True  # and reports on it only after the retry
    settings = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                 sms_url=sms.url, sms2_url=sms2.url, quiet_hours_enabled=False,
                                 sms_batch_size=batch, send_deadline_s=1.5, sending_lease_s=4.0,
                                 retry_base_s=0.2, retry_cap_s=0.5, retry_max_attempts=60,
                                 sms_failover_cooldown_s=0.0)  # each new SMS tries the primary
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message(mode="sms_else_email"))
        notices = [notice_message(stack.sealer, n, person(n)) for n in range(1, 9)]
        await stack.publish_notices(notices)

        def retried_after_the_cut() -> bool:  # the secondary took it; a second attempt began
            moved = set(sms2.by_reference)
            return bool(moved) and all(
                d.attempts >= 2 for d in stack.deliveries() if d.reference in moved)

        await until(retried_after_the_cut, "a send cut off at the secondary, retried")
        sms2.slow_down(0.0)
        sms2.behaviour.hold_receipts = False
        await until(lambda: _settled(db, 8), "every SMS settled")
        await asyncio.sleep(1.0)  # a retry sent to the wrong gateway would show now
    recon = Reconciliation.of({n.person_id: {"sms": 1} for n in notices},
                              {n.notice_id: n.person_id for n in notices},
                              sms_logs=[sms.message_log, sms2.message_log])
    print("primary:", len(sms.messages), "secondary:", len(sms2.messages),
          "statuses:", sorted(_statuses(db).values()))
    recon.assert_exact()
    assert not set(sms.by_reference) & set(sms2.by_reference)  # no reference at both
    assert set(_statuses(db).values()) == {"delivered"}


async def test_an_sms_batch_failed_as_a_whole_midway_is_retried_where_it_may_be_held(
    service_env, pg_database, smtp, sms, sms2
):
    """The primary takes the first four messages of the first batch, then answers the whole
    request 500. Every message of that batch may be at the primary: each is retried there
    (pinned, same reference — it dedupes), none moves to the secondary. A whole-request 500 used
    to mean "certainly not taken": the batch moved, and the ones the primary had taken were
    texted twice."""
    db = pg_database("dispatch")
    sms.fail_batch_next(1, after_taking=4, status=500)
    sms.behaviour.hold_receipts = True  # receipts only after the retries: they cannot hide one
    settings = dispatch_settings(service_env, db, port=free_port(), smtp_port=smtp.port,
                                 sms_url=sms.url, sms2_url=sms2.url, quiet_hours_enabled=False,
                                 sms_batch_size=8, retry_base_s=0.2, retry_cap_s=0.5,
                                 retry_max_attempts=60, sms_failover_cooldown_s=0.0)
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message(mode="sms_else_email"))
        notices = [notice_message(stack.sealer, n, person(n)) for n in range(1, 9)]
        await stack.publish_notices(notices)

        await until(lambda: _settled(db, 8), "every SMS sent (the failed batch retried)")
        sms.behaviour.hold_receipts = False
        await until(lambda: set(_statuses(db).values()) == {"delivered"}, "every receipt in")
        await asyncio.sleep(1.0)  # a second copy sent anywhere would show now
        attempts = [d.attempts for d in stack.deliveries()]
    recon = Reconciliation.of({n.person_id: {"sms": 1} for n in notices},
                              {n.notice_id: n.person_id for n in notices},
                              sms_logs=[sms.message_log, sms2.message_log])
    recon.assert_exact()
    assert not set(sms.by_reference) & set(sms2.by_reference)  # no reference at both
    assert sms2.messages == {}  # nothing moved: none of them was certainly not taken
    assert max(attempts) >= 2  # the failed batch was retried there
