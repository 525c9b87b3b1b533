"""What the shared rate limits add to one "is this notice genuine?" check: `CheckLimits.take`
(a client's bucket, then everyone's: two INSERT … ON CONFLICT … RETURNING statements and a
commit, services/common/shared_buckets.py) as a route runs it, `await db.run(...)` (a worker
thread, one transaction), on the local PostgreSQL and on SQLite; and, with several checks at
once from two "replicas" (two engines on one database), how many takes a second the single
"everyone" row allows (every check queues on it).

    .venv/bin/python -m benchmarks.dispatch.check_limits [--checks 2000] [--concurrent 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from benchmarks import support
from services.common import migrations
from services.common.db import Database, make_engine
from services.dispatch.genuine import CheckLimits
from services.dispatch.models import MODELS

# Limits that never refuse: the cost measured is the round trip, not a refusal.
LIMITS = {"per_minute": 10**9, "burst": 10**9, "global_per_s": 10**9, "global_burst": 10**9}


def _limits() -> CheckLimits:
    return CheckLimits(**LIMITS, digest=lambda address: f"digest-of-{address}")


async def _sequential(db: Database, n: int) -> list[float]:
    limits, times = _limits(), []
    for i in range(n):
        started = time.perf_counter()
        assert await db.run(limits.take, limits.client_key(f"client-{i % 500}")) == 0
        times.append(time.perf_counter() - started)
    return times


def _select_one(session) -> None:  # noqa: ANN001
    session.execute(text("SELECT 1"))


async def _baseline(db: Database, n: int) -> float:
    """The median of a transaction doing nothing but SELECT 1: the box's round trip."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await db.run(_select_one)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def _concurrent(dbs: list[Database], n: int, at_once: int) -> float:
    limits = _limits()
    queue = iter(range(n))

    async def worker(db: Database) -> None:
        for i in queue:
            await db.run(limits.take, limits.client_key(f"client-{i % 500}"))

    started = time.perf_counter()
    await asyncio.gather(*(worker(dbs[k % len(dbs)]) for k in range(at_once)))
    return n / (time.perf_counter() - started)


def _report(label: str, times: list[float], baseline: float, rate: float, at_once: int) -> None:
    times = sorted(times)
    print(f"{label:<11} per check: median {statistics.median(times) * 1e3:.2f} ms (an empty "
          f"one-query transaction: {baseline * 1e3:.2f} ms), "
          f"p95 {times[int(len(times) * 0.95)] * 1e3:.2f} ms; {at_once} at once from two "
          f"replicas: {rate:.0f} checks/s", flush=True)


async def _measure(label: str, url: str, checks: int, at_once: int) -> None:
    engines = [make_engine(url), make_engine(url)]
    try:
        dbs = [Database(engine) for engine in engines]
        await _sequential(dbs[0], 100)  # warm the pool and the statement cache
        baseline = await _baseline(dbs[0], checks // 2)
        times = await _sequential(dbs[0], checks)
        _report(label, times, baseline, await _concurrent(dbs, checks, at_once), at_once)
    finally:
        for engine in engines:
            engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--concurrent", type=int, default=16)
    args = parser.parse_args(argv)
    name, url = support.create_database("bench_check_limits", "dispatch")
    try:
        asyncio.run(_measure("PostgreSQL", url, args.checks, args.concurrent))
    finally:
        support.drop_database(name)
    with tempfile.TemporaryDirectory() as scratch:
        sqlite = f"sqlite:///{Path(scratch) / 'dispatch.sqlite'}"
        migrations.upgrade(migrations.MigrationTree.of(MODELS), sqlite)
        asyncio.run(_measure("SQLite", sqlite, args.checks, args.concurrent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
