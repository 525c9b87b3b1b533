"""Client CPU of storing notices: one multi-VALUES statement built per batch (what
store/notices did before issue 13), executemany parameters on one cached statement (what it did
then: SQLAlchemy's insertmanyvalues), and one INSERT … SELECT FROM unnest (what it does now,
services.common.db.insert_new_rows), on the local PostgreSQL (docs/decisions.md §10).

    .venv/bin/python -m benchmarks.dispatch.notice_insert [--batches 10] [--rows 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session

from benchmarks import support
from services.common.db import insert_new_rows
from services.dispatch.models import DispatchNotice

NT = DispatchNotice.__table__


def _rows(n: int, now: datetime) -> list[dict]:
    return [{"notice_id": uuid.uuid4().hex, "incident_id": "bench", "person_id": uuid.uuid4().hex,
             "version": 1, "planned": True, "payload": b"x" * 600, "created_at": now,
             "dob_checks": []}
            for _ in range(n)]


def _values_statement(session: Session, rows: list[dict]) -> set[str]:
    stmt = pg_insert(NT).values(rows).on_conflict_do_nothing().returning(NT.c.notice_id)
    return {r[0] for r in session.execute(stmt)}


def _executemany(session: Session, rows: list[dict]) -> set[str]:
    stmt = pg_insert(NT).on_conflict_do_nothing().returning(NT.c.notice_id)
    return {r[0] for r in session.execute(stmt, rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args(argv)
    name, url = support.create_database("bench_notice_insert", "dispatch")
    engine = create_engine(url)
    try:
        now = datetime.now(UTC)
        ways = {"multi-VALUES per batch": _values_statement,
                "executemany (insertmanyvalues)": _executemany,
                "unnest (insert_new_rows)": lambda s, rows: insert_new_rows(s, NT, rows, "notice_id")}
        for label, insert in [*ways.items()] * 2:  # twice each, interleaved: warm caches alike
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.batches):
                with Session(engine) as session, session.begin():
                    assert len(insert(session, _rows(args.rows, now))) == args.rows
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"{label:<32} {args.batches} x {args.rows} rows: client CPU {cpu:.2f} s "
                  f"({cpu / (args.batches * args.rows) * 1000:.3f} ms/row), wall {wall:.2f} s")
    finally:
        engine.dispose()
        support.drop_database(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
