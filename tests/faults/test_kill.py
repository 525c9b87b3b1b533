"""kill -9 of each service mid-stream, then a restart: nobody lost, nobody notified twice —
except, for email, the documented SMTP window (the gateway said 250, the process died before
recording it: those references, and only those, may arrive twice)."""

import asyncio

import pytest

from testkit.groundtruth import ground_truth

from .conftest import driver_for, settle_and_reconcile

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


async def test_kill_intake_mid_upload(make_system):
    truth = ground_truth(1500, agencies=3, seed=21)
    system = await make_system()
    driver = driver_for(system, truth, chunk_records=250)
    await driver.create_incidents()
    upload = asyncio.create_task(driver.upload_all())
    await system.wait_for(lambda: system.count("intake", "SELECT count(*) FROM affected_record") >= 400,
                          what="intake to store a third of the records")
    system.kill("intake")
    stored = system.count("intake", "SELECT count(*) FROM affected_record")
    assert stored < truth.records, "the kill must land mid-upload"
    await asyncio.sleep(1.0)
    await system.restart("intake")
    await upload  # chunks lost with the process are sent again with their Idempotency-Key
    await driver.complete_all()
    result = await settle_and_reconcile(system, truth)
    result.assert_clean()
    # Each record stored once, as version 1: a retried request stored nothing twice.
    assert system.query("intake", "SELECT count(*), max(version) FROM affected_record")[0] == (truth.records, 1)
    assert driver.failed_attempts > 0, "no request was lost to the kill: it proved nothing"


async def test_kill_dedupe_mid_batch(make_system):
    truth = ground_truth(1500, agencies=3, seed=22)
    system = await make_system(env={"dedupe": {"PANUI_CONSUMER_BATCH_MAX_RECORDS": "100"}})
    driver = driver_for(system, truth)
    await driver.run()
    await system.wait_for(lambda: system.count("dedupe", "SELECT count(*) FROM record_state") >= 500,
                          what="dedupe to apply a third of the records")
    system.kill("dedupe")
    assert system.count("dedupe", "SELECT count(*) FROM record_state") < truth.records
    await system.restart("dedupe")
    result = await settle_and_reconcile(system, truth)
    result.assert_clean()
    assert result.exactly_once == len(truth.persons)


def _smtp_window(system) -> set[str]:  # noqa: ANN001
    """References the SMTP gateway has accepted that dispatch has not recorded as sent: the
    documented window — a retry of these, and only these, may deliver a second copy."""
    accepted = {ref for _to, ref, _mid in system.emails()}
    sending = {r for (r,) in system.query("dispatch", "SELECT reference FROM delivery WHERE "
                                                      "channel = 'email' AND status = 'sending'")}
    return accepted & sending


async def test_kill_dispatch_mid_send_email(make_system):
    truth = ground_truth(1500, agencies=3, seed=23, mix={("email",): 1})
    system = await make_system()
    await system.control("smtp", "/_control/behaviour", {"delay_seconds": 0.2})  # sends in flight
    await driver_for(system, truth).run()
    await system.wait_for(lambda: system.email_count() >= 150, timeout=120, what="emails to flow")
    system.kill("dispatch")
    await asyncio.sleep(1.0)  # the gateway finishes the DATA exchanges it had in hand
    window = _smtp_window(system)
    print(f"SMTP window at the kill: {len(window)} emails accepted but not recorded")
    assert system.email_count() < len(truth.persons), "the kill must land mid-send"
    await system.restart("dispatch")
    result = await settle_and_reconcile(system, truth, timeout=180)
    result.assert_clean(email_window=window)


async def test_kill_dispatch_mid_send_sms(make_system):
    truth = ground_truth(1500, agencies=3, seed=24, mix={("mobile",): 1})
    system = await make_system()
    # The gateway stores each message, then answers slowly: killed sends were taken.
    await system.control("sms-0", "/_control/behaviour", {"delay_seconds": 0.3})
    await driver_for(system, truth).run()
    count = lambda: system.count("dispatch", "SELECT count(*) FROM delivery WHERE status <> 'queued'")  # noqa: E731
    await system.wait_for(lambda: count() >= 150, timeout=120, what="SMS sends to start")
    system.kill("dispatch")
    taken = len(await system.sms_messages())
    assert taken < len(truth.persons), "the kill must land mid-send"
    await system.control("sms-0", "/_control/behaviour", {"delay_seconds": 0})
    await system.restart("dispatch")
    result = await settle_and_reconcile(system, truth, timeout=180)
    result.assert_clean()
    assert result.channels["sms"].exactly_once == len(truth.persons)
