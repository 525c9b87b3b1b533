"""SIGTERM within the grace period, on a real `python -m services.dedupe` process mid-stream: it
stops cleanly on its own well inside Kubernetes' grace (uvicorn re-raises the signal once the
app has shut down, so the exit status is "terminated by SIGTERM"), having finished and committed the batch
in hand — every record applied is committed and nothing committed is unapplied — and its outbox
relay has published every notice the last batches released (the outbox is empty, and each
notice in the database is on the topic exactly once). This already held on main for dedupe
(its stop finished the batch too); the test pins it now that the loops are supervised, and the
relay's drain at stop makes "outbox empty" hold even when the stop lands right after a release."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlmodel import Session

from services.common.clock import utcnow
from services.common.crypto import Sealer
from services.common.db import make_engine
from services.common.messages import decode_notice
from services.dedupe.app import create_app
from services.dedupe.settings import DedupeSettings
from testkit.factories import synthetic_person
from testkit.infra import REPO, WAIT_S, TopicReader
from testkit.messages import incident_message, publish, record_message
from tests.conftest import running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

RECORDS = 1500
GRACE_S = 45  # deploy/k8s/dedupe.yaml terminationGracePeriodSeconds


async def test_sigterm_finishes_the_batch_in_hand_commits_and_publishes(
        service_env, pg_database, kafka_bootstrap, topic_prefix, data_keys, tmp_path):
    database_url = pg_database("dedupe")
    settings = DedupeSettings(**service_env, database_url=database_url)
    sealer = Sealer(data_keys)
    async with running(create_app(settings)):  # creates the topics
        pass
    # Released at once (deadline passed, no settle window): notices flow while records arrive.
    await publish(kafka_bootstrap, f"{topic_prefix}incidents.v1", [
        incident_message(f"inc-{n}", {"gp": "Test GP"}, ["gp"],
                         hold_deadline=utcnow() - timedelta(hours=1)) for n in range(3)])
    records_topic = f"{topic_prefix}affected-records.v1"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        futures = []
        for i in range(RECORDS):
            message = record_message(sealer, f"inc-{i % 3}", "gp", f"gp-{i:05d}",
                                     **synthetic_person(i))
            futures.append((message.source_record_id, await producer.send(
                records_topic, message.to_bytes(), key=message.incident_id.encode())))
        where = {srid: await future for srid, future in futures}
    finally:
        await producer.stop()

    engine = make_engine(database_url)

    def applied() -> set[str]:
        with Session(engine) as session:
            return set(session.execute(text("SELECT source_record_id FROM record_state")).scalars())

    def released() -> bool:
        with Session(engine) as session:
            return session.execute(text("SELECT count(*) FROM notice_state")).scalar_one() > 0

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PANUI_TOPIC_PREFIX": topic_prefix, "PANUI_DATA_KEYS": data_keys,
           "DATABASE_URL": database_url, "PANUI_PORT": "0", "PANUI_RELEASE_TICK_S": "0.2",
           "PANUI_CONSUMER_BATCH_MAX_RECORDS": "100"}
    log = tmp_path / "dedupe.log"
    process = subprocess.Popen([sys.executable, "-m", "services.dedupe"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        # Mid-stream, and after a first release: a stopping dedupe runs no more ticks or
        # release chunks (the persons left are released by the next start), so a SIGTERM
        # before any release — CI's loaded box once got there — would leave nothing to check
        # the relay's drain against.
        async with asyncio.timeout(WAIT_S):
            while len(applied()) < RECORDS // 4 or not released():
                await asyncio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = await asyncio.to_thread(process.wait, GRACE_S)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert code in (0, -signal.SIGTERM), f"exit code {code}"
    assert '"msg": "service stopped"' in log.read_text(), "the shutdown did not complete"
    assert took < GRACE_S

    done = applied()
    assert RECORDS // 4 <= len(done) < RECORDS, "SIGTERM must land mid-stream"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(
            settings.consumer_group("dedupe.affected-records"))
    finally:
        await admin.close()
    committed = {tp.partition: meta.offset for tp, meta in offsets.items()
                 if tp.topic == records_topic}
    below_commit = {srid for srid, meta in where.items()
                    if meta.offset < committed.get(meta.partition, 0)}
    # The batch in hand was finished and committed: applied == committed, nothing in between.
    assert done == below_commit, (len(done), len(below_commit))

    with Session(engine) as session:
        pending = session.execute(text("SELECT count(*) FROM outbox_message")).scalar_one()
        notice_ids = set(session.execute(text("SELECT notice_id FROM notice_state")).scalars())
    engine.dispose()
    assert pending == 0, f"{pending} notices left unpublished by a clean stop"
    reader = TopicReader(kafka_bootstrap, f"{topic_prefix}notices.v1")
    await reader.start()
    try:
        published = [decode_notice(m.value).notice_id for m in await reader.drain(quiet_s=1.0)]
    finally:
        await reader.stop()
    # Every notice released before the stop is out, once (persons whose release was still due
    # at the stop are released by the next start: their records are committed and stored).
    assert notice_ids and sorted(published) == sorted(notice_ids)
    print(f"SIGTERM to exit: {took:.1f}s; {len(done)} records applied and committed")
