"""Database errors never carry the bound values (they may be personal data) into messages."""

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert
from sqlalchemy.exc import IntegrityError

from services.common.db import make_engine

SECRET = "ZZZ0016-Aroha-Te-Whare"


def _fails_with_a_bound_value(url: str) -> str:
    engine = make_engine(url)
    table = Table("t_hidden", MetaData(), Column("k", String, primary_key=True))
    try:
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(table), {"k": SECRET})
        with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
            conn.execute(insert(table), {"k": SECRET})  # duplicate key
        return f"{caught.value}\n{caught.value.orig}"
    finally:
        engine.dispose()


def test_sqlite_errors_hide_bound_parameters(tmp_path):
    message = _fails_with_a_bound_value(f"sqlite:///{tmp_path / 'x.db'}")
    assert "hidden due to hide_parameters" in message
    assert SECRET not in message


@pytest.mark.postgres
def test_postgresql_errors_hide_bound_parameters(pg_database):
    message = _fails_with_a_bound_value(pg_database(None))
    assert "hidden due to hide_parameters" in message
    assert "duplicate key" in message
    assert SECRET not in message  # nor the server's DETAIL line, which repeats the key


def test_sqlite_locking_reads_do_not_lose_updates(tmp_path):
    """SQLite drops FOR UPDATE and pysqlite starts a transaction only at the first write: a
    delivery "locked" and read as 'sending' by the sender was overwritten with 'sent' after a
    receipt had recorded 'delivered' in between (CI saw `make run`'s SQLite lose that receipt).
    A locking read takes SQLite's write lock, so the receipt waits for the sender."""
    import threading

    from sqlalchemy import Integer, select, update

    engine = make_engine(f"sqlite:///{tmp_path / 'rmw.db'}")
    table = Table("d", MetaData(), Column("id", Integer, primary_key=True), Column("status", String))
    locked = select(table.c.status).where(table.c.id == 1).with_for_update()
    try:
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(table), {"id": 1, "status": "sending"})
        receipt_done = threading.Event()

        def receipt() -> None:  # sending or sent → delivered, as a receipt does
            with engine.begin() as conn:
                if conn.execute(locked).scalar_one() in ("sending", "sent"):
                    conn.execute(update(table).values(status="delivered"))
            receipt_done.set()

        with engine.begin() as conn:  # the sender recording its answer
            seen = conn.execute(locked).scalar_one()
            other = threading.Thread(target=receipt)
            other.start()
            receipt_done.wait(2.0)  # without the lock the receipt commits in this gap
            if seen == "sending":
                conn.execute(update(table).values(status="sent"))
        other.join(30)
        with engine.connect() as conn:
            assert conn.execute(select(table.c.status)).scalar_one() == "delivered"
    finally:
        engine.dispose()


def test_dispatchs_delivery_locks_take_sqlites_write_lock(tmp_path):
    """The store's locking reads must reach the mechanism above on SQLite too: they asked for
    FOR UPDATE only on PostgreSQL, so the receipt/sender race stayed open on `make run`."""
    from sqlalchemy.orm import Session

    from services.dispatch.store import deliveries
    from testkit.infra import sqlite_database

    engine = make_engine(sqlite_database(tmp_path / "dispatch.db", "dispatch"))
    try:
        for lock in (lambda s: deliveries.lock_delivery(s, "ntc-none", "sms"),
                     lambda s: deliveries.lock_deliveries(s, [1])):
            with Session(engine) as session:
                lock(session)
                assert session.connection().connection.dbapi_connection.in_transaction
    finally:
        engine.dispose()


def _insert_rows_round_trip(url: str) -> list[tuple]:
    """insert_rows as dispatch's outbox/history/delivery inserts use it: many rows, in order,
    NULLs, bytes, aware datetimes (UTCDateTime's bind check), JSON lists (not sub-arrays), the
    model's fixed defaults; insert_new_rows skips what is stored and says what it inserted."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import JSON, Boolean, Integer, LargeBinary, select

    from services.common.db import (
        UTCDateTime,
        insert_new_rows,
        insert_rows,
        session_scope,
        update_rows,
    )

    engine = make_engine(url)
    table = Table("t_rows", MetaData(), Column("id", Integer, primary_key=True),
                  Column("key", String(20), nullable=False, unique=True), Column("payload", LargeBinary),
                  Column("at", UTCDateTime), Column("checks", JSON),
                  Column("held", Boolean, nullable=False, default=False))
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    # Keys not in sorted order: the ids must follow the rows' order, not the keys'.
    rows = [{"key": f"k{(i * 7) % 300:03d}", "payload": None if i % 3 else bytes([i % 256]) * 3,
             "at": at + timedelta(seconds=i), "checks": [f"d{i}"] * (i % 3)} for i in range(300)]
    try:
        table.metadata.create_all(engine)
        with session_scope(engine) as session:
            insert_rows(session, table, rows)
            again = [{"key": "new", "payload": None, "at": at, "checks": []}, rows[5]]
        with session_scope(engine) as session:
            assert insert_new_rows(session, table, again, "key") == {"new"}
            with pytest.raises(ValueError, match="same columns"):
                insert_rows(session, table, [{"key": "a"}, {"key": "b", "payload": b""}])
        with session_scope(engine) as session:  # rows 0..9 changed; a repeated key: last wins
            update_rows(session, table, "key", [{"key": r["key"], "checks": ["x"], "held": True,
                                                 "payload": None} for r in rows[:10]])
            update_rows(session, table, "key", [{"key": "new", "checks": [1]},
                                                {"key": "new", "checks": [2]}])
        for r in rows[:10]:
            r.update(checks=["x"], held=True, payload=None)
        with session_scope(engine) as session:
            got = [tuple(r) for r in session.execute(select(table).order_by(table.c.id))]
    finally:
        engine.dispose()
    assert [g[1:] for g in got[:-1]] == [(r["key"], r["payload"], r["at"], r["checks"],
                                          r.get("held", False)) for r in rows]
    assert got[-1][1] == "new" and got[-1][4] == [2]
    return got


def test_insert_and_update_rows_on_sqlite(tmp_path):
    _insert_rows_round_trip(f"sqlite:///{tmp_path / 'rows.db'}")


@pytest.mark.postgres
def test_insert_and_update_rows_on_postgresql(pg_database):
    _insert_rows_round_trip(pg_database(None))


class _Kept:
    """A model-like owner of the table upsert writes (upsert takes the model's __table__)."""


def _upsert_round_trip(url: str) -> list[int]:
    """upsert and update_rows by a key of several columns as dedupe's record and person
    state use them: a key column compared by code point (code_point_string), JSON lists, a
    fixed default filled on insert and not written over on update, a repeated key (the last
    row wins). Returns how many statements each call sent (executemany: one per row)."""
    from sqlalchemy import JSON, Integer, UniqueConstraint, event, select

    from services.common.db import code_point_string, session_scope, update_rows, upsert

    engine = make_engine(url)
    table = Table("t_kept", MetaData(), Column("id", Integer, primary_key=True),
                  Column("incident", String(20), nullable=False),
                  Column("record", code_point_string(20), nullable=False),
                  Column("person", String(20)), Column("categories", JSON),
                  Column("version", Integer, nullable=False, default=1),
                  UniqueConstraint("incident", "record"))
    _Kept.__table__ = table
    sent = [0]  # statements on the table so far (an executemany: one per row)
    statements: list[int] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _count(conn, cursor, statement, params, context, executemany):  # noqa: ANN001, ARG001
        if "t_kept" in statement:  # not the pool's pings
            sent[0] += len(params) if executemany else 1

    def counted(write, *args) -> None:  # noqa: ANN001, ANN002
        before = sent[0]
        write(*args)
        statements.append(sent[0] - before)

    key = ["incident", "record"]
    rows = [{"incident": "inc", "record": f"R{i:03d}", "person": f"P{i % 7}",
             "categories": ["lab_results"] * (i % 2)} for i in range(200)]
    try:
        table.metadata.create_all(engine)
        with session_scope(engine) as session:
            counted(upsert, session, _Kept, rows, key)
        with session_scope(engine) as session:  # half of them again, changed, and a new one
            session.execute(table.update().where(table.c.record == "R000").values(version=5))
            counted(upsert, session, _Kept, [{**r, "person": "P-moved", "categories": ["x"]}
                                             for r in rows[:100]] + [{**rows[0], "record": "b-new",
                                                                      "person": None, "categories": []}], key)
            counted(update_rows, session, table, tuple(key), [
                {"incident": "inc", "record": r["record"], "person": "P-again"}
                for r in rows[150:]])
        with session_scope(engine) as session:  # a repeated key: each in turn, the last wins
            upsert(session, _Kept, [{**rows[1], "person": "first"},
                                    {**rows[1], "person": "last"}], key)
            update_rows(session, table, tuple(key), [
                {"incident": "inc", "record": "R002", "person": "first"},
                {"incident": "inc", "record": "R002", "person": "last"}])
        with session_scope(engine) as session:
            got = {r.record: r for r in session.execute(select(table))}
    finally:
        engine.dispose()
    assert len(got) == 201
    assert (got["R000"].person, got["R000"].categories, got["R000"].version) == (
        "P-moved", ["x"], 5)  # the default is not written over a stored row
    assert (got["R001"].person, got["R002"].person) == ("last", "last")
    assert got["R099"].person == "P-moved" and got["R100"].person == "P2"
    assert got["R100"].categories == [] and got["R101"].categories == ["lab_results"]
    assert {got[f"R{i}"].person for i in range(150, 200)} == {"P-again"}
    assert (got["b-new"].person, got["b-new"].version) == (None, 1)
    return statements


def test_upsert_and_update_by_several_columns_on_sqlite(tmp_path):
    _upsert_round_trip(f"sqlite:///{tmp_path / 'kept.db'}")


@pytest.mark.postgres
def test_upsert_and_update_by_several_columns_on_postgresql(pg_database):
    """On PostgreSQL each is one statement whatever the row count (dedupe writes a record
    and a person row per record applied: one statement per row was most of its database
    time, docs/benchmarks.md)."""
    assert _upsert_round_trip(pg_database(None)) == [1, 1, 1]
