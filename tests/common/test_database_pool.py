"""testkit's database pool (testkit/infra.py): a database a finished test gives back reaches the
next test only as its template left it — no rows, sequences where they were, its append-only
triggers on, a new name — and one it cannot prove so is dropped, never reused."""

import psycopg
import pytest

from testkit import infra

pytestmark = pytest.mark.postgres


def _databases(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def test_a_given_back_database_comes_back_empty_under_a_new_name(pg_admin_url):
    name, url = infra.lease_database(pg_admin_url, "intake")
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO audit_log (at, actor, actor_kind, action, object_ids) VALUES (now(), 'a', 'staff', 'b', '[]')")
        first_id = conn.execute("SELECT max(id) FROM audit_log").fetchone()[0]
    lingering = psycopg.connect(url)  # a connection the test forgot
    infra.release_database(pg_admin_url, name)
    assert name not in _databases(pg_admin_url)
    pooled = list(infra.idle_databases(pg_admin_url, "intake"))
    assert pooled, "a database that can be reset is kept for the next lease"
    with pytest.raises(psycopg.OperationalError):
        lingering.execute("SELECT 1")  # it was ended: it cannot see the next test's data
    again, again_url = infra.lease_database(pg_admin_url, "intake")
    try:
        assert again != name and again not in pooled
        with psycopg.connect(again_url) as conn:
            assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 0
            conn.execute("INSERT INTO audit_log (at, actor, actor_kind, action, object_ids) VALUES (now(), 'a', 'staff', 'b', '[]')")
            assert conn.execute("SELECT max(id) FROM audit_log").fetchone()[0] == first_id
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute("DELETE FROM audit_log")  # its triggers are on again
    finally:
        infra.release_database(pg_admin_url, again)


@pytest.mark.parametrize("change", [
    "CREATE TABLE extra (x int)",
    "ALTER TABLE incident ADD COLUMN extra int",
    "UPDATE alembic_version_intake SET version_num = 'elsewhere'",
    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change",
])
def test_a_database_a_test_changed_is_dropped_not_reused(pg_admin_url, change):
    name, url = infra.lease_database(pg_admin_url, "intake")
    before = list(infra.idle_databases(pg_admin_url, "intake"))
    with psycopg.connect(url) as conn:
        conn.execute(change)
    infra.release_database(pg_admin_url, name)
    assert infra.idle_databases(pg_admin_url, "intake") == before
    assert not {name} & _databases(pg_admin_url)
