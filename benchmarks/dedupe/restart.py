"""Memory and restart of one large incident in the dedupe service (issue 10, item 7).

    .venv/bin/python -m benchmarks.dedupe.restart [--records 400000] [--quick]

1. A generated NZ incident is published (as benchmarks/dedupe/run.py does) and a dedupe
   process applies and releases it; its peak RSS, and its RSS once the finished incident is
   evicted (PANUI_EVICT_FINISHED_AFTER_S is set short).
2. That process is stopped and a new one started; one late record for the incident is
   published, so the new process must rebuild the whole incident (off the handler call, its
   partition paused). Measured: time to the late record applied, the new process's peak RSS,
   how many rebuilds it made (more than one = the livelock), whether the amendment went out.
Goal: peak RSS under the k8s limit (1 GiB) in both phases; exactly one rebuild.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import support
from benchmarks.dedupe.run import INCIDENT, _count, _personal
from benchmarks.resolver.generator import generate
from services.common.clock import utcnow
from services.common.crypto import Sealer
from testkit.keys import key_env, keyrings
from testkit.messages import completion, incident_message, publish, record_message

LIMIT_MB = 1024
EVICT_AFTER_S = 10


def _start(env: dict, log_path: str) -> tuple[subprocess.Popen, object]:
    log = open(log_path, "wb")  # noqa: SIM115 - closed by the caller
    process = subprocess.Popen([sys.executable, "-m", "services.dedupe"], cwd=support.REPO,
                               env={**env, "PANUI_PORT": str(support.free_port())},
                               stdout=log, stderr=subprocess.STDOUT)
    return process, log


def _stop(process: subprocess.Popen, log) -> None:  # noqa: ANN001
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def _wait(condition, process: subprocess.Popen, what: str, timeout_s: float) -> float:  # noqa: ANN001
    """Seconds until `condition()` holds; the peak RSS is sampled by the caller."""
    started = time.perf_counter()
    while not condition():
        if process.poll() is not None:
            raise SystemExit(f"dedupe exited while waiting for {what}")
        if time.perf_counter() - started > timeout_s:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.dedupe.restart")
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--quick", action="store_true", help="20,000 records")
    args = parser.parse_args(argv)
    size = 20_000 if args.quick else args.records

    rings = keyrings("bench")  # records and notices apart, as in production
    sealer = Sealer(rings["records"])  # the records as intake seals them
    prefix = support.topic_prefix("dedupe-restart")
    bootstrap = support.kafka_bootstrap()
    logs = tempfile.mkdtemp(prefix="dedupe-restart-")

    print(f"generating and sealing {size:,} records…", flush=True)
    records, _truth = generate(size)
    agencies = sorted({r.agency_id for r in records})
    messages = [record_message(sealer, INCIDENT, r.agency_id, r.source_record_id,
                               **_personal(r)) for r in records]
    counts = {a: sum(1 for r in records if r.agency_id == a) for a in agencies}
    messages += [completion(INCIDENT, a, counts[a]) for a in agencies]
    late = record_message(sealer, INCIDENT, records[0].agency_id, "late-record-1",
                          categories=("identity_documents",), **_personal(records[0]))
    del records
    db_name, db_url = support.create_database("bench_dedupe_restart", "dedupe")

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PANUI_TOPIC_PREFIX": prefix,
           **key_env("dedupe", rings), "DATABASE_URL": db_url, "PANUI_LOG_LEVEL": "INFO",
           "PANUI_CONSUMER_BATCH_MAX_RECORDS": "2000",
           "PANUI_EVICT_FINISHED_AFTER_S": str(EVICT_AFTER_S),
           "PANUI_REVIEW_SYNC_INTERVAL_S": "5"}
    rows = []
    first, first_log = _start(env, f"{logs}/first.log")
    try:
        while _count(db_url, "SELECT count(*) FROM incident_state") == 0 and first.poll() is None:
            asyncio.run(publish(bootstrap, f"{prefix}incidents.v1",
                                [incident_message(INCIDENT, {a: a for a in agencies}, agencies)]))
            time.sleep(1)
        started = time.perf_counter()
        asyncio.run(publish(bootstrap, f"{prefix}affected-records.v1", messages))
        del messages
        _wait(lambda: _count(db_url, "SELECT count(*) FROM record_state") >= size, first,
              "the records", 3 * 3600)
        persons = _count(db_url, "SELECT count(DISTINCT person_id) FROM record_state")
        _wait(lambda: _count(db_url, "SELECT count(*) FROM notice_state") >= persons
              and _count(db_url, "SELECT count(*) FROM outbox_message") == 0, first,
              "the release", 3600)
        released_s = time.perf_counter() - started
        peak = support.peak_rss_mb(first.pid)
        before = support.rss_mb(first.pid)
        evicted = _wait(lambda: b"finished incident evicted" in open(f"{logs}/first.log", "rb")
                        .read(), first, "the eviction", 600)
        time.sleep(2)
        rows.append([f"first process: {size:,} applied and released", f"{released_s:.0f} s",
                     f"{peak:,.0f}", f"{before:,.0f} → {support.rss_mb(first.pid):,.0f}",
                     f"evicted {evicted:.0f} s later"])
        _stop(first, first_log)

        second, second_log = _start(env, f"{logs}/second.log")
        try:
            time.sleep(3)
            baseline = support.rss_mb(second.pid)
            started = time.perf_counter()
            asyncio.run(publish(bootstrap, f"{prefix}affected-records.v1", [late]))
            applied = _wait(lambda: _count(
                db_url, "SELECT count(*) FROM record_state") > size, second, "the late record",
                3600)
            amended = _wait(lambda: _count(
                db_url, "SELECT count(*) FROM notice_state WHERE version = 2") >= 1, second,
                "the amendment", 600)
            peak2 = support.peak_rss_mb(second.pid)
            evicted2 = _wait(lambda: b"finished incident evicted" in open(
                f"{logs}/second.log", "rb").read(), second, "the eviction", 600)
            time.sleep(2)
            text = open(f"{logs}/second.log", "rb").read()
            rebuilds = text.count(b"identity state rebuilt from the database")
            rebalances = text.count(b"Revoking previously assigned partitions")
            rows.append([f"restart: 1 late record → rebuild of {size:,}",
                         f"{applied:.0f} s (+{amended:.0f} s amendment)", f"{peak2:,.0f}",
                         f"{baseline:,.0f} idle; {support.rss_mb(second.pid):,.0f} after "
                         f"eviction ({evicted2:.0f} s)",
                         f"rebuilds {rebuilds}, revocations {rebalances}"])
        finally:
            _stop(second, second_log)
    finally:
        if first.poll() is None:
            _stop(first, first_log)
        support.drop_database(db_name)
        support.delete_topics(prefix)

    print()
    print(support.table(["phase", "time", "peak RSS MB", "RSS MB", "notes"], rows))
    print(f"(limit {LIMIT_MB} MiB; logs in {logs}; measured {utcnow():%Y-%m-%d %H:%M} UTC; "
          "other work on the machine affects the times)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
