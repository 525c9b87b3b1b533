"""The broker and the database fail under a running system: a private Kafka broker stopped and
started mid-stream, down for a minute while feeds keep arriving; a private PostgreSQL server
restarted mid-batch and down for longer than dispatch's lease. The shared broker and server
are never touched."""

import asyncio
import time

import pytest

from testkit.groundtruth import ground_truth

from .conftest import driver_for, settle_and_reconcile

pytestmark = [pytest.mark.slow]

KAFKA_OUTAGE_S = 60  # the "Kafka down for a minute"


async def test_broker_stop_and_start_mid_stream(make_system, private_kafka):
    truth = ground_truth(1500, agencies=3, seed=31)
    system = await make_system(kafka=private_kafka.bootstrap,
                               env={"dedupe": {"PANUI_CONSUMER_BATCH_MAX_RECORDS": "100"}})
    await driver_for(system, truth).run()
    await system.wait_for(lambda: system.count("dedupe", "SELECT count(*) FROM record_state") >= 300,
                          what="dedupe to be consuming")
    private_kafka.stop()
    system.event("kafka stopped")
    assert system.count("dedupe", "SELECT count(*) FROM record_state") < truth.records, "mid-stream"
    await asyncio.sleep(5)
    private_kafka.start()
    system.event("kafka started")
    result = await settle_and_reconcile(system, truth, timeout=150)
    result.assert_clean()
    for name, proc in system.services.items():
        assert proc.alive, f"{name} died with the broker"


async def test_kafka_down_for_a_minute_while_feeds_keep_arriving(make_system, private_kafka):
    """Intake's outbox is what lets it accept feeds without Kafka: it stays ready, answers 202
    to every feed and completion, and everything flows once the broker is back."""
    truth = ground_truth(1200, agencies=3, seed=32)
    system = await make_system(kafka=private_kafka.bootstrap)
    driver = driver_for(system, truth)
    await driver.create_incidents()
    first_half = {key: records[: len(records) // 2] for key, records in truth.feeds.items()}
    for (incident, agency), records in first_half.items():
        await driver.upload(incident, agency, records, tag="a")
    private_kafka.stop()
    system.event("kafka stopped")
    down_since = time.monotonic()
    readiness: list[tuple[float, int, dict]] = []

    async def probe() -> None:
        while True:
            status, body = await system.services["intake"].readiness()
            readiness.append((time.monotonic() - down_since, status, body.get("checks", {})))
            await asyncio.sleep(2)

    prober = asyncio.create_task(probe())
    try:
        driver.retry_deadline_s = 10  # intake must answer now, not once Kafka is back
        for (incident, agency), records in truth.feeds.items():
            receipts = await driver.upload(incident, agency, records[len(records) // 2:], tag="b")
            assert all(r["accepted"] == r["received"] for r in receipts)
        completions = await driver.complete_all()
        assert sum(c["record_count"] for c in completions) == truth.records
        await asyncio.sleep(max(0.0, KAFKA_OUTAGE_S - (time.monotonic() - down_since)))
    finally:
        prober.cancel()
    private_kafka.start()
    system.event("kafka started")
    result = await settle_and_reconcile(system, truth, timeout=150)
    not_ready = [(round(t), s, c) for t, s, c in readiness if s != 200]
    assert not not_ready, f"intake was not ready while Kafka was down: {not_ready[:3]}"
    result.assert_clean()
    assert all(p.alive for p in system.services.values())


async def test_postgres_restart_mid_batch(make_system, private_postgres):
    truth = ground_truth(1500, agencies=3, seed=33)
    system = await make_system(pg=private_postgres.admin_url,
                               env={"dedupe": {"PANUI_CONSUMER_BATCH_MAX_RECORDS": "100"}})
    await driver_for(system, truth).run()
    await system.wait_for(lambda: system.count("dedupe", "SELECT count(*) FROM record_state") >= 300,
                          what="dedupe to be consuming")
    private_postgres.restart("fast")  # every connection of every service is cut
    system.event("postgres restarted")
    result = await settle_and_reconcile(system, truth, timeout=150)
    result.assert_clean()
    assert all(p.alive for p in system.services.values())


async def test_database_outage_longer_than_the_lease(make_system, private_postgres):
    """Sends in flight finish while the database is down; their results wait in memory. When
    it is back, those results must win over the lease that expired meanwhile: no process
    crashed, so there is no SMTP window — not one email may go out twice."""
    lease = 6
    truth = ground_truth(1000, agencies=2, seed=34, mix={("email",): 1})
    system = await make_system(pg=private_postgres.admin_url, env={"dispatch": {
        "PANUI_SENDING_LEASE_S": str(lease), "PANUI_SMTP_TIMEOUT_S": "3",
        "PANUI_SEND_DEADLINE_S": "4"}})
    await system.control("smtp", "/_control/behaviour", {"delay_seconds": 0.3})
    await driver_for(system, truth).run()
    await system.wait_for(lambda: system.email_count() >= 60, timeout=120, what="emails to flow")
    private_postgres.stop("fast")
    system.event("postgres stopped")
    await asyncio.sleep(lease * 2.5)
    private_postgres.start()
    system.event("postgres started")
    await system.control("smtp", "/_control/behaviour", {"delay_seconds": 0})
    result = await settle_and_reconcile(system, truth, timeout=150)
    result.assert_clean()  # no email window: nothing crashed
