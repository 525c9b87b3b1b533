"""Replicas taking over from each other: two dedupe processes in one consumer group while
partitions move between them (a replica joins mid-stream, then one is killed), and two intake
processes sharing the outbox when the one publishing it (the leader) is killed."""

import asyncio

import pytest

from testkit.groundtruth import ground_truth

from .conftest import driver_for, settle_and_reconcile

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


async def test_two_dedupe_replicas_with_a_rebalance(make_system):
    truth = ground_truth(1800, agencies=3, incidents=3, seed=51)
    system = await make_system(env={"dedupe": {"PANUI_CONSUMER_BATCH_MAX_RECORDS": "50"}})
    driver = driver_for(system, truth, chunk_records=50, pace_s=0.5)  # a stream of ~20 s
    await driver.create_incidents()
    upload = asyncio.create_task(driver.upload_all(parallel=False))
    applied = lambda: system.count("dedupe", "SELECT count(*) FROM record_state")  # noqa: E731
    system.add_service("dedupe", name="dedupe-b")
    await system.start_services("dedupe-b")  # joins the group: partitions move mid-stream
    await system.wait_for(lambda: applied() >= 1000, timeout=120, what="both replicas to consume")
    system.kill("dedupe")  # the partitions it owned move again
    assert applied() < truth.records, "the rebalances must land mid-stream"
    await upload
    await driver.complete_all()
    result = await settle_and_reconcile(system, truth, timeout=150)
    result.assert_clean()
    assert system.count("dedupe", "SELECT count(*) FROM notice_state") == len(truth.persons)


async def test_outbox_leader_handover(make_system):
    """Both intake replicas accept feeds; only the advisory-lock holder publishes the outbox.
    Killing it mid-stream hands the outbox to the other, which publishes the rest — rows the
    dead leader had published but not yet deleted go out again and are deduplicated."""
    truth = ground_truth(1500, agencies=3, seed=52)
    system = await make_system()
    system.add_service("intake", name="intake-b")
    await system.start_services("intake-b")
    driver = driver_for(system, truth, chunk_records=100)
    await driver.create_incidents()
    upload = asyncio.create_task(driver.upload_all())

    async def leader() -> str | None:
        for name in ("intake", "intake-b"):
            if await system.services[name].metric("panui_outbox_published_total", service="intake") > 0:
                return name
        return None

    await system.wait_for(lambda: system.count("intake", "SELECT count(*) FROM affected_record") >= 400,
                          what="feeds to arrive")
    await system.wait_for(leader, what="a replica to publish")
    name = await leader()
    system.kill(name)
    assert system.count("intake", "SELECT count(*) FROM affected_record") < truth.records, "mid-stream"
    await upload
    await driver.complete_all()
    result = await settle_and_reconcile(system, truth, timeout=150)
    result.assert_clean()
    survivor = "intake-b" if name == "intake" else "intake"
    assert await system.services[survivor].metric("panui_outbox_published_total", service="intake") > 0
    assert system.query("intake", "SELECT count(*), max(version) FROM affected_record")[0] == (truth.records, 1)
