import asyncio
import json
import random
from dataclasses import replace

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.dispatch.delivery_state import DeliveryStatus as S
from services.dispatch.delivery_state import reference_for
from services.dispatch.providers.base import SmsMessage
from services.dispatch.providers.failover import FailoverSmsProvider
from services.dispatch.providers.receipts import InvalidSignature, ReceiptError, parse_receipt, sign
from services.dispatch.providers.sms_http import HttpSmsProvider
from services.gateways.serving import AsgiServer
from services.gateways.sms_server import SmsGateway
from testkit.infra import free_port as _free_port


def _sms(n=1, body="Example Health: notice emailed. Ref PAN-TEST", callback_url=None):
    return SmsMessage(
        reference_for(f"NOTICE-{n:04d}", "sms"), f"+642100000{n:02d}", body, callback_url
    )




async def test_send_accepted_is_sent(sms_gw):
    p = HttpSmsProvider(sms_gw.url, name="primary")
    r = await p.send(_sms())
    await p.close()
    assert r.status is S.SENT and r.provider_reference and r.provider == "primary"
    [stored] = sms_gw.messages.values()
    assert stored.reference == "NOTICE-0001:sms"


async def test_retry_after_timeout_does_not_double_send(sms_gw):
    # The gateway stores the SMS, then answers slowly. The retry must succeed within the same
    # timeout: 1 s (not 0.2 s) so a loaded box's round trip fits, well short of the 3 s delay.
    sms_gw.slow_down(3.0)
    p = HttpSmsProvider(sms_gw.url, timeout=1.0)
    first = await p.send(_sms())
    assert first.status is S.TECHNICAL_FAILURE and first.ambiguous
    sms_gw.slow_down(0)
    second = await p.send(_sms())
    await p.close()
    assert second.status is S.SENT
    assert len(sms_gw.messages) == 1 and sms_gw.send_attempts == 2


async def test_http_status_mapping(sms_gw):
    p = HttpSmsProvider(sms_gw.url)
    sms_gw.rate_limit_next(1, retry_after=7)
    limited = await p.send(_sms())
    sms_gw.fail_next(1, 500)
    broken = await p.send(_sms())
    invalid = await p.send(SmsMessage("NOTICE-0009:sms", "021 not e164", "x"))
    sms_gw.fail_next(1, 400)
    rejected = await p.send(_sms())
    await p.close()
    assert (limited.status, limited.retry_after) == (S.TEMPORARY_FAILURE, 7.0)
    assert broken.status is S.TECHNICAL_FAILURE and not broken.ambiguous
    assert invalid.status is S.PERMANENT_FAILURE and invalid.detail == "http-422"
    assert rejected.status is S.PERMANENT_FAILURE
    assert sms_gw.messages == {}


async def test_reused_reference_with_different_body_is_conflict(sms_gw):
    p = HttpSmsProvider(sms_gw.url)
    assert (await p.send(_sms(body="one PAN-TEST"))).status is S.SENT
    clash = await p.send(_sms(body="two PAN-TEST"))
    await p.close()
    assert clash.status is S.TECHNICAL_FAILURE and clash.detail == "http-409"
    assert clash.ambiguous  # the gateway holds a message under that reference: never fail over


@pytest.mark.parametrize("code", [502, 504])
async def test_an_intermediarys_5xx_after_the_gateway_took_it_is_ambiguous(sms_gw, code):
    p = HttpSmsProvider(sms_gw.url)
    sms_gw.fail_after_store_next(1, code)
    r = await p.send(_sms())
    again = await p.send(_sms())
    await p.close()
    assert (r.status, r.ambiguous, r.detail) == (S.TECHNICAL_FAILURE, True, f"http-{code}")
    assert again.status is S.SENT and len(sms_gw.messages) == 1


async def test_the_gateways_own_500_and_503_are_certain_failures(sms_gw):
    p = HttpSmsProvider(sms_gw.url)
    sms_gw.fail_next(2, 503)
    r = await p.send(_sms())
    await p.close()
    assert r.status is S.TECHNICAL_FAILURE and not r.ambiguous and sms_gw.messages == {}


async def test_a_connection_reset_after_sending_is_ambiguous(sms_gw):
    p = HttpSmsProvider(sms_gw.url)
    sms_gw.reset_after_store_next(1)
    r = await p.send(_sms())
    await p.close()
    assert (r.status, r.ambiguous, r.detail) == (S.TECHNICAL_FAILURE, True, "connection-lost")
    assert len(sms_gw.messages) == 1


def test_every_http_answer_is_classified():
    from services.dispatch.providers.base import Answer

    verdict = HttpSmsProvider.verdict_for_http
    assert verdict(409).answer is Answer.AMBIGUOUS
    assert verdict(418).answer is Answer.PERMANENT  # an unknown 4xx: this message, not us
    assert verdict(599).answer is Answer.AMBIGUOUS  # an unknown 5xx: may have been taken
    assert verdict(302).answer is Answer.AMBIGUOUS
    assert verdict(429).status is S.TEMPORARY_FAILURE and not verdict(429).ambiguous


async def test_api_key_required():
    async with SmsGateway(api_key="k-123") as gw:
        bad = HttpSmsProvider(gw.url, api_key="wrong")
        good = HttpSmsProvider(gw.url, api_key="k-123")
        assert (await bad.send(_sms())).status is S.TECHNICAL_FAILURE
        assert (await good.send(_sms())).status is S.SENT
        await bad.close()
        await good.close()


async def test_connection_refused_is_unambiguous_technical_failure():
    p = HttpSmsProvider(f"http://127.0.0.1:{_free_port()}")
    r = await p.send(_sms())
    await p.close()
    assert r.status is S.TECHNICAL_FAILURE and not r.ambiguous


# ------------------------------------------------------------------ failover


async def test_failover_on_5xx_marks_primary_unhealthy():
    async with SmsGateway() as a, SmsGateway() as b:
        now = [0.0]
        fo = FailoverSmsProvider(
            [(HttpSmsProvider(a.url, name="a"), 100), (HttpSmsProvider(b.url, name="b"), 1)],
            cooldown=30,
            clock=lambda: now[0],
            rng=random.Random(0),
        )
        assert (await fo.send(_sms(1))).provider == "a"
        a.fail_next(1, 503)
        r = await fo.send(_sms(2))
        assert (r.status, r.provider) == (S.SENT, "b")
        assert not fo.healthy("a")
        assert (await fo.send(_sms(3))).provider == "b"  # a still cooling down
        now[0] = 31
        assert (await fo.send(_sms(4))).provider == "a"
        assert set(a.by_reference) == {"NOTICE-0001:sms", "NOTICE-0004:sms"}
        assert set(b.by_reference) == {"NOTICE-0002:sms", "NOTICE-0003:sms"}
        await fo.close()


async def test_failover_when_primary_is_down():
    async with SmsGateway() as b:
        fo = FailoverSmsProvider(
            [
                HttpSmsProvider(f"http://127.0.0.1:{_free_port()}", name="a"),
                HttpSmsProvider(b.url, name="b"),
            ],
            rng=random.Random(3),
        )
        fo._entries[1].weight = 0  # make 'a' the preferred one
        r = await fo.send(_sms())
        assert (r.status, r.provider) == (S.SENT, "b")
        await fo.close()


async def test_no_failover_on_ambiguous_timeout_or_recipient_failure():
    async with SmsGateway() as a, SmsGateway() as b:
        fo = FailoverSmsProvider(
            [
                (HttpSmsProvider(a.url, name="a", timeout=0.2), 100),
                (HttpSmsProvider(b.url, name="b"), 0),
            ],
            rng=random.Random(0),
        )
        a.slow_down(0.5)
        r = await fo.send(_sms())
        assert r.ambiguous and r.provider == "a"
        assert b.messages == {}  # not sent to b: a may already have sent it
        a.slow_down(0)
        # The sender passes the pin its delivery row records: a may hold it.
        r2 = await fo.send(replace(_sms(), gateway="a", pinned=True))
        assert (r2.status, r2.provider) == (S.SENT, "a") and len(a.messages) == 1
        bad = await fo.send(SmsMessage("NOTICE-0002:sms", "nope", "x"))
        assert bad.status is S.PERMANENT_FAILURE and b.messages == {}
        await fo.close()


# ------------------------------------------------------------------ receipts


class ReceiptSink:
    """A real HTTP endpoint standing in for the service's webhook."""

    def __init__(self, secret):
        self.receipts, self.errors = [], []
        app = FastAPI()

        @app.post("/receipts")
        async def receive(request: Request):
            body = await request.body()
            try:
                provider = request.url.path.rpartition("/")[2]  # the callback URL's last segment
                self.receipts.append(parse_receipt(request.headers, body, secret, provider))
            except ReceiptError as exc:
                self.errors.append(exc)
            return {"ok": True}

        @app.post("/receipts-500")
        async def down():
            return JSONResponse({}, status_code=500)

        self.server = AsgiServer(app)


async def test_delivery_receipts_end_to_end(sms_gw):
    sink = ReceiptSink("test-secret")
    port = await sink.server.start()
    try:
        sms_gw.set_outcome("+64210000002", "failed")
        p = HttpSmsProvider(sms_gw.url)
        cb = f"http://127.0.0.1:{port}/receipts"
        r1 = await p.send(_sms(1, callback_url=cb))
        r2 = await p.send(_sms(2, callback_url=cb))
        await sms_gw.wait_for_receipts(2)
        for _ in range(100):
            if len(sink.receipts) == 2:
                break
            await asyncio.sleep(0.01)
        by_ref = {r.reference: r for r in sink.receipts}
        assert by_ref["NOTICE-0001:sms"].status is S.DELIVERED
        assert by_ref["NOTICE-0001:sms"].provider_reference == r1.provider_reference
        assert by_ref["NOTICE-0002:sms"].status is S.PERMANENT_FAILURE
        assert by_ref["NOTICE-0002:sms"].provider_reference == r2.provider_reference
        assert sink.errors == []
        await p.close()
    finally:
        await sink.server.stop()


async def test_receipts_are_retried_when_callback_fails():
    sink = ReceiptSink("s")
    port = await sink.server.start()
    try:
        async with SmsGateway(callback_secret="s", receipt_attempts=3) as gw:
            p = HttpSmsProvider(gw.url)
            await p.send(_sms(callback_url=f"http://127.0.0.1:{port}/receipts-500"))
            sent = await gw.wait_for_receipts(3)
            assert [x["http_status"] for x in sent] == [500, 500, 500]
            await p.close()
    finally:
        await sink.server.stop()


def test_parse_receipt_rejects_bad_signature_and_replay():
    body = json.dumps(
        {
            "id": "p-1",
            "reference": "NOTICE-0001:sms",
            "status": "delivered",
            "occurred_at": "2026-03-05T01:02:03+00:00",
        }
    ).encode()
    good = {"x-panui-signature": sign(body, "secret", "sms-primary", timestamp=1_000_000)}
    receipt = parse_receipt(good, body, "secret", "sms-primary", now=1_000_010)
    assert receipt.status is S.DELIVERED and receipt.provider_status == "delivered"
    with pytest.raises(InvalidSignature, match="does not match"):
        parse_receipt(good, body, "other-secret", "sms-primary", now=1_000_010)
    with pytest.raises(InvalidSignature, match="does not match"):  # signed for another provider
        parse_receipt(good, body, "secret", "sms-secondary", now=1_000_010)
    with pytest.raises(InvalidSignature, match="does not match"):
        parse_receipt(good, body.replace(b"delivered", b"failed"), "secret", "sms-primary",
                      now=1_000_010)
    with pytest.raises(InvalidSignature, match="tolerance"):
        parse_receipt(good, body, "secret", "sms-primary", now=1_000_000 + 3600)
    with pytest.raises(InvalidSignature, match="missing"):
        parse_receipt({}, body, "secret", "sms-primary")
    with pytest.raises(InvalidSignature, match="malformed"):
        parse_receipt({"X-Panui-Signature": "garbage"}, body, "secret", "sms-primary")
    unsigned_nonce = good["x-panui-signature"].replace(",n=", ",x=")
    with pytest.raises(InvalidSignature, match="malformed"):
        parse_receipt({"X-Panui-Signature": unsigned_nonce}, body, "secret", "sms-primary",
                      now=1_000_010)
    assert receipt.nonce and receipt.nonce in good["x-panui-signature"]


def test_parse_receipt_rejects_unknown_status_and_bad_json():
    body = json.dumps({"id": "p", "reference": "r", "status": "vanished"}).encode()
    with pytest.raises(ReceiptError, match="unknown"):
        parse_receipt({"X-Panui-Signature": sign(body, "k", "p")}, body, "k", "p")
    with pytest.raises(ReceiptError, match="JSON"):
        parse_receipt({"X-Panui-Signature": sign(b"[", "k", "p")}, b"[", "k", "p")


async def test_a_pinned_reference_never_leaves_its_gateway_even_when_it_is_down():
    async with SmsGateway() as b:
        down = HttpSmsProvider(f"http://127.0.0.1:{_free_port()}", name="a")
        fo = FailoverSmsProvider([(down, 1), (HttpSmsProvider(b.url, name="b"), 1)])
        moves: list[str] = []

        async def repin(gateway):
            moves.append(gateway)
            return True

        r = await fo.send(replace(_sms(), gateway="a", pinned=True), repin=repin)
        assert (r.status, r.provider, moves) == (S.TECHNICAL_FAILURE, "a", [])
        assert b.messages == {}
        # Not pinned (nothing sent anywhere yet): the move is recorded first, then made.
        r = await fo.send(replace(_sms(), gateway="a"), repin=repin)
        assert (r.status, r.provider, moves) == (S.SENT, "b", ["b"])
        await fo.close()


async def test_a_failover_that_cannot_be_recorded_is_not_made():
    async with SmsGateway() as b:
        fo = FailoverSmsProvider([
            (HttpSmsProvider(f"http://127.0.0.1:{_free_port()}", name="a"), 1),
            (HttpSmsProvider(b.url, name="b"), 0)])

        async def cannot(gateway):
            return False

        r = await fo.send(replace(_sms(), gateway="a"), repin=cannot)
        assert r.status is S.TECHNICAL_FAILURE and b.messages == {}
        assert fo.choose() == "b"  # a is marked down: new references go to b
        await fo.close()


def test_every_verdict_records_the_status_its_class_means():
    """Accepted answers record a send, permanent ones fail for good (fallback), ambiguous ones
    a technical failure that keeps its gateway: the classes and statuses never disagree."""
    from services.dispatch.providers.base import Answer
    from services.dispatch.providers.smtp import SmtpEmailProvider

    expected = {Answer.ACCEPTED: {S.SENT, S.DELIVERED}, Answer.PERMANENT: {S.PERMANENT_FAILURE},
                Answer.TEMPORARY: {S.TEMPORARY_FAILURE, S.TECHNICAL_FAILURE},
                Answer.AMBIGUOUS: {S.TECHNICAL_FAILURE}, Answer.UNSENT: {S.TECHNICAL_FAILURE}}
    for answers in (HttpSmsProvider.ANSWERS, HttpSmsProvider.BATCH_ANSWERS,
                    SmtpEmailProvider.ANSWERS):
        for key, verdict in answers.items():
            assert verdict.status in expected[verdict.answer], key
            assert verdict.ambiguous == (verdict.answer is Answer.AMBIGUOUS), key
            assert verdict.unsent == (verdict.answer is Answer.UNSENT), key
