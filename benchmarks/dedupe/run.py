"""Sustained resolution throughput of the dedupe service through Kafka.

    .venv/bin/python -m benchmarks.dedupe.run [--records 400000] [--quick] [--incident]

A generated NZ multi-agency incident (benchmarks/resolver/generator.py, synthetic, with
ground truth) is sealed and published to affected-records.v1 up front; then dedupe runs as
its own process on PostgreSQL and we time how fast it applies the records (database row
count), and then how fast it releases the notices once every agency is complete. Peak RSS
is the dedupe process's, and so is the CPU per record (user + system until the last record
is applied: comparable across runs at different load, where records/s is not). `--incident`:
the whole incident's shape instead (benchmarks/dedupe/shape.py: the portal breach's 50
agencies and 3.17 records per person, feeds interleaved as the incident's uploads put them),
with the service's own batch size. Goal (issue 5): ≥ 5,000 records/s on the 2-core box.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time

import psycopg
from aiokafka.errors import UnknownTopicOrPartitionError

from benchmarks import support
from benchmarks.dedupe.shape import incident_messages
from benchmarks.resolver.generator import generate
from services.common.clock import utcnow
from services.common.crypto import Sealer
from testkit.keys import key_env, keyrings
from testkit.messages import completion, incident_message, publish, record_message

INCIDENT = "inc-bench"


def _personal(record) -> dict:  # noqa: ANN001 - a generator MatchRecord
    address = {"line1": record.address_line1, "line2": record.address_line2,
               "suburb": record.suburb, "city": record.city, "postcode": record.postcode}
    return {
        "nhi": record.nhi, "given_names": record.given_names, "family_name": record.family_name,
        "date_of_birth": record.date_of_birth.isoformat() if record.date_of_birth else None,
        "email": record.email, "mobile": record.mobile,
        "address": address if any(address.values()) else None,
    }


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        try:
            return conn.execute(sql).fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return 0


def settled(url: str) -> bool:
    """True quiescence: the incident released, no person awaiting a release decision and
    nothing left in the outbox. Not "a notice per person": the release's household test
    merges some persons and a person held for a contact gets none, so that count is never
    reached."""
    return (_count(url, "SELECT count(*) FROM incident_state WHERE released_at IS NOT NULL") > 0
            and _count(url, "SELECT count(*) FROM person_state WHERE dirty") == 0
            and _count(url, "SELECT count(*) FROM outbox_message") == 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.dedupe.run")
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--quick", action="store_true", help="20,000 records")
    parser.add_argument("--incident", action="store_true",
                        help="the whole incident's shape and arrival order (shape.py)")
    args = parser.parse_args(argv)
    size = 20_000 if args.quick else args.records

    rings = keyrings("bench")  # records and notices apart, as in production
    sealer = Sealer(rings["records"])  # the records as intake seals them
    prefix = support.topic_prefix("dedupe")
    bootstrap = support.kafka_bootstrap()
    db_name, db_url = support.create_database("bench_dedupe", "dedupe")

    print(f"generating and sealing {size:,} records…", flush=True)
    batch = "2000"
    if args.incident:
        messages, agencies, _persons = incident_messages(sealer, INCIDENT, size)
        batch = "500"  # the service's default, as in the incident run
    else:
        records, _truth = generate(size)
        agencies = sorted({r.agency_id for r in records})
        messages = [record_message(sealer, INCIDENT, r.agency_id, r.source_record_id,
                                   **_personal(r)) for r in records]
        counts = {a: sum(1 for r in records if r.agency_id == a) for a in agencies}
        messages += [completion(INCIDENT, a, counts[a]) for a in agencies]

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PANUI_TOPIC_PREFIX": prefix,
           **key_env("dedupe", rings), "DATABASE_URL": db_url, "PANUI_PORT": str(support.free_port()),
           "PANUI_LOG_LEVEL": "WARNING", "PANUI_CONSUMER_BATCH_MAX_RECORDS": batch}
    process = subprocess.Popen([sys.executable, "-m", "services.dedupe"], cwd=support.REPO,
                               env=env)
    try:
        # Wait until the service made its topics and took the incident, then publish the records.
        while _count(db_url, "SELECT count(*) FROM incident_state") == 0 and process.poll() is None:
            try:
                asyncio.run(publish(bootstrap, f"{prefix}incidents.v1",
                                    [incident_message(INCIDENT, {a: a for a in agencies}, agencies)]))
            except UnknownTopicOrPartitionError:  # the service has not made its topics yet
                pass
            time.sleep(1)
        ready_cpu_s = support.cpu_seconds(process.pid)  # start-up: not per record
        started = time.perf_counter()
        asyncio.run(publish(bootstrap, f"{prefix}affected-records.v1", messages))
        published = time.perf_counter() - started
        print(f"published {len(messages):,} messages in {published:.1f} s", flush=True)

        last = 0
        while (applied := _count(db_url, "SELECT count(*) FROM record_state")) < size:
            if process.poll() is not None:
                raise SystemExit("dedupe exited early")
            if applied != last and applied // 20_000 != last // 20_000:
                elapsed = time.perf_counter() - started
                print(f"  {applied:,} applied, {applied / elapsed:,.0f} records/s", flush=True)
            last = applied
            time.sleep(0.5)
        applied_s = time.perf_counter() - started
        cpu_ms = (support.cpu_seconds(process.pid) - ready_cpu_s) / size * 1e3
        while not settled(db_url):
            if process.poll() is not None:
                raise SystemExit("dedupe exited early")
            time.sleep(0.5)
        released_s = time.perf_counter() - started
        persons = _count(db_url, "SELECT count(DISTINCT person_id) FROM record_state")
        notices = _count(db_url, "SELECT count(*) FROM notice_state")
        rss = support.peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(30)
        support.drop_database(db_name)
        support.delete_topics(prefix)

    print()
    print(support.table(
        ["records", "persons", "notices", "applied rec/s", "dedupe CPU ms/record", "applied+released s",
         "notices/s at release", "peak RSS MB", "goal rec/s"],
        [[f"{size:,}", f"{persons:,}", f"{notices:,}", f"{size / applied_s:,.0f}", f"{cpu_ms:.2f}",
          f"{released_s:.1f}", f"{notices / max(released_s - applied_s, 1e-9):,.0f}",
          f"{rss:,.0f}", "5,000"]]))
    print(f"(measured {utcnow():%Y-%m-%d %H:%M} UTC, {'incident' if args.incident else 'NZ'} "
          f"shape, load average {os.getloadavg()[0]:.1f}; other work on the machine affects it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
