"""Intake throughput and memory on the real stack (PostgreSQL, local Kafka, intake as a
uvicorn subprocess), with synthetic records only (Z test NHIs, example.nz addresses).

    .venv/bin/python -m benchmarks.intake.run [--records 400000] [--quick] [--profile]

Reports records/s accepted (202 received) and published (outbox drained to Kafka) for
10k-record NDJSON requests, sequentially and with two concurrent clients, and the intake
process's peak RSS (VmHWM) after a 10k-record request and after one 400k-record feed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import psycopg

from benchmarks import support
from services.common.crypto import generate_key_spec
from services.common.nhi import LETTERS, check_character
from testkit.keys import key_env, keyrings

REPO = Path(__file__).resolve().parents[2]
TOKEN = "bench-coordinator-token"  # noqa: S105 - local benchmark only
REQUEST_RECORDS = 10_000
GIVEN = ["Aroha", "Mere", "Hēmi", "Wiremu", "Ana", "Tama", "Kiri", "Rangi", "Sam", "Lee"]
FAMILY = ["Testperson", "Tauira", "Example", "Sample", "Fictional", "Placeholder"]


def test_nhis(n: int, seed: int = 7) -> list[str]:
    """Valid old-format NHIs in the Z test range (mod 11 check digit)."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        stem = "Z" + rng.choice(LETTERS) + rng.choice(LETTERS) + f"{rng.randrange(1000):03d}"
        check = check_character(stem)
        if check is not None:
            out.append(stem + check)
    return out


_NHIS = test_nhis(5000)


def record(prefix: str, i: int) -> dict:
    rng = random.Random(i)
    return {
        "source_record_id": f"{prefix}-{i:08d}",
        "nhi": _NHIS[i % len(_NHIS)],
        "given_names": GIVEN[i % len(GIVEN)],
        "family_name": FAMILY[i % len(FAMILY)],
        "date_of_birth": f"{1940 + i % 80}-{1 + i % 12:02d}-{1 + i % 28:02d}",
        "email": f"person{i}@example.nz",
        "mobile": f"+6421{rng.randrange(1_000_000, 9_999_999)}",
        "address": {"line1": f"{1 + i % 300} Example Street", "city": "Wellington", "postcode": "6011"},
        "data_categories": ["clinical_notes", "lab_results"][: 1 + i % 2],
        "document_count": i % 7,
    }


def ndjson_body(prefix: str, start: int, count: int) -> bytes:
    return b"".join(orjson.dumps(record(prefix, i)) + b"\n" for i in range(start, start + count))


async def ndjson_stream(prefix: str, start: int, count: int, batch: int = 2000):  # noqa: ANN201
    """A large body generated as it is sent, so the client never holds it whole either."""
    for s in range(start, start + count, batch):
        yield ndjson_body(prefix, s, min(batch, start + count - s))


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.db_name, self.db_url = "", ""
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}."
        self.port = support.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.keys: list[str] = []
        self.rows: list[tuple[str, str]] = []

    def start(self) -> None:
        self.db_name, self.db_url = support.create_database("bench_intake", "intake")
        env = {**os.environ, "PANUI_PORT": str(self.port), "DATABASE_URL": self.db_url,
               "PANUI_TOPIC_PREFIX": self.prefix, **key_env("intake", keyrings("bench")),
               "PANUI_COORDINATOR_TOKENS": TOKEN, "PANUI_LOG_LEVEL": "WARNING",
               "PANUI_MAX_RECORDS_PER_REQUEST": "1000000", "PANUI_MAX_REQUEST_BYTES": str(1 << 30),
               "PANUI_AGENCY_REQUESTS_PER_MINUTE": "100000"}
        self.process = subprocess.Popen([sys.executable, "-m", "services.intake"], cwd=REPO, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("intake did not start")
            time.sleep(0.2)
        body = {"incident_id": "inc-bench", "title": "Benchmark incident", "content": {
            "sender_name": "Bench", "breach_description": "Synthetic.", "steps_taken": "None.",
            "suspected_holder_statement": "None.", "mitigation_advice": ["None."],
            "privacy_commissioner_notified": True,
            "contact": {"organisation": "Bench", "phone": "0800 000 000", "web_address": "bench.example.nz"}},
            "expected_agencies": [{"agency_id": f"bench-{i}", "name": f"Bench {i}"} for i in range(3)]}
        created = httpx.post(f"{self.url}/v1/incidents", json=body,
                             headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)
        created.raise_for_status()
        self.keys = [k["api_key"] for k in created.json()["issued_keys"]]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.db_name:
            try:
                support.drop_database(self.db_name)
            except psycopg.Error:
                pass
        from aiokafka.admin import AIOKafkaAdminClient

        async def drop_topics() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS",
                                                                         "127.0.0.1:9092"))
            await admin.start()
            try:
                topics = [t for t in await admin.list_topics() if t.startswith(self.prefix)]
                if topics:
                    await admin.delete_topics(topics)
            finally:
                await admin.close()

        asyncio.run(drop_topics())

    def outbox_pending(self) -> int:
        with psycopg.connect(self.db_url) as conn:
            return conn.execute("SELECT count(*) FROM outbox_message").fetchone()[0]

    def wait_drained(self, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while self.outbox_pending():
            if time.monotonic() > deadline:
                raise SystemExit("outbox did not drain")
            time.sleep(0.05)
        return time.monotonic()

    async def post(self, client: httpx.AsyncClient, key: str, content) -> dict:  # noqa: ANN001
        response = await client.post("/v1/incidents/inc-bench/feeds", content=content,
                                     headers={"authorization": f"Bearer {key}",
                                              "content-type": "application/x-ndjson"})
        if response.status_code != 202:
            raise SystemExit(f"feed answered {response.status_code}: {response.text[:300]}")
        return response.json()

    async def run_clients(self, label: str, clients: int, requests_each: int) -> None:
        bodies = [[ndjson_body(f"{label}{c}", r * REQUEST_RECORDS, REQUEST_RECORDS)
                   for r in range(requests_each)] for c in range(clients)]
        accepted = 0

        async def client_run(c: int) -> None:
            nonlocal accepted
            async with httpx.AsyncClient(base_url=self.url, timeout=600) as client:
                for body in bodies[c]:
                    receipt = await self.post(client, self.keys[c], body)
                    accepted += receipt["accepted"]  # after the await: no lost update

        started = time.monotonic()
        await asyncio.gather(*(client_run(c) for c in range(clients)))
        acked = time.monotonic()
        drained = self.wait_drained()
        total = clients * requests_each * REQUEST_RECORDS
        assert accepted == total, (accepted, total)
        self.rows.append((f"{label}: {clients} client(s) x {requests_each} x 10k-record requests",
                          f"accepted {total / (acked - started):,.0f} rec/s; published "
                          f"{total / (drained - started):,.0f} rec/s ({total:,} records)"))

    async def run_big_feed(self, records: int) -> None:
        pid = self.process.pid
        before = support.peak_rss_mb(pid)
        async with httpx.AsyncClient(base_url=self.url, timeout=3600) as client:
            started = time.monotonic()
            receipt = await self.post(client, self.keys[2], ndjson_stream("big", 0, records))
            acked = time.monotonic()
        drained = self.wait_drained()
        assert receipt["accepted"] == records, receipt
        after = support.peak_rss_mb(pid)
        self.rows.append((f"one {records:,}-record feed (single request, streamed)",
                          f"accepted {records / (acked - started):,.0f} rec/s; published "
                          f"{records / (drained - started):,.0f} rec/s"))
        self.rows.append(("intake peak RSS (VmHWM) before / after the big feed",
                          f"{before:,.0f} MB / {after:,.0f} MB (RSS now {support.rss_mb(pid):,.0f} MB)"))


def profile_ingest(records: int) -> None:
    """cProfile of feeds.ingest_feed on one request's worth of records (PostgreSQL, no HTTP)."""
    import cProfile
    import io
    import pstats

    from services.common.crypto import Sealer
    from services.common.db import make_engine, session_scope
    from services.intake import feeds
    from services.intake.parsing import iter_feed

    name, url = support.create_database("bench_intake", "intake")
    try:
        engine = make_engine(url)
        sealer = Sealer(generate_key_spec("bench"))
        body = ndjson_body("prof", 0, records)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        with session_scope(engine) as session:
            outcome = feeds.ingest_feed(session, sealer, incident_id="inc", agency_id="ag", fmt="ndjson",
                                        items=iter_feed(io.BytesIO(body), "ndjson"), idempotency_key=None,
                                        chunk_size=2000, max_records=10**9, receipt_problem_limit=20)
        profiler.disable()
        elapsed = time.perf_counter() - started
        print(f"ingest_feed: {outcome.feed.accepted:,} records in {elapsed:.2f}s "
              f"= {outcome.feed.accepted / elapsed:,.0f} rec/s (one thread, no HTTP)")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        engine.dispose()
    finally:
        support.drop_database(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=400_000, help="records in the big single feed")
    parser.add_argument("--quick", action="store_true", help="a smaller run (CI smoke)")
    parser.add_argument("--profile", action="store_true", help="profile ingest_feed in-process and exit")
    args = parser.parse_args(argv)
    if args.profile:
        profile_ingest(REQUEST_RECORDS)
        return 0
    seq, conc, big = (3, 2, 50_000) if args.quick else (10, 5, args.records)
    bench = Bench(args)
    bench.start()
    try:
        async def scenario() -> None:
            await bench.run_clients("warmup", 1, 1)
            bench.rows.clear()
            await bench.run_clients("seq", 1, seq)
            await bench.run_clients("conc", 2, conc)
            await bench.run_big_feed(big)

        asyncio.run(scenario())
    finally:
        bench.stop()
    width = max(len(label) for label, _ in bench.rows)
    print(f"\nintake benchmark ({os.cpu_count()} CPUs; PostgreSQL; local Kafka)")
    for label, value in bench.rows:
        print(f"  {label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
