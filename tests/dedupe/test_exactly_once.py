"""Exactly one notice per person across replays and a dedupe process killed mid-stream."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlmodel import Session, func, select

from services.common.crypto import Sealer
from services.common.db import make_engine
from services.common.messages import decode_notice
from services.common.topics import DEDUPE_AFFECTED_RECORDS
from services.dedupe.app import create_app
from services.dedupe.models import NoticeState, RecordState
from services.dedupe.settings import DedupeSettings
from testkit.factories import synthetic_person
from testkit.infra import REPO, TopicReader
from testkit.messages import completion, incident_message, publish, record_message
from tests.conftest import running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

# 300 persons (600 records, 12 batches of 50 in the killed-mid-stream test; 30 release chunks of 10)
# leave several batches and chunks on each side of the kill, which the tests assert lands
# mid-way; 600 doubled their time (65-68 s each in CI) and proved nothing more.
PERSONS = 300
AGENCIES = {"gp": "Test GP", "lab": "Test Lab"}


def _stream(sealer: Sealer) -> list:
    """Each person has a GP record and a lab record: PERSONS persons, 2×PERSONS records."""
    out = []
    for i in range(PERSONS):
        incident = f"inc-{i % 3}"
        out.append(record_message(sealer, incident, "gp", f"gp-{i}", **synthetic_person(i)))
        out.append(record_message(sealer, incident, "lab", f"lab-{i}", categories=("lab_results",),
                                  **synthetic_person(i)))
    for n in range(3):
        out += [completion(f"inc-{n}", "gp", PERSONS // 3), completion(f"inc-{n}", "lab", PERSONS // 3)]
    return out


def _counts(database_url: str) -> tuple[int, int]:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            records = session.exec(select(func.count()).select_from(RecordState)).one()
            notices = session.exec(select(func.count()).select_from(NoticeState)).one()
            return records, notices
    finally:
        engine.dispose()


def _assert_one_notice_per_person(messages, expected: int = PERSONS) -> None:
    by_notice: dict[str, set[bytes]] = defaultdict(set)
    persons = set()
    for message in messages:
        notice = decode_notice(message.value)
        by_notice[notice.notice_id].add(message.value)
        assert notice.version == 1
        assert [a.agency_id for a in notice.agencies] == ["gp", "lab"]
        persons.add(notice.person_id)
    assert len(persons) == len(by_notice) == expected
    # A republished outbox row is the very same message (same message_id): consumers dedupe it.
    assert all(len(payloads) == 1 for payloads in by_notice.values())


async def _setup(settings: DedupeSettings, bootstrap: str, sealer: Sealer) -> None:
    async with running(create_app(settings)):  # creates the topics
        pass
    await publish(bootstrap, f"{settings.topic_prefix}incidents.v1",
                  [incident_message(f"inc-{n}", AGENCIES, ["gp", "lab"]) for n in range(3)])
    await publish(bootstrap, f"{settings.topic_prefix}affected-records.v1", _stream(sealer))


async def test_replaying_the_whole_topic_creates_nothing_new(service_env, pg_database,
                                                             kafka_bootstrap):
    settings = DedupeSettings(**service_env, database_url=pg_database("dedupe"), release_tick_s=0.2)
    sealer = Sealer(settings.data_keys.get_secret_value())
    await _setup(settings, kafka_bootstrap, sealer)
    notices_topic = f"{settings.topic_prefix}notices.v1"

    async with running(create_app(settings)):
        async with asyncio.timeout(90):
            while _counts(settings.database_url)[1] < PERSONS:
                await asyncio.sleep(0.2)

    # Rewind the consumer group to the very beginning and run again.
    group = settings.consumer_group("dedupe.affected-records")
    topic = f"{settings.topic_prefix}affected-records.v1"
    rewind = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                              enable_auto_commit=False)
    await rewind.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        rewind.assign(tps)
        await rewind.commit({tp: 0 for tp in tps})
    finally:
        await rewind.stop()

    async with running(create_app(settings)) as client:
        async with asyncio.timeout(60):
            while True:  # until the replay has been consumed to the end
                lag = 0
                worker = client._transport.app.state.runtime.workers[1]
                for tp in tps:
                    committed = await worker.consumer.committed(tp)
                    end = (await worker.consumer.end_offsets([tp]))[tp]
                    lag += end - (committed or 0)
                if lag == 0:
                    break
                await asyncio.sleep(0.2)

    assert _counts(settings.database_url) == (2 * PERSONS, PERSONS)
    async with TopicReaderContext(kafka_bootstrap, notices_topic) as reader:
        messages = await reader.wait_for(lambda m: len(m) >= PERSONS)
        await asyncio.sleep(1.0)
        messages = await reader.drain()
    _assert_one_notice_per_person(messages)


async def test_a_process_killed_mid_stream_resumes_with_one_notice_per_person(
        service_env, pg_database, kafka_bootstrap, topic_prefix, data_keys):
    database_url = pg_database("dedupe")
    settings = DedupeSettings(**service_env, database_url=database_url)
    sealer = Sealer(data_keys)
    await _setup(settings, kafka_bootstrap, sealer)

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PANUI_TOPIC_PREFIX": topic_prefix, "PANUI_DATA_KEYS": data_keys,
           "DATABASE_URL": database_url, "PANUI_PORT": "0",
           "PANUI_CONSUMER_BATCH_MAX_RECORDS": "50", "PANUI_RELEASE_TICK_S": "0.2"}

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "services.dedupe"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    process = start()
    try:
        async with asyncio.timeout(90):
            while _counts(database_url)[0] < PERSONS // 2:
                await asyncio.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # no clean shutdown: mid-batch, mid-publish
        process.wait(10)
        assert _counts(database_url)[0] < 2 * PERSONS, "the kill must land mid-stream"

        process = start()
        async with asyncio.timeout(120):
            while _counts(database_url)[1] < PERSONS:
                await asyncio.sleep(0.2)
        async with TopicReaderContext(kafka_bootstrap, f"{topic_prefix}notices.v1") as reader:
            await reader.wait_for(lambda m: len({x.key for x in m}) >= PERSONS, timeout=60)
            await asyncio.sleep(1.5)
            messages = await reader.drain()
    finally:
        process.kill()
        process.wait(10)
    assert _counts(database_url) == (2 * PERSONS, PERSONS)
    _assert_one_notice_per_person(messages)


async def test_a_process_killed_between_release_chunks_resumes_with_one_notice_per_person(
        service_env, pg_database, kafka_bootstrap, topic_prefix, data_keys):
    """One incident of PERSONS persons released in chunks of 10 (a transaction each): the
    process is killed once some chunks have committed and others not; after the restart the
    release goes on from the persons still waiting, and each person has exactly one notice."""
    database_url = pg_database("dedupe")
    settings = DedupeSettings(**service_env, database_url=database_url)
    sealer = Sealer(data_keys)
    async with running(create_app(settings)):  # creates the topics
        pass
    await publish(kafka_bootstrap, f"{topic_prefix}incidents.v1",
                  [incident_message("inc-0", AGENCIES, ["gp", "lab"])])
    stream = []
    for i in range(PERSONS):
        stream.append(record_message(sealer, "inc-0", "gp", f"gp-{i}", **synthetic_person(i)))
        stream.append(record_message(sealer, "inc-0", "lab", f"lab-{i}",
                                     categories=("lab_results",), **synthetic_person(i)))
    stream += [completion("inc-0", "gp", PERSONS), completion("inc-0", "lab", PERSONS)]
    await publish(kafka_bootstrap, f"{topic_prefix}affected-records.v1", stream)

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PANUI_TOPIC_PREFIX": topic_prefix, "PANUI_DATA_KEYS": data_keys,
           "DATABASE_URL": database_url, "PANUI_PORT": "0",
           "PANUI_RELEASE_TICK_S": "0.2", "PANUI_RELEASE_CHUNK_PERSONS": "10"}

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "services.dedupe"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    engine = make_engine(database_url)
    process = start()
    try:
        def notices() -> int:
            with Session(engine) as session:
                return session.exec(select(func.count()).select_from(NoticeState)).one()

        # Without chunks the count goes from 0 to PERSONS in one commit and this never holds.
        async with asyncio.timeout(120):
            while not 0 < notices() < PERSONS:
                await asyncio.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert 0 < notices() < PERSONS, "the kill must land mid-release"

        process = start()
        async with asyncio.timeout(120):
            while notices() < PERSONS:
                await asyncio.sleep(0.2)
        async with TopicReaderContext(kafka_bootstrap, f"{topic_prefix}notices.v1") as reader:
            await reader.wait_for(lambda m: len({x.key for x in m}) >= PERSONS, timeout=60)
            await asyncio.sleep(1.5)
            messages = await reader.drain()
    finally:
        process.kill()
        process.wait(10)
        engine.dispose()
    assert _counts(database_url) == (2 * PERSONS, PERSONS)
    _assert_one_notice_per_person(messages)


async def test_sigterm_mid_release_stops_between_chunks_and_the_restart_finishes_it(
        service_env, pg_database, kafka_bootstrap, topic_prefix, data_keys, tmp_path):
    """SIGTERM while an incident is being released in chunks (with a budget that would let one
    handler call release it all): the chunk in hand commits, no further chunk starts, the
    process exits by itself within the pod's grace, and the persons left stay dirty; the next
    start releases them — exactly one notice per person. The chunk in hand is made to wait
    for the stop (a purge's lock on the incident, as a purge would hold it) so the stop lands
    between two chunks however fast the box is."""
    grace_s, chunk = 45.0, 25
    database_url = pg_database("dedupe")
    settings = DedupeSettings(**service_env, database_url=database_url)
    sealer = Sealer(data_keys)
    async with running(create_app(settings)):  # creates the topics
        pass
    await publish(kafka_bootstrap, f"{topic_prefix}incidents.v1",
                  [incident_message("inc-0", AGENCIES, ["gp", "lab"])])
    stream = []
    for i in range(PERSONS):
        stream.append(record_message(sealer, "inc-0", "gp", f"gp-{i}", **synthetic_person(i)))
        stream.append(record_message(sealer, "inc-0", "lab", f"lab-{i}",
                                     categories=("lab_results",), **synthetic_person(i)))
    stream += [completion("inc-0", "gp", PERSONS), completion("inc-0", "lab", PERSONS)]
    await publish(kafka_bootstrap, f"{topic_prefix}affected-records.v1", stream)

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PANUI_TOPIC_PREFIX": topic_prefix, "PANUI_DATA_KEYS": data_keys,
           "DATABASE_URL": database_url, "PANUI_PORT": "0", "PANUI_LOG_LEVEL": "INFO",
           "PANUI_RELEASE_TICK_S": "0.2", "PANUI_RELEASE_CHUNK_PERSONS": str(chunk),
           "PANUI_RELEASE_BUDGET_S": "3600"}
    log_path = tmp_path / "dedupe.log"

    def start() -> subprocess.Popen:
        with open(log_path, "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "services.dedupe"], cwd=REPO,
                                    env=env, stdout=out, stderr=out)

    def stopping_logged() -> bool:  # the records consumer has been told to stop
        return any("stopping; the work in hand finishes" in line
                   and DEDUPE_AFFECTED_RECORDS.name in line
                   for line in log_path.read_text(errors="replace").splitlines())

    engine = make_engine(database_url)
    process = start()
    try:
        def notices() -> int:
            with Session(engine) as session:
                return session.exec(select(func.count()).select_from(NoticeState)).one()

        async with asyncio.timeout(180):
            while not 0 < notices() < PERSONS:
                await asyncio.sleep(0.01)
        with psycopg.connect(database_url) as purge:
            # Waits for the chunk committing now; the next one waits for this.
            purge.execute("SELECT pg_advisory_xact_lock(hashtextextended('purge|inc-0', 0))")
            before = notices()
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(120):
                while not stopping_logged():
                    assert process.poll() is None, "exited before stopping its consumer"
                    await asyncio.sleep(0.05)
            purge.rollback()  # the chunk in hand goes on
        rc = await asyncio.to_thread(process.wait, grace_s + 30)
        took = time.monotonic() - signalled
        after = notices()
        print(f"SIGTERM at {before}/{PERSONS} notices; exited rc={rc} after {took:.1f}s "
              f"with {after}/{PERSONS}")
        assert rc == 0 and took < grace_s, (rc, took)
        assert before < after <= before + chunk, "one chunk (the one in hand) after the stop"
        assert after < PERSONS

        process = start()
        async with asyncio.timeout(180):
            while notices() < PERSONS:
                await asyncio.sleep(0.2)
        async with TopicReaderContext(kafka_bootstrap, f"{topic_prefix}notices.v1") as reader:
            await reader.wait_for(lambda m: len({x.key for x in m}) >= PERSONS, timeout=60)
            await asyncio.sleep(1.5)
            messages = await reader.drain()
    finally:
        process.kill()
        process.wait(10)
        engine.dispose()
    assert _counts(database_url) == (2 * PERSONS, PERSONS)
    _assert_one_notice_per_person(messages)


@pytest.mark.timeout(600)  # ~40 s alone each; two process starts and a restart under load
@pytest.mark.parametrize("then", ["commits", "killed"])
async def test_a_release_chunk_longer_than_the_stop_grace_loses_and_doubles_nobody(
        service_env, pg_database, kafka_bootstrap, topic_prefix, data_keys, tmp_path, then):
    """SIGTERM while a release chunk is in hand and cannot finish within the consumer's stop
    grace (2 s here, `consumer_stop_grace_s`; it is made to wait on a purge's lock on the
    incident, as a purge would hold it). At the grace the records worker's task is cancelled
    and the service says it stopped; the chunk's thread goes on in its transaction and keeps
    the process up. Either the lock goes and the chunk's transaction commits before the
    process exits (`commits`; the revoke at the stop has dropped the incident's memory by
    then, so it releases at most its own chunk and here usually nobody), or the pod's grace runs out too and it is SIGKILLed (`killed`: the transaction
    rolls back). Either way the next start releases whoever is left: against the ground truth
    (each of the persons has a GP and a lab record), exactly one notice per person, nobody
    lost, none twice."""
    persons, chunk = 100, 5  # 20 chunks: the lock surely lands mid-release
    database_url = pg_database("dedupe")
    settings = DedupeSettings(**service_env, database_url=database_url)
    sealer = Sealer(data_keys)
    async with running(create_app(settings)):  # creates the topics
        pass
    await publish(kafka_bootstrap, f"{topic_prefix}incidents.v1",
                  [incident_message("inc-0", AGENCIES, ["gp", "lab"])])
    stream = []
    for i in range(persons):
        stream.append(record_message(sealer, "inc-0", "gp", f"gp-{i}", **synthetic_person(i)))
        stream.append(record_message(sealer, "inc-0", "lab", f"lab-{i}",
                                     categories=("lab_results",), **synthetic_person(i)))
    stream += [completion("inc-0", "gp", persons), completion("inc-0", "lab", persons)]
    await publish(kafka_bootstrap, f"{topic_prefix}affected-records.v1", stream)

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PANUI_TOPIC_PREFIX": topic_prefix, "PANUI_DATA_KEYS": data_keys,
           "DATABASE_URL": database_url, "PANUI_PORT": "0", "PANUI_LOG_LEVEL": "INFO",
           "PANUI_RELEASE_TICK_S": "0.2", "PANUI_RELEASE_CHUNK_PERSONS": str(chunk),
           "PANUI_RELEASE_BUDGET_S": "3600", "PANUI_CONSUMER_STOP_GRACE_S": "2"}
    log_path = tmp_path / "dedupe.log"

    def start() -> subprocess.Popen:
        with open(log_path, "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "services.dedupe"], cwd=REPO,
                                    env=env, stdout=out, stderr=out)

    def stopped_logged() -> bool:  # every worker stopped (the records one cancelled at its grace)
        return '"service stopped"' in log_path.read_text(errors="replace")

    engine = make_engine(database_url)
    process = start()
    try:
        def notices() -> int:
            with Session(engine) as session:
                return session.exec(select(func.count()).select_from(NoticeState)).one()

        async with asyncio.timeout(240):
            while not 0 < notices() < persons:
                await asyncio.sleep(0.01)
        with psycopg.connect(database_url) as purge:
            # Waits for the chunk committing now; the next one then waits for this.
            purge.execute("SELECT pg_advisory_xact_lock(hashtextextended('purge|inc-0', 0))")
            async with asyncio.timeout(120):  # the next chunk is in hand, waiting on the lock
                while not purge.execute("SELECT count(*) FROM pg_locks WHERE "
                                        "locktype = 'advisory' AND NOT granted").fetchone()[0]:
                    await asyncio.sleep(0.05)
            before = notices()
            assert 0 < before < persons, "the chunk in hand must be mid-release"
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(180):  # past the grace: the worker's task cancelled
                while not stopped_logged():
                    assert process.poll() is None, "exited before its service stopped"
                    await asyncio.sleep(0.1)
            assert process.poll() is None, "the chunk's thread keeps the process up"
            assert notices() == before, "the chunk in hand is still waiting"
            if then == "killed":
                process.kill()
                await asyncio.to_thread(process.wait, 30)
            purge.rollback()  # `commits`: the chunk in hand goes on, then the process exits
        rc = await asyncio.to_thread(process.wait, 120)
        after = notices()
        print(f"SIGTERM at {before}/{persons} notices; {then}: rc={rc}, {after}/{persons} in the "
              "database")
        if then == "commits":
            assert rc == 0
            # The chunk's transaction commits; the worker's stop dropped the incident's memory
            # meanwhile (its partitions revoked), so it may release nobody: they stay dirty.
            assert before <= after <= before + chunk, "the chunk in hand, and no other"
        else:
            assert after == before, "the killed chunk rolled back"
        process = start()
        async with asyncio.timeout(240):
            while notices() < persons:
                await asyncio.sleep(0.2)
        async with TopicReaderContext(kafka_bootstrap, f"{topic_prefix}notices.v1") as reader:
            await reader.wait_for(lambda m: len({x.key for x in m}) >= persons, timeout=120)
            await asyncio.sleep(1.5)  # a second copy of anything would be here by now
            messages = await reader.drain()
    finally:
        process.kill()
        process.wait(10)
        engine.dispose()
    assert _counts(database_url) == (2 * persons, persons)
    _assert_one_notice_per_person(messages, persons)


class TopicReaderContext:
    def __init__(self, bootstrap: str, topic: str):
        self.reader = TopicReader(bootstrap, topic)

    async def __aenter__(self) -> TopicReader:
        await self.reader.start()
        return self.reader

    async def __aexit__(self, *exc) -> None:
        await self.reader.stop()
