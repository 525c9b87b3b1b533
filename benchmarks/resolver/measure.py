"""Accuracy on the production path, one line per data set: `add_many`, then the household
test (`learn_weights(levels=False)`, as the dedupe service does at release). Prints
precision, recall, F1, open review questions per 1,000 persons and falsely merged pairs;
counts only, never values. A tuning aid that is faster than `run.py` (no incremental
timing, no Splink).

    .venv/bin/python -m benchmarks.resolver.measure tuning        # NZ 7, independent 101/202/404, census, FEBRL 3/4
    .venv/bin/python -m benchmarks.resolver.measure round7        # round 7's held-back seeds: run once per engine
    .venv/bin/python -m benchmarks.resolver.measure held-back     # rounds 1-4's held-back seeds (11, 12, 202, 303, 13, 707, census 1-3)
    .venv/bin/python -m benchmarks.resolver.measure fresh         # round 6's held-back seeds (21, 22, 808, 909, census 5, 6)
    .venv/bin/python -m benchmarks.resolver.measure febrl         # FEBRL 1-4 without soc_sec_id
    .venv/bin/python -m benchmarks.resolver.measure all           # every set above, each once
    .venv/bin/python -m benchmarks.resolver.measure tuning --only independent
    .venv/bin/python -m benchmarks.resolver.measure tuning --only "=independent 20k"   # seed 101 only
"""
from __future__ import annotations

import os
import sys
import time

from benchmarks.resolver.datasets import (
    Dataset,
    accuracy_sets,
    fresh_held_back_sets,
    held_back_sets,
    load,
    round7_held_back_sets,
)
from benchmarks.resolver.metrics import accuracy


def tuning_sets(size: int = 20_000) -> list[Dataset]:
    k = f"{size // 1000}k"
    return [
        Dataset(f"NZ gen {k}", "nz", size, 7, 1.0),
        Dataset(f"independent {k}", "independent", size, 101, 1.0),
        Dataset(f"independent {k} seed 202", "independent", size, 202, 1.0),
        Dataset(f"independent {k} seed 404", "independent", size, 404, 1.0),
        Dataset("census (pseudopeople)", "census", seed=0),
        Dataset("FEBRL3 (no soc_sec_id)", "febrl3"),
        Dataset("FEBRL4 (no soc_sec_id)", "febrl4"),
    ]


def measure(dataset: Dataset) -> str:
    from services.dedupe.resolver import Resolver

    records, truth = load(dataset)
    started = time.perf_counter()
    resolver = Resolver()
    resolver.add_many(records)
    resolver.learn_weights(levels=False)
    seconds = time.perf_counter() - started
    person = {(a, s): p for a, s, p in resolver.assignments()}
    predicted = [person[r.key] for r in records]
    acc = accuracy(predicted, truth)
    persons = len(set(predicted))
    review = len(resolver.review_items())
    wrong = acc.predicted_pairs - round(acc.precision * acc.predicted_pairs)
    return (f"| {dataset.name} | {acc.precision:.4f} | {acc.recall:.4f} | {acc.f1:.4f} | "
            f"{1000 * review / persons:.1f} | {wrong} | {seconds:.0f} s |")


def _sets(which: str) -> list[Dataset]:
    groups = {"tuning": tuning_sets, "held-back": held_back_sets, "fresh": fresh_held_back_sets,
              "round7": round7_held_back_sets, "febrl": lambda size: [
                  d for d in accuracy_sets(size) if d.kind.startswith("febrl")]}
    if which != "all":
        if which not in groups:
            raise SystemExit(f"unknown set group {which!r}: one of {', '.join([*groups, 'all'])}")
        return groups[which](20_000)
    found: dict[tuple, Dataset] = {}  # seed 202 and FEBRL 3/4 are in two groups: measured once
    for group in groups.values():
        for d in group(20_000):
            found.setdefault((d.kind, d.size, d.seed, d.noise), d)
    return list(found.values())


def main(argv: list[str]) -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")
    only = None
    if "--only" in argv:
        only = argv[argv.index("--only") + 1]
    sets = _sets(argv[0] if argv and not argv[0].startswith("--") else "tuning")
    if only:  # a substring of the name, or "=name" for exactly that one
        sets = [d for d in sets if (d.name == only[1:] if only.startswith("=")
                                    else only.lower() in d.name.lower())]
    print("| data set | P | R | F1 | review /1k | wrong pairs | time |")
    for dataset in sets:
        print(measure(dataset), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
