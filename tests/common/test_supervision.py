"""Supervised background loops on real services, real Kafka and PostgreSQL: a consumer loop that
crashes is restarted with a fresh consumer and every record is still applied once; a loop that
cannot be restarted, or is wedged in one batch, fails the liveness probe (so Kubernetes
restarts the pod) while readiness — "can serve" — stays green. (On main the crashed consumer
task stayed dead and /healthz always said ok.)"""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from services.common.crypto import Sealer
from services.common.messages import decode_notice
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from testkit.factories import synthetic_person
from testkit.infra import TopicReader
from testkit.messages import completion, incident_message, publish, record_message
from tests.conftest import running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

PERSONS = 40
FAST_RESTARTS = {"worker_restart_base_s": 0.05, "worker_restart_max_s": 0.2}


def _records(sealer: Sealer, start: int, stop: int) -> list:
    return [record_message(sealer, "inc-s", "gp", f"gp-{i:03d}", **synthetic_person(i))
            for i in range(start, stop)]


async def test_a_crashed_consumer_loop_is_restarted_and_every_record_applied_once(
        service_env, pg_database, kafka_bootstrap):
    settings = DedupeSettings(**service_env, database_url=pg_database("dedupe"),
                              release_tick_s=0.2, consumer_batch_max_records=10, **FAST_RESTARTS)
    sealer = Sealer(settings.data_keys.get_secret_value())
    records_topic = f"{settings.topic_prefix}affected-records.v1"
    app = create_dedupe(settings)
    async with running(app) as client:
        await publish(kafka_bootstrap, f"{settings.topic_prefix}incidents.v1",
                      [incident_message("inc-s", {"gp": "Test GP"}, ["gp"])])
        worker = app.state.runtime.workers[1]
        consumer = worker.consumer
        fetch, committed = consumer.getmany, consumer.committed
        calls = {"getmany": 0}

        async def crashing_getmany(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls["getmany"] += 1
            if calls["getmany"] == 5:  # the broker client misbehaves once, mid-stream
                raise RuntimeError("injected: the consumer broke")
            return await fetch(*args, **kwargs)

        async def broken_committed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise RuntimeError("injected: cannot read the committed offset")

        consumer.getmany, consumer.committed = crashing_getmany, broken_committed
        await publish(kafka_bootstrap, records_topic, _records(sealer, 0, PERSONS // 2))
        await asyncio.sleep(1.0)
        await publish(kafka_bootstrap, records_topic,
                      [*_records(sealer, PERSONS // 2, PERSONS), completion("inc-s", "gp", PERSONS)])
        reader = TopicReader(kafka_bootstrap, f"{settings.topic_prefix}notices.v1")
        await reader.start()
        try:
            await reader.wait_for(lambda m: len(m) >= PERSONS, timeout=60)
            await asyncio.sleep(1.5)
            notices = [decode_notice(m.value) for m in await reader.drain()]
        finally:
            await reader.stop()
        health = await client.get("/healthz")
        del committed

    assert calls["getmany"] >= 5, "the injected crash must have happened"
    assert len(notices) == PERSONS == len({n.person_id for n in notices})
    assert health.status_code == 200
    loop = health.json()["loops"][f"consumer:{worker.group_id}"]
    assert loop["restarts"] >= 1 and loop["state"] == "running" and loop["last_error"] == "RuntimeError"
    assert REGISTRY.get_sample_value("panui_worker_restarts_total", {
        "service": "dedupe", "worker": f"consumer:{worker.group_id}"}) >= 1


async def test_liveness_fails_when_a_consumer_cannot_be_restarted(
        service_env, pg_database, monkeypatch):
    async def always_broken(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise RuntimeError("injected: this consumer can never fetch")

    settings = DispatchSettings(**service_env, database_url=pg_database("dispatch"),
                                worker_give_up_after=2, **FAST_RESTARTS)
    async with running(create_dispatch(settings)) as client:
        assert (await client.get("/healthz")).status_code == 200
        monkeypatch.setattr(AIOKafkaConsumer, "getmany", always_broken)
        groups = [settings.consumer_group(g) for g in ("dispatch.incidents", "dispatch.notices")]
        async with asyncio.timeout(30):
            while True:
                health = await client.get("/healthz")
                if all(health.json()["loops"][f"consumer:{g}"]["state"] == "dead" for g in groups):
                    break
                await asyncio.sleep(0.1)
        ready = await client.get("/readyz")
        monkeypatch.undo()

    assert health.status_code == 503 and health.json()["status"] == "unhealthy"
    loops = health.json()["loops"]
    for group in groups:
        assert loops[f"consumer:{group}"]["restarts"] == 3  # gave up after the third restart
        assert loops[f"consumer:{group}"]["last_error"] == "RuntimeError"
    assert loops["outbox-relay"]["state"] == "running"
    # Readiness means "can serve": the database answers, so dispatch still serves its API.
    assert ready.status_code == 200
    assert ready.json()["details"]["loops"][f"consumer:{groups[0]}"]["state"] == "dead"


async def test_liveness_fails_while_a_consumer_is_wedged_in_one_batch(
        service_env, pg_database, kafka_bootstrap):
    settings = DedupeSettings(**service_env, database_url=pg_database("dedupe"),
                              worker_wedged_after_s=0.5)
    sealer = Sealer(settings.data_keys.get_secret_value())
    app = create_dedupe(settings)
    async with running(app) as client:
        pipeline = app.state.runtime.pipeline
        apply_batch = pipeline.apply_batch
        release = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stuck(*args):  # noqa: ANN002, ANN202 - a batch that hangs (e.g. a lock never granted)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=30)
            return apply_batch(*args)

        pipeline.apply_batch = stuck
        await publish(kafka_bootstrap, f"{settings.topic_prefix}affected-records.v1",
                      _records(sealer, 0, 3))
        async with asyncio.timeout(30):
            while (health := await client.get("/healthz")).status_code == 200:
                await asyncio.sleep(0.1)
        release.set()
        async with asyncio.timeout(30):
            while (after := await client.get("/healthz")).status_code != 200:
                await asyncio.sleep(0.1)

    group = settings.consumer_group("dedupe.affected-records")
    assert health.status_code == 503
    assert health.json()["loops"][f"consumer:{group}"]["state"] == "wedged"
    assert after.json()["loops"][f"consumer:{group}"]["state"] == "running"
