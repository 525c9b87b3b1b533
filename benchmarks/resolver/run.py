"""Accuracy and speed of the resolver, with Splink (DuckDB) trained on each data set alongside.

    .venv/bin/python -m benchmarks.resolver.run              # every tuning data set, with Splink
    .venv/bin/python -m benchmarks.resolver.run --quick      # NZ/independent at 5k
    .venv/bin/python -m benchmarks.resolver.run --held-back  # the seeds never looked at while tuning
    .venv/bin/python -m benchmarks.resolver.run --full       # adds NZ 400k throughput and 1M memory
    options: --size N --noise X --seed S --no-splink --only SUBSTRING

Every run happens in a fresh process so peak memory (ru_maxrss) is that run's own; it
includes the input records, which a service would also hold.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import sys
import time
import traceback

from benchmarks.resolver.datasets import (
    Dataset,
    accuracy_sets,
    fresh_held_back_sets,
    held_back_sets,
    load,
    round7_held_back_sets,
)
from benchmarks.resolver.metrics import accuracy


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_panui(dataset: Dataset, learn: bool = False) -> dict:
    """Our resolver, incremental: shuffled records added one at a time, then what the
    dedupe service does at release: the household test (Resolver.learn_weights without
    EM level weights; re-resolves only if it lifts the guard). With `learn`, the level
    weights are re-estimated by EM too. rec/s counts that time."""
    from services.dedupe.resolver import Resolver

    records, truth = load(dataset)
    order = list(range(len(records)))
    random.Random(1).shuffle(order)
    base_mb = _peak_mb()
    resolver = Resolver()
    started = time.perf_counter()
    for i in order:
        resolver.add(records[i])
        resolver.drain_changes()  # as the dedupe service does after every record
    if hasattr(resolver, "learn_weights"):
        resolver.learn_weights(levels=learn)
        resolver.drain_changes()
    seconds = time.perf_counter() - started
    # Peak while resolving (input records included); the evaluation below builds its own
    # million-entry lists and dicts, which are the benchmark's, not the engine's.
    peak_mb = _peak_mb()
    person = {(a, s): p for a, s, p in resolver.assignments()}
    predicted = [person[r.key] for r in records]
    items = resolver.review_items()
    persons = len(set(predicted))
    in_review = {i.a_person_id for i in items} | {i.b_person_id for i in items}
    return {"records": len(records), "seconds": seconds, "peak_mb": peak_mb,
            "input_mb": base_mb, "review": len(items), "persons": persons,
            "in_review": len(in_review), "accuracy": accuracy(predicted, truth)}


# --------------------------------------------------------------------------- Splink


def _splink_frame(records):
    import pandas as pd

    from services.dedupe.resolver.normalise import fold
    from services.dedupe.resolver.records import PreparedRecord

    rows = []
    for i, r in enumerate(records):
        p = PreparedRecord(r)  # same folding as ours, so only the model differs
        rows.append({
            "unique_id": i, "first_name": p.given_first,
            "middle_name": " ".join(p.given[1:]) or None, "surname": p.family_key,
            "dob": p.dob.isoformat() if p.dob else None, "nhi": p.nhi, "mobile": p.mobile,
            "email": p.email, "address": " ".join((*p.numbers, p.street or "")).strip() or None,
            "suburb": fold(r.suburb) if r.suburb else None, "postcode": p.postcode,
        })
    frame = pd.DataFrame(rows)
    present = {c for c in frame.columns if frame[c].notna().mean() > 0.01 and frame[c].nunique() > 1}
    return frame, present


def run_splink(dataset: Dataset, our_precision: float | None = None) -> dict:
    """Splink 5 (DuckDB) trained on this data set: λ from deterministic rules, u by random
    sampling, m by EM over blockings that between them leave every comparison trained,
    term-frequency adjustments on names, postcode, address and contacts. Predictions are
    clustered at a sweep of thresholds scored against the truth — an oracle choice that
    favours Splink — and we report its best F1, and its recall at our precision."""
    import logging

    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    records, truth = load(dataset)
    frame, present = _splink_frame(records)
    base_mb = _peak_mb()
    started = time.perf_counter()
    tf = {"term_frequency_adjustments": True}
    candidates = {
        "first_name": cl.NameComparison("first_name").configure(**tf),
        "middle_name": cl.NameComparison("middle_name"),
        "surname": cl.NameComparison("surname").configure(**tf),
        "dob": cl.DateOfBirthComparison("dob", input_is_string=True),
        "postcode": cl.ExactMatch("postcode").configure(**tf),
        "address": cl.JaroWinklerAtThresholds("address", [0.95, 0.85]).configure(**tf),
        "suburb": cl.JaroWinklerAtThresholds("suburb", [0.92]).configure(**tf),
        "nhi": cl.ExactMatch("nhi"),
        "mobile": cl.ExactMatch("mobile").configure(**tf),
        "email": cl.EmailComparison("email"),
    }
    comparisons = [c for name, c in candidates.items() if name in present]
    blocking = [block_on("dob", "substr(first_name, 1, 2)"), block_on("dob", "substr(surname, 1, 3)"),
                block_on("first_name", "surname")]
    blocking += [block_on(c, "substr(surname, 1, 2)") for c in ("postcode", "address") if c in present]
    blocking += [block_on(c) for c in ("nhi", "mobile", "email") if c in present]
    settings = SettingsCreator(
        link_type="dedupe_only", comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking, retain_intermediate_calculation_columns=False,
    )
    linker = Linker(DuckDBAPI().register(frame), settings, log_level="ERROR")
    deterministic = [block_on("first_name", "surname", "dob")]
    deterministic += [block_on(c) for c in ("nhi",) if c in present]
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=1)
    # Each EM pass leaves the blocked-on columns untrained; together they train all.
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "surname"))
    if "postcode" in present:
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
    predictions = linker.inference.predict(threshold_match_probability=0.001).as_pandas_dataframe()
    seconds = time.perf_counter() - started
    pairs = sorted(zip(predictions["match_weight"], predictions["unique_id_l"],
                       predictions["unique_id_r"], strict=True), reverse=True)
    sweep = []
    for threshold in range(-10, 61, 2):  # match weight (log2 Bayes factor incl. prior)
        predicted = _components(len(records), [(a, b) for w, a, b in pairs if w >= threshold])
        sweep.append((threshold, accuracy(predicted, truth)))
    best_threshold, best = max(sweep, key=lambda s: s[1].f1)
    at_ours = [s for s in sweep if our_precision is not None and s[1].precision >= our_precision]
    recall_at_ours = max((s[1].recall for s in at_ours), default=None)
    return {"records": len(records), "seconds": seconds, "peak_mb": _peak_mb(), "input_mb": base_mb,
            "review": None, "accuracy": best, "threshold": best_threshold,
            "recall_at_our_precision": recall_at_ours}


def _components(n: int, edges) -> list[int]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[ra] = rb
    return [find(i) for i in range(n)]


# --------------------------------------------------------------------------- report


def _guarded(fn, *args):
    os.environ.setdefault("TQDM_DISABLE", "1")  # pseudopeople's progress bars
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - a failed run is reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200],
                "trace": traceback.format_exc()}


def in_fresh_process(fn, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_guarded, (fn, *args))


HEADER = (f"{'dataset':<38}{'system':<8}{'records':>8}{'precision':>10}{'recall':>8}{'F1':>8}"
          f"{'whole':>8}{'mixed':>8}{'rev/1k':>8}{'inrev%':>7}{'rec/s':>8}{'MB':>6}  notes")


def row(dataset: Dataset, system: str, result: dict) -> str:
    if "error" in result:
        return f"{dataset.name:<38}{system:<8}  did not run: {result['error']}"
    acc = result["accuracy"]
    review = in_review = notes = ""
    if result.get("review") is not None:
        review = f"{1000 * result['review'] / result['persons']:.1f}"
        in_review = f"{100 * result['in_review'] / result['persons']:.2f}"
    if system == "splink":
        r = result.get("recall_at_our_precision")
        notes = f"best F1 at match weight >= {result['threshold']}; recall at our precision " + (
            f"{r:.4f}" if r is not None else "n/a (never reaches it)")
    return (f"{dataset.name:<38}{system:<8}{result['records']:>8}{acc.precision:>10.4f}"
            f"{acc.recall:>8.4f}{acc.f1:>8.4f}{acc.persons_whole:>8.4f}{acc.persons_mixed:>8.4f}"
            f"{review:>8}{in_review:>7}{result['records'] / result['seconds']:>8.0f}"
            f"{result['peak_mb']:>6.0f}  {notes}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None, help="generated records (default 20000)")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="generated sets at 5k")
    parser.add_argument("--full", action="store_true", help="also 400k throughput and 1M memory")
    parser.add_argument("--held-back", action="store_true", help="only the held-back sets")
    parser.add_argument("--fresh-held-back", action="store_true",
                        help="only round 6's held-back sets (run once, on the final rule)")
    parser.add_argument("--round7-held-back", action="store_true",
                        help="only round 7's held-back sets (baseline once, final rule once)")
    parser.add_argument("--only", default=None, help="data sets whose name contains this")
    parser.add_argument("--no-splink", action="store_true")
    parser.add_argument("--no-em", action="store_true", help="skip the panui+EM rows")
    parser.add_argument("--scale", type=int, default=None,
                        help="only one NZ run of this size (throughput and memory)")
    args = parser.parse_args(argv)
    if args.scale:
        dataset = Dataset(f"NZ gen {args.scale // 1000}k", "nz", args.scale, args.seed, args.noise)
        print(HEADER)
        print(row(dataset, "panui", in_fresh_process(run_panui, dataset)), flush=True)
        return 0

    size = args.size or (5_000 if args.quick else 20_000)
    if args.round7_held_back:
        sets = round7_held_back_sets(size)
    elif args.fresh_held_back:
        sets = fresh_held_back_sets(size)
    elif args.held_back:
        sets = held_back_sets(size)
    else:
        sets = accuracy_sets(size, args.seed, args.noise)
    if args.only:
        sets = [d for d in sets if args.only.lower() in d.name.lower()]
    print("rec/s: panui = incremental, one record at a time, one core; splink = batch (train + "
          "predict) wall time. whole = true persons with exactly one person id; mixed = output "
          "persons holding more than one true person; rev/1k = open review pairs per 1,000 "
          "output persons; inrev% = persons with an open review pair.")
    print(HEADER)
    for dataset in sets:
        ours = in_fresh_process(run_panui, dataset)
        print(row(dataset, "panui", ours), flush=True)
        if not args.no_em:
            print(row(dataset, "+EM", in_fresh_process(run_panui, dataset, True)), flush=True)
        if not args.no_splink:
            precision = ours["accuracy"].precision if "accuracy" in ours else None
            print(row(dataset, "splink", in_fresh_process(run_splink, dataset, precision)), flush=True)
    if args.full:
        for n in (400_000, 1_000_000):
            dataset = Dataset(f"NZ gen {n // 1000}k", "nz", n, args.seed, args.noise)
            print(row(dataset, "panui", in_fresh_process(run_panui, dataset)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
