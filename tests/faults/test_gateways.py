"""Gateways that are slow, lose their answers or say "later": SMTP slower than dispatch's lease,
SMS answers lost behind a proxy (502/504 after the provider took the message), a 409 when a
retried SMS body differs, and email "deferred" receipts while the provider keeps retrying.
None of these is a crash, so there is no SMTP window: not one message may go out twice."""

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest

from services.gateways.signing import SIGNATURE_HEADER, signature_header
from testkit.groundtruth import ground_truth
from testkit.system import RECEIPT_SECRET

from .conftest import driver_for, settle_and_reconcile

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


async def test_slow_smtp_beyond_the_lease(make_system):
    """Four SMTP connections, a quarter of a second per message: the sender's waits for a
    connection, after it claimed up to 256 deliveries at once, outlast a 4 s lease."""
    truth = ground_truth(350, agencies=2, seed=41, mix={("email",): 1})
    system = await make_system(env={"dispatch": {
        "PANUI_SENDING_LEASE_S": "4", "PANUI_SMTP_TIMEOUT_S": "2", "PANUI_SEND_DEADLINE_S": "3",
        "PANUI_SMTP_POOL_SIZE": "4"}})
    await system.control("smtp", "/_control/behaviour", {"delay_seconds": 0.25})
    await driver_for(system, truth).run()
    # ~13 s of sending when each email goes once; copies that multiply never settle.
    result = await settle_and_reconcile(system, truth, timeout=90)
    result.assert_clean()


async def test_sms_502_and_504_after_the_provider_took_the_message(make_system):
    """A proxy in front of the primary SMS provider forwards each send and then answers 502 or
    504: the provider has the message. Failing over to the secondary sends it twice."""
    truth = ground_truth(600, agencies=2, seed=42, mix={("mobile",): 1})
    system = await make_system(sms_gateways=2, sms_proxy=True)
    await system.control("sms-proxy", "/_proxy/behaviour", {"answers": [502] * 40 + [504] * 40})
    await driver_for(system, truth).run()
    result = await settle_and_reconcile(system, truth, timeout=150)
    result.assert_clean()
    assert result.channels["sms"].exactly_once == len(truth.persons)


async def test_sms_409_when_the_retried_body_differs(make_system):
    """Mode "both": each SMS says "we have emailed you" while the email is on its way. The
    first SMS attempts time out (the gateway stored them and answers late), then the emails
    fail for good; the retried SMS now reads differently and the provider answers 409 for
    the reused reference. The message was sent: failing over sends a second one, and giving
    up on it puts the person on the postal list as well."""
    truth = ground_truth(400, agencies=2, seed=43, mode="both", mix={("email", "mobile"): 1})
    system = await make_system(sms_gateways=2, env={"dispatch": {"PANUI_SMS_TIMEOUT_S": "1"}})
    await system.control("sms-0", "/_control/behaviour", {"delay_seconds": 2.0})
    await system.control("smtp", "/_control/behaviour", {"fail_next": 100_000, "fail_code": 554})
    await driver_for(system, truth).run()
    await system.wait_for(lambda: system.count(
        "dispatch", "SELECT count(*) FROM delivery WHERE channel = 'email' AND status = "
                    "'permanent-failure'") >= len(truth.persons) // 2, timeout=120,
        what="emails to fail")
    await system.control("sms-0", "/_control/behaviour", {"delay_seconds": 0})
    result = await settle_and_reconcile(system, truth, timeout=150)
    result.assert_clean(fallback_allowed=True)  # the emails were refused, on purpose
    assert result.channels["sms"].exactly_once == len(truth.persons)


async def test_email_deferred_receipts_while_the_provider_retries(make_system):
    """Like an ESP's webhook, each email is reported "deferred" (the provider keeps trying),
    then "delivered". A deferral is not a failure: sending again under a new Message-ID
    delivers a second email."""
    truth = ground_truth(500, agencies=2, seed=44, mix={("email",): 1})
    system = await make_system()
    await driver_for(system, truth).run()
    deferred: set[str] = set()

    async def post(client: httpx.AsyncClient, message_id: str, reference: str, status: str) -> None:
        body = json.dumps({"id": message_id, "reference": reference, "status": status,
                           "occurred_at": datetime.now(UTC).isoformat()}).encode()
        r = await client.post("/v1/receipts/smtp", content=body, headers={
            "content-type": "application/json",
            SIGNATURE_HEADER: signature_header(body, RECEIPT_SECRET, "smtp")})
        assert r.status_code == 200, r.text

    async with httpx.AsyncClient(base_url=system.dispatch_url(), timeout=30) as client:
        persons = len(truth.persons)
        deadline = asyncio.get_running_loop().time() + 120
        while True:
            emails = system.emails()
            for _to, reference, message_id in emails:
                if reference not in deferred:
                    deferred.add(reference)
                    await post(client, message_id, reference, "deferred")
            if len({to for to, _r, _m in emails}) >= persons:
                break
            assert asyncio.get_running_loop().time() < deadline, "emails did not arrive"
            await asyncio.sleep(0.3)
        await asyncio.sleep(3)  # whatever a deferral triggers happens now
        for _to, reference, message_id in system.emails():
            await post(client, message_id, reference, "delivered")
    assert len(deferred) >= persons  # every person's email was reported deferred
    result = await settle_and_reconcile(system, truth, timeout=120)
    result.assert_clean()
    delivered = system.count("dispatch", "SELECT count(*) FROM delivery WHERE status = 'delivered'")
    assert delivered == persons
