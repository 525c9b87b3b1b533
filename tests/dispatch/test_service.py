"""The dispatch service end to end: real Kafka, real PostgreSQL, the local SMTP and SMS
gateways, and the app served over HTTP so the gateways' receipts reach it."""

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import Session

from services.common.messages import decode_delivery_event
from services.dispatch.content.models import derive_reference_code
from services.dispatch.content.sms_segments import SmsEncoding, count_segments
from services.dispatch.providers.receipts import SIGNATURE_HEADER, sign
from services.dispatch.store import reports
from services.gateways.sms_server import SmsGateway
from testkit.infra import free_port, sqlite_database, topic_reader
from testkit.notices import incident_message, notice_message, person

from .stack import COORDINATOR, RECEIPT_SECRET, MutableClock, dispatch_settings, running_dispatch

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

NZ = ZoneInfo("Pacific/Auckland")


@pytest.fixture
def settings_for(service_env, pg_database, smtp_gw, sms_gw):
    def make(**overrides):
        port = overrides.pop("port", None) or free_port()
        return dispatch_settings(
            service_env, pg_database("dispatch"), port=port, smtp_port=smtp_gw.port, sms_url=sms_gw.url,
            quiet_hours_enabled=overrides.pop("quiet_hours_enabled", False), **overrides,
        )
    return make


def _statuses(stack, notice) -> dict[str, str]:
    return {ch: st for (nid, ch), st in stack.delivery_map().items() if nid == notice.notice_id}


# ------------------------------------------------------------------------------- channels


async def test_email_is_sent_once_with_s117_content_and_events(
    settings_for, smtp_gw, sms_gw, kafka_bootstrap, topic_prefix
):
    settings = settings_for()
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        first = notice_message(stack.sealer, 1, person(1))
        amendment = notice_message(stack.sealer, 1, person(1), version=2)
        other = notice_message(stack.sealer, 2, person(2))
        await stack.publish_notices([first, other, first])  # a replayed duplicate
        # The amendment after the first version went out (had it come while the first was
        # still queued, it would have superseded it: test_an_amendment_supersedes_...).
        await stack.wait_until(lambda: len(smtp_gw.messages) >= 2, what="two emails")
        await stack.publish_notices([amendment])
        await stack.wait_until(lambda: len(smtp_gw.messages) >= 3, what="three emails")
        await stack.wait_until(
            lambda: set(stack.delivery_map().values()) == {"sent"}, what="all sent"
        )
        await asyncio.sleep(0.3)
        async with topic_reader(kafka_bootstrap, f"{topic_prefix}delivery-events.v1") as reader:
            events = await reader.wait_for(lambda m: len(m) >= 9)

    assert len(smtp_gw.messages) == 3  # the replayed notice was not sent again
    assert sms_gw.messages == {}  # email_else_sms: email was available
    mail = smtp_gw.messages_to("person1@example.nz")
    assert len(mail) == 2  # the notice and its amendment, each once
    texts = [m.message.get_body(("plain",)).get_content() for m in mail]
    version_one = next(t for t in texts if "updates the notice" not in t)
    for phrase in ("copied records from the portal", "suspect holds the information",
                   "closed the portal", "Be wary of calls", "notified the Privacy Commissioner",
                   "right to complain to the Privacy Commissioner", "0800 000 111",
                   "Example Helpline", "Example Medical Centre", "Laboratory test results",
                   "passwords", derive_reference_code(first.notice_id)):
        assert phrase in version_one, phrase
    # Nobody else's details, and nothing to click.
    for m in mail:
        raw = m.data.decode()
        assert "Testperson2" not in raw and "person2@example.nz" not in raw
        assert "href" not in raw.lower() and "https://" not in raw
    assert mail[0].message["X-Panui-Reference"].endswith(":email")

    decoded = [decode_delivery_event(e.value) for e in events]
    by_notice = [e.status for e in decoded if e.notice_id == first.notice_id]
    assert by_notice == ["queued", "sending", "sent"]
    assert all(e.key == d.notice_id.encode() for e, d in zip(events, decoded, strict=True))
    assert b"Testperson" not in b"".join(e.value for e in events)


async def test_sms_when_no_email_and_receipt_marks_delivered(settings_for, smtp_gw, sms_gw):
    async with running_dispatch(settings_for()) as stack:
        await stack.publish_incident(incident_message())
        notice = notice_message(stack.sealer, 3, person(3, email=False))
        await stack.publish_notices([notice])
        await stack.wait_until(
            lambda: _statuses(stack, notice).get("sms") == "delivered", what="sms delivered"
        )
    assert smtp_gw.messages == []
    [sms] = sms_gw.messages.values()
    assert sms.to == "+64210000003" and sms.reference == f"{notice.notice_id}:sms"
    assert "posting you" in sms.body  # no email: the full notice comes by post
    assert derive_reference_code(notice.notice_id) in sms.body
    assert "http" not in sms.body


async def test_both_mode_sends_email_and_sms(settings_for, smtp_gw, sms_gw):
    async with running_dispatch(settings_for()) as stack:
        await stack.publish_incident(incident_message(mode="both"))
        notice = notice_message(stack.sealer, 4, person(4))
        await stack.publish_notices([notice])
        await stack.wait_until(
            lambda: _statuses(stack, notice) == {"email": "sent", "sms": "delivered"},
            what="both channels",
        )
    assert len(smtp_gw.messages) == 1 and len(sms_gw.messages) == 1
    assert "emailed you" in next(iter(sms_gw.messages.values())).body


async def test_notice_waits_for_its_incident(settings_for, smtp_gw):
    async with running_dispatch(settings_for()) as stack:
        notice = notice_message(stack.sealer, 5, person(5), incident_id="inc-late")
        await stack.publish_notices([notice])
        await stack.wait_until(
            lambda: stack.app.state.runtime.engine is not None and _awaiting(stack) == 1,
            what="notice stored, awaiting incident",
        )
        assert smtp_gw.messages == []
        await stack.publish_incident(incident_message("inc-late"))
        await stack.wait_until(lambda: len(smtp_gw.messages) == 1, what="email after incident")
        await stack.wait_until(lambda: _statuses(stack, notice) == {"email": "sent"}, what="sent")
        summary = (await stack.http.get("/v1/incidents/inc-late/deliveries/summary",
                                        headers=COORDINATOR)).json()
    assert summary["notices"] == 1 and summary["awaiting_incident"] == 0
    assert summary["by_channel"] == {"email": {"sent": 1}}


def _awaiting(stack) -> int:
    with Session(stack.app.state.runtime.engine) as session:
        return reports.summary(session, "inc-late").awaiting_incident


# ------------------------------------------------------------------------------- fallback


async def test_fallback_email_to_sms_to_postal_to_unreachable_and_csv(
    settings_for, smtp_gw, sms_gw
):
    tricky = person(8, given_names="=HYPERLINK(\"x\")", family_name="+Fakename8")
    tricky["address"]["line1"] = "@SUM(1+1)"
    for n in (6, 7, 8, 9):
        smtp_gw.set_recipient(f"person{n}@example.nz", "reject")  # 550 at RCPT
    sms_gw.set_outcome("+64210000007", "failed")  # handset rejects: receipt 'failed'
    sms_gw.set_outcome("+64210000009", "failed")
    async with running_dispatch(settings_for()) as stack:
        await stack.publish_incident(incident_message())
        to_sms = notice_message(stack.sealer, 6, person(6))
        to_post = notice_message(stack.sealer, 7, person(7))
        tricky_post = notice_message(stack.sealer, 8, tricky | {"mobile": None})
        nowhere = notice_message(stack.sealer, 9, person(9, address=False))
        await stack.publish_notices([to_sms, to_post, tricky_post, nowhere])
        await stack.wait_until(
            lambda: _statuses(stack, to_sms).get("sms") == "delivered"
            and _statuses(stack, to_post).get("postal") == "queued"
            and _statuses(stack, tricky_post).get("postal") == "queued"
            and _statuses(stack, nowhere).get("none") == "unreachable",
            what="fallbacks",
        )
        assert _statuses(stack, to_sms)["email"] == "permanent-failure"
        assert _statuses(stack, to_post) == {
            "email": "permanent-failure", "sms": "permanent-failure", "postal": "queued"}
        unauthorised = await stack.http.get("/v1/incidents/inc-1/unreachable.csv")
        assert unauthorised.status_code == 401
        response = await stack.http.get("/v1/incidents/inc-1/unreachable.csv", headers=COORDINATOR)
        summary = (await stack.http.get("/v1/incidents/inc-1/deliveries/summary",
                                        headers=COORDINATOR)).json()
        audit_log = (await stack.http.get("/v1/audit", headers=COORDINATOR)).json()["entries"]
    # The download of names and addresses is on record (who, which incident, how many rows).
    assert [(e["actor"], e["action"], e["incident_id"], e["object_ids"]) for e in audit_log] == [
        ("configured", "unreachable.download", "inc-1", ["rows:3"])]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    by_notice = {r["notice_id"]: r for r in rows}
    assert set(by_notice) == {to_post.notice_id, tricky_post.notice_id, nowhere.notice_id}
    assert by_notice[to_post.notice_id]["list"] == "postal"
    assert by_notice[to_post.notice_id]["address_line1"] == "7 Test Street"
    assert by_notice[nowhere.notice_id]["list"] == "public-notice"
    assert by_notice[to_post.notice_id]["reference_code"] == derive_reference_code(to_post.notice_id)
    # Formula injection neutralised: every dangerous cell starts with a quote.
    assert by_notice[tricky_post.notice_id]["addressee_name"] == "'=HYPERLINK(\"x\") +Fakename8"
    assert by_notice[tricky_post.notice_id]["address_line1"] == "'@SUM(1+1)"
    assert summary["by_channel"]["postal"] == {"queued": 2}
    assert summary["by_channel"]["none"] == {"unreachable": 1}
    # The SMS sent after the email failed does not claim we emailed them.
    sms_body = next(m.body for m in sms_gw.messages.values() if m.to == "+64210000006")
    assert "emailed" not in sms_body


async def test_smtp_bounce_receipt_falls_back_to_sms(settings_for, smtp_gw, sms_gw):
    settings = settings_for()
    smtp_gw.bounce_webhook_url = f"http://127.0.0.1:{settings.port}/v1/receipts/smtp"
    smtp_gw.webhook_secret = RECEIPT_SECRET
    smtp_gw.set_recipient("person10@example.nz", "bounce")  # 250 now, DSN later
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        notice = notice_message(stack.sealer, 10, person(10))
        await stack.publish_notices([notice])
        await stack.wait_until(
            lambda: _statuses(stack, notice) == {"email": "permanent-failure", "sms": "delivered"},
            what="bounce then sms",
        )
    assert len(smtp_gw.bounces) == 1 and len(sms_gw.messages) == 1


# ------------------------------------------------------------------------------- quiet hours


async def test_sms_waits_for_morning_in_quiet_hours(settings_for, smtp_gw, sms_gw):
    clock = MutableClock(datetime(2026, 3, 10, 23, 0, tzinfo=NZ).astimezone(UTC))
    async with running_dispatch(settings_for(quiet_hours_enabled=True), clock=clock) as stack:
        await stack.publish_incident(incident_message())
        by_sms = notice_message(stack.sealer, 11, person(11, email=False))
        by_email = notice_message(stack.sealer, 12, person(12))
        await stack.publish_notices([by_sms, by_email])
        await stack.wait_until(lambda: len(smtp_gw.messages) == 1, what="email at night")
        await asyncio.sleep(1.0)
        assert _statuses(stack, by_sms) == {"sms": "queued"}
        assert sms_gw.messages == {}
        clock.now = datetime(2026, 3, 11, 8, 1, tzinfo=NZ).astimezone(UTC)
        await stack.wait_until(lambda: len(sms_gw.messages) == 1, what="sms in the morning")


# ------------------------------------------------------------------------------- gateways


async def test_sms_fails_over_to_the_secondary_when_the_primary_errors(
    service_env, pg_database, smtp_gw, sms_gw
):
    async with SmsGateway(callback_secret=RECEIPT_SECRET) as secondary:
        sms_gw.fail_next(1000, 500)
        settings = dispatch_settings(
            service_env, pg_database("dispatch"), port=free_port(), smtp_port=smtp_gw.port,
            sms_url=sms_gw.url, sms2_url=secondary.url, quiet_hours_enabled=False,
        )
        async with running_dispatch(settings) as stack:
            await stack.publish_incident(incident_message(mode="sms_else_email"))
            notices = [notice_message(stack.sealer, n, person(n)) for n in (13, 14, 15)]
            await stack.publish_notices(notices)
            await stack.wait_until(
                lambda: [stack.delivery_map().get((n.notice_id, "sms")) for n in notices]
                == ["delivered"] * 3,
                what="delivered via secondary",
            )
            providers = {d.provider for d in stack.deliveries()}
        assert sms_gw.messages == {} and sms_gw.send_attempts >= 1
        assert len(secondary.messages) == 3
        assert providers == {"sms-secondary"}


async def test_receipts_are_authenticated_and_idempotent(settings_for, sms_gw):
    async with running_dispatch(settings_for()) as stack:
        await stack.publish_incident(incident_message(mode="sms_else_email"))
        notice = notice_message(stack.sealer, 16, person(16))
        await stack.publish_notices([notice])
        await stack.wait_until(lambda: _statuses(stack, notice).get("sms") == "delivered",
                               what="delivered")
        [sms] = sms_gw.messages.values()
        body = json.dumps({"id": sms.id, "reference": sms.reference, "status": "delivered"}).encode()
        url = "/v1/receipts/sms-primary"
        forged = await stack.http.post(url, content=body, headers={SIGNATURE_HEADER: sign(body, "wrong", "sms-primary")})
        missing = await stack.http.post(url, content=body)
        good = {SIGNATURE_HEADER: sign(body, RECEIPT_SECRET, "sms-primary"),
                "content-type": "application/json"}
        duplicate = await stack.http.post(url, content=body, headers=good)
        replayed = await stack.http.post(url, content=body, headers=good)
        unknown_provider = await stack.http.post("/v1/receipts/nope", content=body, headers=good)
        # Signed for sms-primary, posted to smtp's endpoint: the provider is in the signature.
        elsewhere = await stack.http.post("/v1/receipts/smtp", content=body, headers={
            SIGNATURE_HEADER: sign(body, RECEIPT_SECRET, "sms-primary")})
        # Validly signed by another provider about a delivery sent through sms-primary.
        other_provider = await stack.http.post("/v1/receipts/sms-secondary", content=body, headers={
            SIGNATURE_HEADER: sign(body, RECEIPT_SECRET, "sms-secondary")})
        failed = json.dumps({"id": sms.id, "reference": sms.reference, "status": "failed"}).encode()
        late = await stack.http.post(
            url, content=failed, headers={SIGNATURE_HEADER: sign(failed, RECEIPT_SECRET, "sms-primary")})
        await asyncio.sleep(0.3)
        statuses = _statuses(stack, notice)
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "receipt.signature_invalid"
    assert missing.status_code == 401
    assert duplicate.status_code == 200 and duplicate.json() == {"outcome": "duplicate"}
    assert replayed.status_code == 409 and replayed.json()["error"]["code"] == "receipt.replayed"
    assert unknown_provider.status_code == 404
    assert elsewhere.status_code == 401
    assert other_provider.status_code == 409
    assert other_provider.json()["error"]["code"] == "receipt.provider_mismatch"
    # delivered is final for SMS: a contradicting late receipt is ignored, not applied.
    assert late.json() == {"outcome": "stale"} and statuses == {"sms": "delivered"}


async def test_receipt_signature_headers_and_size_are_checked_before_the_body(settings_for):
    pulled = []

    async def body(chunks: int):
        for _ in range(chunks):
            pulled.append(1)
            yield b" " * 65536

    async with running_dispatch(settings_for()) as stack, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=stack.app), base_url="http://in-process") as http:
        # In process: an HTTP/1.1 client sends the whole body before it reads the answer, so
        # only the ASGI transport shows how much of it the app pulled.
        url = "/v1/receipts/sms-primary"
        unsigned = await http.post(url, content=body(300))
        unsigned_pulled, pulled[:] = len(pulled), []
        stale = await http.post(url, content=body(300), headers={
            SIGNATURE_HEADER: sign(b"", RECEIPT_SECRET, "sms-primary", timestamp=1_000_000)})
        stale_pulled, pulled[:] = len(pulled), []
        large = await http.post(url, content=body(300), headers={
            SIGNATURE_HEADER: sign(b"", RECEIPT_SECRET, "sms-primary")})
        declared = await http.post(url, content=b" " * (stack.settings.receipt_max_bytes + 1),
                                         headers={SIGNATURE_HEADER: sign(b"", RECEIPT_SECRET, "sms-primary")})
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "receipt.signature_invalid"
    assert stale.status_code == 401
    assert unsigned_pulled == 0 and stale_pulled == 0
    assert large.status_code == 413 and large.json()["error"]["code"] == "receipt.too_large"
    assert len(pulled) <= stack.settings.receipt_max_bytes // 65536 + 2
    assert declared.status_code == 413


async def test_temporary_failures_are_retried_with_backoff(settings_for, sms_gw, kafka_bootstrap,
                                                           topic_prefix):
    sms_gw.rate_limit_next(2, retry_after=0)  # 429 twice, then accepted
    async with running_dispatch(settings_for()) as stack:
        await stack.publish_incident(incident_message(mode="sms_else_email"))
        notice = notice_message(stack.sealer, 17, person(17))
        await stack.publish_notices([notice])
        await stack.wait_until(lambda: _statuses(stack, notice).get("sms") == "delivered",
                               what="delivered after retries")
        [delivery] = [d for d in stack.deliveries() if d.notice_id == notice.notice_id]
        async with topic_reader(kafka_bootstrap, f"{topic_prefix}delivery-events.v1") as reader:
            events = await reader.wait_for(
                lambda m: any(decode_delivery_event(e.value).status == "delivered" for e in m))
    assert delivery.attempts == 3 and sms_gw.send_attempts == 3 and len(sms_gw.messages) == 1
    statuses = [decode_delivery_event(e.value).status for e in events]
    # The receipt may overtake our record of the gateway's 202, so 'sent' can be skipped.
    assert [s for s in statuses if s != "sent"] == [
        "queued", "sending", "temporary-failure", "sending", "temporary-failure", "sending",
        "delivered"]


async def test_retries_are_bounded(settings_for, smtp_gw, sms_gw):
    smtp_gw.fail_next(1000, 451)  # the server keeps deferring
    async with running_dispatch(settings_for(retry_max_attempts=3)) as stack:
        await stack.publish_incident(incident_message())
        notice = notice_message(stack.sealer, 18, person(18))
        await stack.publish_notices([notice])
        await stack.wait_until(
            lambda: _statuses(stack, notice) == {"email": "permanent-failure", "sms": "delivered"},
            what="gave up on email, fell back",
        )
        [email] = [d for d in stack.deliveries() if d.channel == "email"]
    assert email.attempts == 3 and email.reason_code == "retries-exhausted"


async def test_token_bucket_limits_the_send_rate(settings_for, sms_gw):
    settings = settings_for(sms_rate_per_s=20, sms_burst=1)
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message(mode="sms_else_email"))
        notices = [notice_message(stack.sealer, n, person(n)) for n in range(100, 121)]
        await stack.publish_notices(notices)
        await stack.wait_until(lambda: len(sms_gw.messages) == 21, what="21 sms")
    stamps = sorted(datetime.fromisoformat(m.created_at) for m in sms_gw.messages.values())
    # 21 messages at 20/s with a burst of 1 take at least ~1 s (loose: no timing precision).
    assert (stamps[-1] - stamps[0]) >= timedelta(seconds=0.8)


async def test_macrons_make_the_sms_ucs2_and_within_budget(settings_for, sms_gw):
    async with running_dispatch(settings_for()) as stack:
        await stack.publish_incident(incident_message(
            mode="sms_else_email", sender_name="Te Whatu Ora Hauora Ātea", sms_segment_budget=3))
        notice = notice_message(stack.sealer, 19, person(19), language="mi")
        await stack.publish_notices([notice])
        await stack.wait_until(lambda: len(sms_gw.messages) == 1, what="sms")
    [sms] = sms_gw.messages.values()
    counted = count_segments(sms.body)
    assert counted.encoding is SmsEncoding.UCS2 and 1 <= counted.segments <= 3
    assert sms.body.startswith("Tēnā koe")


async def test_coordinator_endpoints_need_a_token(settings_for):
    async with running_dispatch(settings_for()) as stack:
        response = await stack.http.get("/v1/incidents/inc-1/deliveries/summary")
        wrong = await stack.http.get("/v1/incidents/inc-1/deliveries/summary",
                                     headers={"authorization": "Bearer nope"})
    assert response.status_code == 401 and wrong.status_code == 401


# ------------------------------------------------------------------------------- robustness


@pytest.mark.slow
async def test_restart_mid_send_sends_each_sms_once(service_env, pg_database, smtp_gw, sms_gw):
    database = pg_database("dispatch")
    port = free_port()
    common = dict(port=port, smtp_port=smtp_gw.port, sms_url=sms_gw.url,
                  quiet_hours_enabled=False, sms_timeout_s=30.0)
    # The gateway stores each message, then answers far later than the send deadline (a
    # starved box cannot make an answer beat it), and holds every receipt until the test
    # has seen the recovery re-send: the order is set by conditions, not by delays. Until
    # the "crash" a send cut off by the deadline is retried under the same reference, so
    # the first run's own attempts are counted rather than assumed.
    sms_gw.slow_down(20.0)
    sms_gw.behaviour.hold_receipts = True
    first = dispatch_settings(service_env, database, sender_stop_grace_s=0.0,
                              sending_lease_s=2.0, send_deadline_s=1.5, **common)
    async with running_dispatch(first) as stack:
        await stack.publish_incident(incident_message(mode="sms_else_email"))
        notices = [notice_message(stack.sealer, n, person(n)) for n in range(200, 210)]
        await stack.publish_notices(notices)
        await stack.wait_until(lambda: len(sms_gw.messages) == 10, what="gateway accepted all",
                               timeout=120)
        assert set(stack.delivery_map().values()) == {"sending"}
    # "Crash": the app stopped without recording the gateway's answers.
    before = {d.notice_id: d.attempts for d in stack.deliveries()}
    attempts_before = sms_gw.send_attempts
    sms_gw.slow_down(0.0)
    # The restarted sender's own deadline is long, so each recovered claim is re-sent once
    # however starved the box (the first owner's 2 s lease still decides the recovery).
    second = dispatch_settings(service_env, database, sending_lease_s=20.0, send_deadline_s=15.0,
                               **common)
    async with running_dispatch(second) as stack:
        await stack.wait_until(lambda: sms_gw.send_attempts >= attempts_before + 10,
                               what="each re-sent", timeout=120)
        sms_gw.behaviour.hold_receipts = False
        await stack.wait_until(
            lambda: set(stack.delivery_map().values()) == {"delivered"}, what="all delivered",
            timeout=120,
        )
        deliveries = stack.deliveries()
    assert len(sms_gw.messages) == 10  # exactly one message per notice at the gateway
    assert sms_gw.send_attempts == attempts_before + 10  # each re-sent once, same reference
    assert {d.notice_id: d.attempts for d in deliveries} == {n: a + 1 for n, a in before.items()}


@pytest.mark.slow
async def test_backpressure_pauses_consumption(settings_for, sms_gw):
    sms_gw.slow_down(0.5)
    settings = settings_for(max_pending=5, sender_concurrency=2, sender_batch_size=2,
                            consumer_batch_max_records=5)
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message(mode="sms_else_email"))
        notices = [notice_message(stack.sealer, n, person(n)) for n in range(300, 330)]
        await stack.publish_notices(notices)
        handler = stack.app.state.runtime.notice_handler
        await stack.wait_until(lambda: handler.paused, what="paused")
        stored = len({d.notice_id for d in stack.deliveries()})
        assert stored < 30  # the rest is still in Kafka, not in memory
        sms_gw.slow_down(0.0)
        await stack.wait_until(lambda: len(sms_gw.messages) == 30, what="all sent", timeout=60)
        await stack.wait_until(lambda: not handler.paused, what="resumed")


async def test_runs_on_sqlite_for_make_run(service_env, tmp_path, smtp_gw, sms_gw):
    """`make run` keeps dispatch on SQLite: the same SQL must work there."""
    settings = dispatch_settings(
        service_env, sqlite_database(tmp_path / "dispatch.db", "dispatch"), port=free_port(),
        smtp_port=smtp_gw.port, sms_url=sms_gw.url, quiet_hours_enabled=False,
    )
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        notices = [notice_message(stack.sealer, 20, person(20)),
                   notice_message(stack.sealer, 21, person(21, email=False))]
        await stack.publish_notices(notices)
        await stack.wait_until(
            lambda: sorted(stack.delivery_map().values()) == ["delivered", "sent"],
            what="email sent and sms delivered on sqlite",
        )


async def test_expired_sms_is_resent_under_a_new_reference_then_falls_back(
    settings_for, smtp_gw, sms_gw
):
    sms_gw.set_outcome("+64210000022", "expired")  # phone off for the validity period
    async with running_dispatch(settings_for(retry_max_attempts=2)) as stack:
        await stack.publish_incident(incident_message(mode="sms_else_email"))
        notice = notice_message(stack.sealer, 22, person(22))
        await stack.publish_notices([notice])
        await stack.wait_until(
            lambda: _statuses(stack, notice) == {"sms": "permanent-failure", "email": "sent"},
            what="two expiries, then email",
        )
    references = sorted(m.reference for m in sms_gw.messages.values())
    assert references == [f"{notice.notice_id}:sms", f"{notice.notice_id}:sms:g1"]
    assert len(smtp_gw.messages) == 1
