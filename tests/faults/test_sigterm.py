"""SIGTERM, as Kubernetes stops a pod: each service, stopped mid-stream, finishes what it has
in hand and exits within the pod's grace period (terminationGracePeriodSeconds: 45 in
deploy/k8s), by itself. A clean stop leaves nothing half-done, so after the restarts there is
no SMTP window either: nobody lost, not one message twice."""

import asyncio

import pytest

from testkit.groundtruth import ground_truth

from .conftest import driver_for, settle_and_reconcile

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

GRACE_S = 45.0


async def test_sigterm_each_service_mid_stream_within_the_grace_period(make_system):
    truth = ground_truth(1500, agencies=3, seed=81)
    system = await make_system(env={"dedupe": {"PANUI_CONSUMER_BATCH_MAX_RECORDS": "100"}})
    await system.control("smtp", "/_control/behaviour", {"delay_seconds": 0.2})  # sends in flight
    driver = driver_for(system, truth, chunk_records=100, pace_s=0.3)
    await driver.create_incidents()
    upload = asyncio.create_task(driver.upload_all(parallel=False))
    took = {}

    await system.wait_for(lambda: system.count("intake", "SELECT count(*) FROM affected_record") >= 300,
                          what="feeds to arrive")
    took["intake"] = system.terminate("intake", GRACE_S)  # mid-upload
    await system.restart("intake")
    await system.wait_for(lambda: system.count("dedupe", "SELECT count(*) FROM record_state") >= 600,
                          timeout=120, what="dedupe to be consuming")
    took["dedupe"] = system.terminate("dedupe", GRACE_S)  # mid-batch
    await system.restart("dedupe")
    await upload
    await driver.complete_all()
    await system.wait_for(lambda: system.email_count() >= 100, timeout=120, what="emails to flow")
    took["dispatch"] = system.terminate("dispatch", GRACE_S)  # mid-send
    assert system.email_count() < len(truth.persons), "the stop must land mid-send"
    await system.restart("dispatch")

    result = await settle_and_reconcile(system, truth, timeout=150)
    print("seconds to exit after SIGTERM:", took)
    result.assert_clean()  # no email window: a clean stop records every send it made
    assert all(t < GRACE_S for t in took.values()), took
    for name in took:
        how, _seconds, rc = system.services[name].exits[-1]
        assert (how, rc) == ("SIGTERM", 0), f"{name} did not exit cleanly: {how}, rc={rc}"
