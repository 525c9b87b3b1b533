"""Accuracy on the production path, one line per data set: `add_many`, then the household
test (`learn_weights(levels=False)`, as the dedupe service does at release). Prints
precision, recall, F1, open review questions per 1,000 persons and falsely merged pairs;
counts only, never values. A tuning aid that is faster than `run.py` (no incremental
timing, no Splink).

    .venv/bin/python -m benchmarks.resolver.measure tuning        # NZ 7, independent 101/202/404, census, FEBRL 3/4
    .venv/bin/python -m benchmarks.resolver.measure round7        # round 7's held-back seeds: run once per engine
    .venv/bin/python -m benchmarks.resolver.measure tuning --only independent
    .venv/bin/python -m benchmarks.resolver.measure tuning --only "=independent 20k"   # seed 101 only
"""
from __future__ import annotations

import os
import sys
import time

from benchmarks.resolver.datasets import Dataset, load, round7_held_back_sets
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


def main(argv: list[str]) -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")
    only = None
    if "--only" in argv:
        only = argv[argv.index("--only") + 1]
    sets = round7_held_back_sets(20_000) if argv and argv[0] == "round7" else tuning_sets()
    if only:  # a substring of the name, or "=name" for exactly that one
        sets = [d for d in sets if (d.name == only[1:] if only.startswith("=")
                                    else only.lower() in d.name.lower())]
    print("| data set | P | R | F1 | review /1k | wrong pairs | time |")
    for dataset in sets:
        print(measure(dataset), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
