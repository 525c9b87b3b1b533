"""Throughput of parse + validate for typical synthetic records, one core.

Run: .venv/bin/python -m tests.intake.bench_validation [N]
Not collected by pytest and has no timed assertions: timings on shared machines are noisy.
"""
import csv
import io
import random
import sys
import time

import orjson

from services.intake.parsing import iter_feed, to_result
from services.intake.validation import validate_record

GIVEN = ["Aroha", "Māui", "Wiremu", "Mere", "Hemi", "Jane", "Sione", "Priya"]
FAMILY = ["Te Whare", "Ngata", "Smith", "Tuhoe-Brown", "Patel", "Nguyen"]
CSV_COLUMNS = ["source_record_id", "nhi", "given_names", "family_name", "date_of_birth", "email",
               "mobile", "address_line1", "address_suburb", "address_city", "address_postcode",
               "data_categories", "document_count", "preferred_language"]


def make_records(n: int) -> list[dict]:
    rnd = random.Random(1)
    return [{
        "source_record_id": f"R{i:08d}",
        "nhi": "ZZZ0016" if i % 2 else "zzz00ac",
        "given_names": rnd.choice(GIVEN),
        "family_name": rnd.choice(FAMILY),
        "date_of_birth": f"{rnd.randint(1, 28):02d}/{rnd.randint(1, 12):02d}/{rnd.randint(1930, 2020)}",
        "email": f"person{i}@Example.co.nz",
        "mobile": f"021 {rnd.randint(100, 999)} {rnd.randint(1000, 9999)}",
        "address": {"line1": f"{i % 300} Example Street", "suburb": "Te Aro",
                    "city": "Wellington", "postcode": "6011"},
        "data_categories": ["lab_results", "clinical_notes"],
        "document_count": 3,
        "preferred_language": "en",
    } for i in range(n)]


def to_csv(records: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in records:
        a = r["address"]
        writer.writerow([r["source_record_id"], r["nhi"], r["given_names"], r["family_name"],
                         r["date_of_birth"], r["email"], r["mobile"], a["line1"], a["suburb"],
                         a["city"], a["postcode"], ";".join(r["data_categories"]),
                         r["document_count"], r["preferred_language"]])
    return buf.getvalue().encode()


def timed(label: str, fn) -> None:
    best = None
    for _ in range(3):
        start = time.perf_counter()
        n = fn()
        elapsed = time.perf_counter() - start
        best = elapsed if best is None or elapsed < best else best
    print(f"{label:24s} {n / best:>10,.0f} records/s  ({best / n * 1e6:.2f} µs/record)")


def main(n: int) -> None:
    records = make_records(n)
    feeds = {
        "ndjson": b"\n".join(orjson.dumps(r) for r in records) + b"\n",
        "csv": to_csv(records),
        "json": orjson.dumps(records),
    }
    timed("validate only", lambda: sum(1 for r in records if validate_record(r, 1).record))
    for fmt, data in feeds.items():
        def parse(data=data, fmt=fmt):
            return sum(1 for _ in iter_feed(io.BytesIO(data), fmt))

        def parse_and_validate(data=data, fmt=fmt):
            return sum(1 for ln, item in iter_feed(io.BytesIO(data), fmt) if to_result(ln, item).record)

        timed(f"parse only {fmt}", parse)
        timed(f"parse+validate {fmt}", parse_and_validate)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
