"""Token buckets in the database (services/common/shared_buckets.py), on PostgreSQL and SQLite:
two engines stand for two replicas sharing one database. The bucket holds across them, under
concurrent takes too (one statement: no two takes see the same tokens), refills on the
database's clock, and refilled buckets are forgotten."""

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common import shared_buckets
from services.common.db import make_engine, session_scope
from services.common.shared_buckets import Limit, RateBucket

pytestmark = pytest.mark.postgres


@pytest.fixture(params=["postgresql", "sqlite"])
def two_replicas(request, pg_database, tmp_path) -> Iterator[tuple[Engine, Engine]]:
    url = (pg_database(None) if request.param == "postgresql"
           else f"sqlite:///{tmp_path / 'shared.sqlite'}")
    engines = make_engine(url), make_engine(url)
    RateBucket.__table__.create(engines[0])
    yield engines
    for engine in engines:
        engine.dispose()


def _take(engine: Engine, limit: Limit, key: str) -> float:
    with session_scope(engine) as session:
        return shared_buckets.take(session, limit, key)


def test_a_bucket_holds_across_replicas_and_keys_are_separate(two_replicas):
    a, b = two_replicas
    slow = Limit("test.slow", rate=0.001, burst=3)
    waits = [_take(engine, slow, "k1") for engine in (a, b, a, b, a)]
    assert [w == 0 for w in waits] == [True, True, True, False, False]
    assert 900 < waits[3] <= 1000  # one token at 0.001/s, less the little refilled meanwhile
    assert _take(b, slow, "k2") == 0  # another key: its own bucket
    assert _take(a, Limit("test.other", rate=0.001, burst=1), "k1") == 0  # another limit too


def test_concurrent_takes_from_two_replicas_never_share_a_token(two_replicas):
    limit = Limit("test.everyone", rate=0.001, burst=20)
    results: list[float] = []
    lock = threading.Lock()

    def taker(engine: Engine) -> None:
        for _ in range(10):
            wait = _take(engine, limit, "everyone")
            with lock:
                results.append(wait)

    threads = [threading.Thread(target=taker, args=(engine,))
               for engine in two_replicas for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80
    assert sum(1 for w in results if w == 0) == 20  # the burst exactly, not per replica


def test_a_bucket_refills_on_the_database_clock(two_replicas):
    a, b = two_replicas
    limit = Limit("test.refill", rate=0.1, burst=1)  # a token every 10 s
    assert _take(a, limit, "k") == 0
    assert _take(b, limit, "k") > 0
    with session_scope(b) as session:  # move the bucket's last take 100 s into the past
        session.execute(text("UPDATE rate_bucket SET updated_at = updated_at - 100"))
    assert _take(b, limit, "k") == 0  # refilled (capped at the burst: one token, not 10)
    assert _take(a, limit, "k") > 0


def test_refilled_buckets_are_forgotten(two_replicas):
    a, _b = two_replicas
    limit = Limit("test.clients", rate=1, burst=2)  # full again 2 s after a take
    for key in ("c1", "c2", "c3"):
        assert _take(a, limit, key) == 0
    with session_scope(a) as session:
        session.execute(text("UPDATE rate_bucket SET updated_at = updated_at - 10"
                             " WHERE key IN ('c1', 'c2')"))
    with session_scope(a) as session:
        assert shared_buckets.forget_full(session, [limit]) == 2
    with session_scope(a) as session:
        assert session.execute(text("SELECT key FROM rate_bucket")).scalars().all() == ["c3"]
