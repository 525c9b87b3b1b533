"""What one incident's identity state costs in memory, per record (issue 10, item 7), in
process — no Kafka or PostgreSQL, so it can be run at sizes the full-service benchmark
(restart.py) takes too long for on a shared machine.

    .venv/bin/python -m benchmarks.dedupe.memory [--records 100000]

Measured as the process's RSS (what the pod's limit counts): after N generated NZ records
are applied and settled and every person released (the state a running dedupe holds), after
that state is evicted (dropped and the memory handed back), and after a rebuild of it from
stored rows read as a stream (what a restart holds), with the rebuild's peak.
"""

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta

from benchmarks import support
from benchmarks.dedupe.run import _personal
from benchmarks.resolver.generator import generate
from services.common.clock import utcnow
from services.common.crypto import Sealer, generate_key_spec
from services.common.messages import ReleasePolicy
from services.dedupe.identity import IdentityState, StoredIdentity, StoredRecord
from services.dedupe.pipeline import release_memory
from testkit.messages import record_message

INCIDENT = "inc-memory"


def _rss() -> float:
    gc.collect()
    return support.rss_mb(os.getpid())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.dedupe.memory")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20,000 records")
    parser.add_argument("--trace", action="store_true",
                        help="also count Python's own allocations (tracemalloc; slower): "
                             "RSS does not fall when a part is freed, so the resolver's share "
                             "is only seen this way")
    parser.add_argument("--top", type=int, default=0, metavar="N",
                        help="with --trace: the N source lines under services/ holding the most "
                             "of the state (docs/dedupe.md, 'Where it goes')")
    args = parser.parse_args(argv)
    if args.trace:
        tracemalloc.start()
    size = 20_000 if args.quick else args.records
    sealer = Sealer(generate_key_spec("bench"))
    base = _rss()
    records, _truth = generate(size)
    # What record_state holds (the database's, not the service's memory): kept on disk here.
    spool = tempfile.TemporaryFile("w+")
    start = _rss()
    registry = IdentityState(sealer)
    state = registry.rebuild(INCIDENT, 0, StoredIdentity([], {}, []))
    now = utcnow()
    started = time.perf_counter()
    for r in records:
        msg = record_message(sealer, INCIDENT, r.agency_id, r.source_record_id, **_personal(r))
        spool.write(f"{r.agency_id}\t{r.source_record_id}\t{msg.sealed}\n")
        state.apply_record(msg)
    state.settle(now)
    due = state.release(now, ReleasePolicy(), now + timedelta(seconds=1))
    state.take_records()
    state.take_persons()
    applied_s = time.perf_counter() - started
    del records, _truth, due, msg
    held = _rss()
    traced_held = tracemalloc.get_traced_memory()[0] if args.trace else 0
    if args.trace and args.top:
        held_by = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, "*/services/*")]).statistics("lineno")
        for stat in held_by[:args.top]:
            frame = stat.traceback[0]
            print(f"{stat.size / size:7.0f} B/record {stat.count / size:5.2f} objects/record  "
                  f"{frame.filename.split('/services/')[-1]}:{frame.lineno}")
    persons = len(state.persons)

    # The resolver's share: what the state is without it (it is evicted next anyway).
    state.resolver = None
    gc.collect()
    release_memory()
    without_resolver = _rss()
    traced_without = tracemalloc.get_traced_memory()[0] if args.trace else 0

    stored = StoredIdentity(
        records=[], persons={p: m for p, m in state.persons.items()}, decisions=[],
        issued={lid: lin.version for lid, lin in state.lineages.items()})
    metas = state.records
    registry.forget([INCIDENT])
    del state
    release_memory()
    evicted = _rss()  # (the records' metadata is kept for the rebuild: a little above)

    def rows():  # as store.stream_records yields them
        spool.seek(0)
        for line in spool:
            agency_id, source_record_id, value = line.rstrip("\n").split("\t")
            yield StoredRecord((agency_id, source_record_id),
                               metas.pop((agency_id, source_record_id)), value)

    stored.records = rows()
    started = time.perf_counter()
    registry.rebuild(INCIDENT, 0, stored)
    rebuilt_s = time.perf_counter() - started
    rebuilt = _rss()
    peak = support.peak_rss_mb(os.getpid())

    print(support.table(
        ["records", "persons", "empty MB", "+generated MB", "held MB", "after eviction MB", "rebuilt MB",
         "peak MB", "held per record", "of which resolver", "apply s", "rebuild s"],
        [[f"{size:,}", f"{persons:,}", f"{base:,.0f}", f"{start:,.0f}", f"{held:,.0f}", f"{evicted:,.0f}",
          f"{rebuilt:,.0f}", f"{peak:,.0f}", f"{(held - base) * 1024 / size:,.1f} KB",
          f"{(held - without_resolver) * 1024 / size:,.1f} KB",
          f"{applied_s:.0f}", f"{rebuilt_s:.0f}"]]))
    if args.trace:
        print(f"traced: identity state {traced_held / size:,.0f} B/record, of which the "
              f"resolver {(traced_held - traced_without) / size:,.0f} B/record")
    print(f"(peak: while applying, with the generator's records also held; measured "
          f"{utcnow():%Y-%m-%d %H:%M} UTC)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
