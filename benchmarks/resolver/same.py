"""Are the resolver's decisions unchanged? A digest of everything it decides, per data set,
on the production paths: one record at a time (`place`, then `drain_changes`, as dedupe's
consumer drives it), and the household test at release (`learn_weights(levels=False)`).
Run it before and after a change to the engine's speed: the digests must be identical.
Prints the CPU ms per record of the incremental adds too (the dedupe stage's budget is
0.2 ms per record for everything).

    .venv/bin/python -m benchmarks.resolver.same               # incident 20k, NZ 20k, independent 101/202
    .venv/bin/python -m benchmarks.resolver.same --only incident --size 40000

What is digested: each record's person (after the adds, and again after the household
test), and each review question (its record pair, persons, why, pairs and the weight to six
places). Counts and digests only, never values.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable

from benchmarks.resolver.datasets import Dataset, load
from services.dedupe.resolver import MatchRecord, Resolver

VAR_INCIDENTS = "incidents"


def incident_records(size: int, seed: int = 7) -> list[MatchRecord]:
    """The incident's accepted records in upload order, as dedupe sees them (unsealed)."""
    from benchmarks.incident import offline, scenario
    from benchmarks.incident.run import VAR

    built = scenario.build(scenario.BREACH, size, seed, VAR / VAR_INCIDENTS)
    return [MatchRecord.from_clean(agency_id, record) for agency_id, record in offline.accepted(built)]


def _digest(resolver: Resolver) -> str:
    h = hashlib.sha256()
    for row in sorted(resolver.assignments()):
        h.update(repr(row).encode())
    return h.hexdigest()[:16]


def _review_digest(resolver: Resolver) -> tuple[int, str]:
    h = hashlib.sha256()
    items = resolver.review_items()
    for item in items:
        h.update(
            repr(
                (
                    item.a,
                    item.b,
                    item.a_person_id,
                    item.b_person_id,
                    item.why,
                    item.pairs,
                    round(item.evidence.weight, 6),
                )
            ).encode()
        )
    return len(items), h.hexdigest()[:16]


def check(name: str, records: list[MatchRecord]) -> str:
    resolver = Resolver()
    cpu = time.process_time()
    place = getattr(resolver, "place", resolver.add)  # `place` (dedupe's) where it exists
    for record in records:
        place(record)
        resolver.drain_changes()
    add_ms = (time.process_time() - cpu) / len(records) * 1e3
    added = _digest(resolver)
    resolver.learn_weights(levels=False)
    resolver.drain_changes()
    released = _digest(resolver)
    reviews, review_digest = _review_digest(resolver)
    return f"| {name} | {len(records):,} | {added} | {released} | {reviews} {review_digest} | {add_ms:.3f} |"


def sets(size: int) -> list[tuple[str, Callable[[], list[MatchRecord]]]]:
    k = f"{size // 1000}k"
    return [
        (f"incident {k}", lambda: incident_records(size)),
        (f"NZ gen {k}", lambda: load(Dataset("nz", "nz", size, 7, 1.0))[0]),
        (f"independent {k} seed 101", lambda: load(Dataset("i", "independent", size, 101, 1.0))[0]),
        (f"independent {k} seed 202", lambda: load(Dataset("i", "independent", size, 202, 1.0))[0]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.resolver.same")
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--only", default=None, help="data sets whose name contains this")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    print("| data set | records | persons after adds | after household test | review | add CPU ms/record |")
    for name, records in sets(args.size):
        if args.only is None or args.only.lower() in name.lower():
            print(check(name, records()), flush=True)
    print(f"(load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
