"""Database engines and sessions (SQLModel over SQLAlchemy), for PostgreSQL and SQLite alike.

Services use a synchronous engine and run database work in a worker thread
(`run_db`), which keeps transactions simple and still leaves the event loop free.
"""

import asyncio
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import (
    JSON,
    DateTime,
    String,
    Table,
    Text,
    TextClause,
    TypeDecorator,
    any_,
    bindparam,
    event,
    insert,
    text,
)
from sqlalchemy.dialects import postgresql
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
    """INSERT … ON CONFLICT (conflict) DO UPDATE of many rows (dicts with the same keys). On
    PostgreSQL ONE `INSERT … SELECT FROM unnest(one array per column) … ON CONFLICT`, as
    insert_rows: an executemany runs one statement per row in the server (dedupe writes a
    record and a person row per record applied, docs/benchmarks.md). Elsewhere (SQLite), or
    when a conflict key repeats (one statement may not update a row twice; each row must
    apply in turn, the last winning), an executemany."""
    if not rows:
        return
    table = model.__table__
    first = rows[0].keys()
    if (session.get_bind().dialect.name == "postgresql"
            and all(r.keys() == first for r in rows)
            and len({tuple(r[c] for c in conflict) for r in rows}) == len(rows)):
        names = tuple(first)
        params = {f"c{i}": [r[n] for r in rows] for i, n in enumerate(names)}
        for name, value in _scalar_defaults(table, names):  # as SQLAlchemy's INSERT fills them
            params[f"c{len(names)}"] = [value] * len(rows)
            names += (name,)
        statement, as_json = _unnest_upsert(table, names, tuple(first), tuple(conflict))
        for i in as_json:  # JSON values go as text: a list value would be taken for a sub-array
            params[f"c{i}"] = [None if v is None else json.dumps(v) for v in params[f"c{i}"]]
        session.execute(statement, params)
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table)
    updates = {c: statement.excluded[c] for c in rows[0] if c not in conflict}
    session.execute(statement.on_conflict_do_update(index_elements=conflict, set_=updates), rows)


@functools.lru_cache(maxsize=64)
def _unnest_upsert(table: Table, names: tuple[str, ...], given: tuple[str, ...],
                   conflict: tuple[str, ...]) -> tuple[TextClause, tuple[int, ...]]:
    """The upsert statement: every column in `names` inserted, the `given` ones not in the
    conflict key updated (a default filled in for the insert is not written over a row)."""
    keys = ", ".join(f'"{n}"' for n in conflict)
    sets = ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in given if n not in conflict)
    return _array_statement(table, names, lambda columns, arrays: (
        f'INSERT INTO "{table.name}" ({columns}) SELECT {columns}'  # noqa: S608 - names from the model
        f" FROM unnest({arrays}) AS u({columns}) ON CONFLICT ({keys}) "
        + (f"DO UPDATE SET {sets}" if sets else "DO NOTHING")))


def insert_rows(session: Session, table: Table, rows: Sequence[dict]) -> None:
    """Many rows (dicts with the same keys) into `table`, in this order (ids ascending: the
    outbox relay publishes by id). On PostgreSQL ONE short, fixed `INSERT … SELECT FROM
    unnest(one array per column)`: psycopg parses and caches it once, where SQLAlchemy's
    executemany turns every batch into a new multi-row VALUES statement too long for that
    cache, re-parsed each time — about half the CPU per row (docs/benchmarks.md, dispatch).
    Elsewhere (SQLite) a plain executemany."""
    _insert(session, table, rows, None)


def insert_new_rows(session: Session, table: Table, rows: Sequence[dict], key: str) -> set:
    """insert_rows, skipping rows that conflict with a stored one (ON CONFLICT DO NOTHING);
    returns the `key` values of the rows inserted."""
    return _insert(session, table, rows, key) or set()


def _insert(session: Session, table: Table, rows: Sequence[dict], returning: str | None):  # noqa: ANN202
    if not rows:
        return set()
    first = rows[0].keys()
    if any(r.keys() != first for r in rows):
        raise ValueError("insert_rows: every row needs the same columns")
    if session.get_bind().dialect.name != "postgresql":
        if returning is None:
            session.execute(insert(table), list(rows))
            return None
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).on_conflict_do_nothing().returning(table.c[returning])
        return {r[0] for r in session.execute(stmt, list(rows))}
    names = tuple(first)
    params = {f"c{i}": [r[n] for r in rows] for i, n in enumerate(names)}
    # The model's defaults for the columns not given, as SQLAlchemy's INSERT would fill them.
    for name, value in _scalar_defaults(table, names):
        params[f"c{len(names)}"] = [value] * len(rows)
        names += (name,)
    statement, as_json = _unnest_insert(table, names, returning)
    for i in as_json:  # JSON values go as text: a list value would be taken for a sub-array
        params[f"c{i}"] = [None if v is None else json.dumps(v) for v in params[f"c{i}"]]
    result = session.execute(statement, params)
    return {r[0] for r in result} if returning is not None else None


@functools.lru_cache(maxsize=64)
def _scalar_defaults(table: Table, given: tuple[str, ...]) -> tuple[tuple[str, object], ...]:
    found = []
    for column in table.columns:
        if column.name in given or column.default is None:
            continue
        if not column.default.is_scalar:  # a function of the row: the caller must give it
            raise ValueError(f"insert_rows: give {table.name}.{column.name} (no fixed default)")
        found.append((column.name, column.default.arg))
    return tuple(found)


@functools.lru_cache(maxsize=64)
def _unnest_insert(table: Table, names: tuple[str, ...],
                   returning: str | None) -> tuple[TextClause, tuple[int, ...]]:
    return _array_statement(table, names, lambda columns, arrays: (
        f'INSERT INTO "{table.name}" ({columns}) SELECT {columns}'  # noqa: S608 - names from the model
        f" FROM unnest({arrays}) WITH ORDINALITY AS u({columns}, _ord) ORDER BY _ord"
        + (f' ON CONFLICT DO NOTHING RETURNING "{returning}"' if returning else "")))


def update_rows(session: Session, table: Table, key: str | tuple[str, ...],
                rows: Sequence[dict]) -> None:
    """Update many rows of `table`, each dict the `key` column's value (which row; a tuple
    of columns: their values together) and the new values of the same other columns. On
    PostgreSQL ONE `UPDATE … FROM unnest(…)` (as insert_rows, for the same reason); elsewhere,
    or when a key repeats (each update must apply in turn, the last winning), an executemany."""
    if not rows:
        return
    first = rows[0].keys()
    if any(r.keys() != first for r in rows):
        raise ValueError("update_rows: every row needs the same columns")
    names = tuple(first)
    keys = (key,) if isinstance(key, str) else tuple(key)
    if (session.get_bind().dialect.name != "postgresql"
            or len({tuple(r[k] for k in keys) for r in rows}) < len(rows)):
        from sqlalchemy import and_, update

        stmt = (update(table).where(and_(*(table.c[k] == bindparam(f"_key_{k}") for k in keys)))
                .values(**{n: bindparam(n) for n in names if n not in keys}))
        session.connection().execute(
            stmt, [{**r, **{f"_key_{k}": r[k] for k in keys}} for r in rows])
        return
    statement, as_json = _unnest_update(table, keys, names)
    params = {f"c{i}": [r[n] for r in rows] for i, n in enumerate(names)}
    for i in as_json:
        params[f"c{i}"] = [None if v is None else json.dumps(v) for v in params[f"c{i}"]]
    session.execute(statement, params)


@functools.lru_cache(maxsize=64)
def _unnest_update(table: Table, keys: tuple[str, ...],
                   names: tuple[str, ...]) -> tuple[TextClause, tuple[int, ...]]:
    sets = ", ".join(f'"{n}" = u."{n}"' for n in names if n not in keys)
    where = " AND ".join(f'"{table.name}"."{k}" = u."{k}"' for k in keys)
    return _array_statement(table, names, lambda columns, arrays: (
        f'UPDATE "{table.name}" SET {sets} FROM unnest({arrays}) AS u({columns})'  # noqa: S608 - names from the model
        f" WHERE {where}"))


def _array_statement(table: Table, names: tuple[str, ...],
                     sql: Callable[[str, str], str]) -> tuple[TextClause, tuple[int, ...]]:
    """A statement over one array parameter per column (`sql` given the quoted column list
    and the casted arrays), and which of its parameters are JSON (bound as text)."""
    types, casts, as_json = _array_types(table, names)
    columns = ", ".join(f'"{n}"' for n in names)
    arrays = ", ".join(f"CAST(:c{i} AS {cast})" for i, cast in enumerate(casts))
    statement = text(sql(columns, arrays)).bindparams(
        *(bindparam(f"c{i}", type_=t) for i, t in enumerate(types)))
    return statement, as_json


def _array_types(table: Table, names: tuple[str, ...]) -> tuple[list, list[str], tuple[int, ...]]:
    """Per column: the array type its values bind as (each element as the column binds it,
    UTCDateTime's check too; JSON as its text, or a list value would be taken for a
    sub-array), the SQL array type it is cast to, and which columns are JSON."""
    dialect = postgresql.dialect()
    as_json = tuple(i for i, n in enumerate(names) if isinstance(table.c[n].type, JSON))
    plain = [_without_collation(table.c[n].type) for n in names]
    types = [ARRAY(Text if i in as_json else t) for i, t in enumerate(plain)]
    casts = [ARRAY(t).compile(dialect=dialect) for t in plain]
    return types, casts, as_json


def _without_collation(type_: TypeEngine) -> TypeEngine:
    """A string column's type with no COLLATE (code_point_string): an array of it cannot
    carry one, and the values take the column's own collation where they are stored or
    compared with it."""
    if not isinstance(type_, String):
        return type_
    type_ = type_._variant_mapping.get("postgresql", type_)  # noqa: SLF001 - with_variant's
    if type_.collation is None:
        return type_
    return String(type_.length)


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
