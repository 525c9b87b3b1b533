"""The release of an incident: one transaction of every notice, against chunks of
`release_chunk` persons a transaction each (issue 13), side by side in one run.

    .venv/bin/python -m benchmarks.dedupe.release [--records 20000] [--chunk 1000] [--rounds 2]
        [--only chunks|one]

In process, on the local PostgreSQL (no Kafka: what is measured is the release's
transactions): a generated NZ incident's records are applied in batches of 2,000 (not timed),
then the batch carrying the last completion releases the incident. Timed: that batch (the
only transaction of the release before chunking; after, the first chunk), each further chunk
(`continue_release`, as the consumer runs them), the longest transaction, and the release in
all. The two ways alternate within each round, each on a fresh database. Needs
`make infra-up`.
"""

import argparse
import os
import time

from benchmarks import support
from benchmarks.dedupe.run import _personal
from benchmarks.resolver.generator import generate
from services.common.clock import utcnow
from services.common.crypto import Sealer, generate_key_spec
from services.common.db import make_engine
from services.dedupe.pipeline import DedupePipeline
from testkit.messages import completion, incident_message, record_message

INCIDENT = "inc-release-bench"


def _run(messages: list, completions: list, agencies: list[str], chunk: int | None,
         sealer: Sealer) -> dict:
    db_name, db_url = support.create_database("bench_release", "dedupe")
    engine = make_engine(db_url)
    try:
        pipeline = DedupePipeline(engine, sealer, review_sync_interval_s=3600,
                                  release_chunk=chunk)
        pipeline.apply_incidents([incident_message(INCIDENT, {a: a for a in agencies},
                                                   agencies)])
        for start in range(0, len(messages), 2000):
            pipeline.apply_batch(0, messages[start:start + 2000])
        started = time.perf_counter()
        notices = pipeline.apply_batch(0, completions)
        first = time.perf_counter() - started
        longest, transactions = first, 1
        while pipeline.releasing({0}):
            t = time.perf_counter()
            notices += pipeline.continue_release({0})
            longest = max(longest, time.perf_counter() - t)
            transactions += 1
        total = time.perf_counter() - started
    finally:
        engine.dispose()
        support.drop_database(db_name)
    return {"chunk": chunk, "notices": notices, "first_s": first, "longest_s": longest,
            "transactions": transactions, "total_s": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.dedupe.release")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=["chunks", "one"], help="one way only (to profile it)")
    args = parser.parse_args(argv)

    sealer = Sealer(generate_key_spec("bench"))
    print(f"generating and sealing {args.records:,} records…", flush=True)
    records, _truth = generate(args.records)
    agencies = sorted({r.agency_id for r in records})
    messages = [record_message(sealer, INCIDENT, r.agency_id, r.source_record_id,
                               **_personal(r)) for r in records]
    counts = {a: sum(1 for r in records if r.agency_id == a) for a in agencies}
    completions = [completion(INCIDENT, a, counts[a]) for a in agencies]

    rows = []
    for round_ in range(args.rounds):
        ways = (None, args.chunk) if round_ % 2 == 0 else (args.chunk, None)
        if args.only:
            ways = (args.chunk,) if args.only == "chunks" else (None,)
        for chunk in ways:
            load = os.getloadavg()[0]
            result = _run(messages, completions, agencies, chunk, sealer)
            rows.append([round_ + 1, "one transaction" if chunk is None else f"chunks of {chunk:,}",
                         f"{result['notices']:,}", result["transactions"],
                         f"{result['first_s']:.2f}", f"{result['longest_s']:.2f}",
                         f"{result['total_s']:.1f}",
                         f"{result['notices'] / result['total_s']:,.0f}", f"{load:.1f}"])
            print(rows[-1], flush=True)
    print()
    print(support.table(["round", "release", "notices", "transactions", "releasing batch s",
                         "longest transaction s", "release s", "notices/s", "load"], rows))
    print(f"(measured {utcnow():%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs; other work on the "
          "machine affects it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
