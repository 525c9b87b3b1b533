"""Database engines and sessions (SQLModel over SQLAlchemy), for PostgreSQL and SQLite alike.

Services use a synchronous engine and run database work in a worker thread
(`run_db`), which keeps transactions simple and still leaves the event loop free.
"""

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import DateTime, String, TypeDecorator, any_, bindparam, event, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import TypeEngine
from sqlmodel import Session, SQLModel, create_engine

# What a route catches when the database failed under it, so routes need not import SQLAlchemy
# (services keep SQL in their stores; tests/*/test_layers.py).
DatabaseError = SQLAlchemyError

T = TypeVar("T")
P = ParamSpec("P")


def _normalise_url(url: str) -> str:
    # Accept the plain libpq form ops will paste; we ship psycopg 3 as the driver.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    # hide_parameters: a database error's message never carries the bound values (personal
    # data, sealed or not) into logs or exception text.
    url = _normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "before_cursor_execute")
        def _sqlite_for_update(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001, ARG001
            # SQLite drops FOR UPDATE, and pysqlite BEGINs only at the first write: the rows a
            # store "locks" were read outside any transaction, and a change committed between
            # that read and the write was overwritten (a receipt's 'delivered' lost under the
            # sender's 'sent'). A locking read takes SQLite's write lock first, so the other
            # writer waits, as a row lock would make it on PostgreSQL.
            stmt = getattr(getattr(context, "compiled", None), "statement", None)
            if (getattr(stmt, "_for_update_arg", None) is not None
                    and not conn.connection.dbapi_connection.in_transaction):
                cursor.execute("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True,
                           hide_parameters=True)

    @event.listens_for(engine, "handle_error")
    def _terse_errors(context) -> None:  # noqa: ANN001
        # The server's DETAIL line repeats values ("Key (k)=(…) already exists"): keep the
        # primary message only, in the driver's exception and in SQLAlchemy's.
        orig, wrapped = context.original_exception, context.sqlalchemy_exception
        primary = getattr(getattr(orig, "diag", None), "message_primary", None)
        if primary is None:
            return
        orig.args = (primary,)
        if wrapped is not None:
            name = f"{type(orig).__module__}.{type(orig).__name__}"
            wrapped.args = (f"({name}) {primary}", *wrapped.args[1:])

    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


async def run_db(fn: Callable[..., T], *args, **kwargs) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on PostgreSQL and SQLite alike (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: use timezone-aware UTC datetimes")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def upsert(session: Session, model: type[SQLModel], rows: list[dict], conflict: list[str]) -> None:
    """INSERT … ON CONFLICT (conflict) DO UPDATE, in one executemany, on PostgreSQL and SQLite."""
    if not rows:
        return
    table = model.__table__
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table)
    updates = {c: statement.excluded[c] for c in rows[0] if c not in conflict}
    session.execute(statement.on_conflict_do_update(index_elements=conflict, set_=updates), rows)


class Database:
    """A service's database as routes and workers use it: `await db.run(fn, *args)` runs
    `fn(session, *args)` in one transaction in a worker thread (committed when fn returns,
    rolled back when it raises), so store functions stay plain synchronous code."""

    def __init__(self, engine: Engine):
        self.engine = engine

    async def run(self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(self._in_transaction, fn, *args, **kwargs)

    def _in_transaction(self, fn: Callable[..., T], *args, **kwargs) -> T:
        with session_scope(self.engine) as session:
            return fn(session, *args, **kwargs)


def code_point_string(length: int) -> TypeEngine:
    """A VARCHAR compared and sorted by code point whatever the database's collation: COLLATE "C"
    on PostgreSQL (a database made with, say, ICU's en-NZ sorts B, C, a-1, b as a-1, b, B, C),
    plain on SQLite (its default BINARY collation already is). For ids
    that are paged by cursor and merged across services in code point order (reconciliation,
    services/common/reconciliation.py): the column's own collation, so its indexes, its `>`
    and its ORDER BY agree with each other and with Python's `<` on str."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def one_of(session: Session, column, values: list[str]):  # noqa: ANN001, ANN201 - a SQL clause
    """`column IN values` for a long list of strings: on PostgreSQL one array parameter
    (`= ANY(:values)`), where an IN list of thousands of parameters costs more to bind and
    parse than the lookup itself; elsewhere (SQLite) a plain IN list."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))
    return column.in_(list(values))
