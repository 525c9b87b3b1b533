"""Durable before accepted: SIGKILL intake while feeds are uploading, restart it, and check
that nothing acknowledged was lost, that Kafka holds exactly what the database holds, and
that re-sending the unacknowledged feeds completes them without duplicate versions."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import httpx
import psycopg
import pytest

from services.common.messages import AffectedRecordMessage, decode_affected_records_topic
from testkit.factories import affected_record, incident_body, ndjson
from testkit.infra import REPO, topic_reader
from tests.conftest import COORDINATOR_TOKEN

from .server import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

FEEDS = 6
RECORDS_PER_FEED = 3000


def _start(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.intake"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _wait_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, "intake exited"
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("intake did not come up")


def _feed_body(n: int) -> bytes:
    return ndjson([affected_record(f"k{n}-{i:05d}", given_names=f"Tester{i}") for i in range(RECORDS_PER_FEED)])


async def test_sigkill_during_uploads_loses_nothing_accepted(pg_database, kafka_bootstrap, topic_prefix,
                                                            data_keys):
    database_url = pg_database("intake")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PANUI_PORT": str(port), "DATABASE_URL": database_url,
           "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PANUI_TOPIC_PREFIX": topic_prefix,
           "PANUI_DATA_KEYS": data_keys, "PANUI_COORDINATOR_TOKENS": COORDINATOR_TOKEN,
           "PANUI_OUTBOX_POLL_INTERVAL_S": "0.02", "PANUI_LOG_LEVEL": "WARNING"}
    process = _start(env)
    try:
        await _wait_up(url, process)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            created = await client.post("/v1/incidents", headers={"authorization": f"Bearer {COORDINATOR_TOKEN}"},
                                        json=incident_body("inc-kill", [(f"ag-{i}", f"Agency {i}") for i in range(3)]))
            assert created.status_code == 201
            keys = [k["api_key"] for k in created.json()["issued_keys"]]

        bodies = {n: _feed_body(n) for n in range(FEEDS)}

        async def post(client: httpx.AsyncClient, n: int) -> httpx.Response | None:
            try:
                return await client.post(
                    "/v1/incidents/inc-kill/feeds", content=bodies[n],
                    headers={"authorization": f"Bearer {keys[n % 3]}",
                             "content-type": "application/x-ndjson", "idempotency-key": f"feed-{n}"})
            except httpx.TransportError:
                return None  # the server died under us: not acknowledged

        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            tasks = {n: asyncio.create_task(post(client, n)) for n in range(FEEDS)}
            # Kill once the first feed is acknowledged, while the others are mid-upload or
            # mid-transaction and the relay is publishing.
            await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(0.15)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            results = {n: await t for n, t in tasks.items()}

        acked = {n: r.json() for n, r in results.items() if r is not None and r.status_code == 202}
        assert acked, "no feed was acknowledged before the kill"
        assert len(acked) < FEEDS, "every feed finished before the kill; the test proved nothing"

        # Every acknowledged feed is fully in the database, even though the process died.
        with psycopg.connect(database_url) as conn:
            for n, receipt in acked.items():
                assert receipt["accepted"] == RECORDS_PER_FEED
                stored = conn.execute("SELECT count(*) FROM affected_record WHERE feed_id = %s",
                                      (receipt["feed_id"],)).fetchone()[0]
                assert stored == RECORDS_PER_FEED, n

        # Restart; the relay publishes what was left in the outbox.
        process = _start(env)
        await _wait_up(url, process)
        db_pairs, kafka = await _drain_and_read(database_url, kafka_bootstrap, topic_prefix)
        # The database is the truth: Kafka holds exactly the stored versions, no more, no less.
        assert set(kafka) == db_pairs
        # A message published twice (published, then killed before the outbox row was
        # deleted) is the same message, so consumers dedupe it by message_id.
        assert all(len(ids) == 1 for ids in kafka.values())

        # Re-send the feeds that were not acknowledged, with the same Idempotency-Keys.
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for n in range(FEEDS):
                if n in acked:
                    continue
                response = await post(client, n)
                assert response is not None and response.status_code == 202, response
                receipt = response.json()
                assert receipt["received"] == RECORDS_PER_FEED
            # Acknowledged feeds replay their receipts.
            for n, receipt in acked.items():
                replay = await post(client, n)
                assert replay.json()["feed_id"] == receipt["feed_id"]

        db_pairs, kafka = await _drain_and_read(database_url, kafka_bootstrap, topic_prefix)
        expected = {(f"k{n}-{i:05d}", 1) for n in range(FEEDS) for i in range(RECORDS_PER_FEED)}
        assert db_pairs == expected  # every record, exactly one version: nothing twice
        assert set(kafka) == expected
        assert all(len(ids) == 1 for ids in kafka.values())
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


async def _drain_and_read(database_url: str, bootstrap: str, prefix: str):  # noqa: ANN202
    deadline = time.monotonic() + 60
    with psycopg.connect(database_url, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM outbox_message").fetchone()[0]:
            assert time.monotonic() < deadline, "outbox never drained"
            await asyncio.sleep(0.1)
        db_pairs = {(s, v) for s, v in conn.execute(
            "SELECT source_record_id, version FROM affected_record WHERE incident_id = 'inc-kill'")}
    message_ids: dict[tuple[str, int], set[str]] = defaultdict(set)
    async with topic_reader(bootstrap, f"{prefix}affected-records.v1") as reader:
        def pairs(messages: list) -> set:
            message_ids.clear()
            for m in messages:
                decoded = decode_affected_records_topic(m.value)
                if isinstance(decoded, AffectedRecordMessage):
                    message_ids[(decoded.source_record_id, decoded.record_version)].add(decoded.message_id)
            return set(message_ids)

        await reader.wait_for(lambda ms: pairs(ms) >= db_pairs, timeout=60)
        await asyncio.sleep(0.5)  # anything extra would show up now
        await reader.wait_for(lambda ms: True, timeout=1)
        pairs(reader.messages)
    return db_pairs, dict(message_ids)
