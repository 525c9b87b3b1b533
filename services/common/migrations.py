"""Schema migrations (Alembic): one tree per service, its own version table, no alembic.ini.

A service's tree sits beside the module defining its tables: `services/<name>/migrations/`
(`env.py`, `script.py.mako`, `versions/`), recording its revision in `alembic_version_<name>`.
Its target metadata is only that service's tables (its `MODELS` plus the outbox): every SQLModel
table lives in one shared `MetaData`, so the tree copies its own tables into a `MetaData` of its
own and autogenerate never sees — or proposes to drop — another service's tables.

`python -m services.<name> migrate` runs `upgrade`/`downgrade` here; the runtime calls
`check_current` at start-up and refuses to start on a database that is not at the code's head.
How to add a migration: docs/decisions.md ("Schema migrations").
"""

from __future__ import annotations

import sys
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, String, TypeDecorator, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from services.common.audit import SHARED_MODELS as _STAFF_MODELS
from services.common.db import make_engine
from services.common.keystore import DataKey
from services.common.outbox import OutboxMessage
from services.common.retention import RetentionEvent
from services.common.shared_buckets import RateBucket

# Tables every service has, defined once in services/common (each in the service's own database):
# the outbox, the staff audit log and revoked tokens, the incident data keys, the retention
# audit trail and the rate limits its replicas share.
SHARED_MODELS = (OutboxMessage, *_STAFF_MODELS, DataKey, RetentionEvent, RateBucket)

VERSION_TABLE_PREFIX = "alembic_version_"


class SchemaNotCurrent(RuntimeError):
    """The database is not at the revision this code needs. The message says what to run and
    carries no connection details (URLs can hold passwords)."""


@dataclass(frozen=True)
class MigrationTree:
    service: str  # "intake": names the version table and the command
    package: str  # "services.intake"
    directory: Path  # services/intake/migrations
    models: tuple[type[SQLModel], ...]  # the service's tables, the outbox included

    @classmethod
    def of(cls, models: Sequence[type[SQLModel]]) -> MigrationTree:
        """The tree of the service these models belong to: `migrations/` in the models' package."""
        own = [m for m in models if m not in SHARED_MODELS]
        packages = {m.__module__.rpartition(".")[0] for m in own}
        if len(packages) != 1:
            raise ValueError(f"models of one service expected, got packages {sorted(packages)}")
        package = packages.pop()
        directory = Path(sys.modules[package].__file__).parent / "migrations"
        return cls(package.rpartition(".")[2], package, directory, (*own, *SHARED_MODELS))

    @property
    def version_table(self) -> str:
        return VERSION_TABLE_PREFIX + self.service

    @property
    def command(self) -> str:
        return f"python -m {self.package} migrate"

    @property
    def table_names(self) -> frozenset[str]:
        return frozenset(m.__table__.name for m in self.models)

    @property
    def lock_id(self) -> int:
        # One migration run at a time per service and database (PostgreSQL advisory lock).
        return zlib.crc32(self.version_table.encode())

    def metadata(self) -> MetaData:
        """A MetaData holding only this service's tables (copies: the shared one is untouched)."""
        metadata = MetaData()
        for model in self.models:
            model.__table__.to_metadata(metadata)
        return metadata

    def script(self) -> ScriptDirectory:
        return ScriptDirectory(str(self.directory))

    def heads(self) -> tuple[str, ...]:
        return tuple(self.script().get_heads())

    def config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.directory))
        config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
        config.attributes["connection"] = connection
        return config

    def include_name(self, name: str | None, type_: str, _parent_names: dict) -> bool:
        """Autogenerate's filter: this service's tables only (never another service's, nor
        another tree's version table, should several share a database)."""
        return type_ != "table" or name in self.table_names


def upgrade(tree: MigrationTree, target: str | Engine, revision: str = "head") -> None:
    with _locked(tree, target) as connection:
        _refuse_untracked_tables(tree, connection)
        command.upgrade(tree.config(connection), revision)


def downgrade(tree: MigrationTree, target: str | Engine, revision: str) -> None:
    """Down to `revision` ("base": no tables at all)."""
    with _locked(tree, target) as connection:
        command.downgrade(tree.config(connection), revision)


def stamp(tree: MigrationTree, target: str | Engine, revision: str) -> None:
    """Record that the database is at `revision` without running anything: for a database made
    before migrations existed (start-up's `create_all`, whose schema is the first revision's).
    Stamping the head is refused unless the database already matches the models."""
    with _locked(tree, target) as connection:
        script = tree.script()
        wanted = {r.revision for r in script.get_revisions(revision)} if revision != "base" else set()
        if wanted and wanted == set(script.get_heads()):
            found = differences(tree, connection)
            connection.rollback()  # end the reads: Alembic must own the transaction it writes in
            if found:
                raise SchemaNotCurrent(
                    f"{tree.service}'s database does not match the models ({len(found)} "
                    f"differences, e.g. {_describe(found[0])}); not stamping it as {_list(wanted)}")
        command.stamp(tree.config(connection), revision)


def current(tree: MigrationTree, target: str | Engine | Connection) -> tuple[str, ...]:
    """The revisions the database is at (empty: never migrated)."""
    with _connection(target) as connection:
        context = MigrationContext.configure(connection, opts={"version_table": tree.version_table})
        return tuple(context.get_current_heads())


def check_current(target: str | Engine, tree: MigrationTree) -> None:
    """Raise SchemaNotCurrent unless the database is exactly at the code's head revision."""
    at, heads = set(current(tree, target)), set(tree.heads())
    if at == heads:
        return
    if not at:
        where = "has no schema yet (never migrated)"
    elif at - set(_known_revisions(tree)):
        raise SchemaNotCurrent(
            f"{tree.service}'s database is at revision {_list(at)}, which this code does not know "
            f"(migrated by newer code?). Run the code that matches it, or downgrade with "
            f"`{tree.command} --downgrade {_list(heads)}` using that newer code.")
    else:
        where = f"is at revision {_list(at)}"
    raise SchemaNotCurrent(
        f"{tree.service}'s database {where}; this code needs revision {_list(heads)}. "
        f"Run `{tree.command}` first.")


def differences(tree: MigrationTree, target: str | Engine | Connection,
                metadata: MetaData | None = None) -> list:
    """What autogenerate would change to make the database match the models (empty: they agree).
    `metadata` replaces the models' (tests use it to show a difference is caught)."""
    with _connection(target) as connection:
        context = MigrationContext.configure(connection, opts=_context_options(tree))
        return compare_metadata(context, tree.metadata() if metadata is None else metadata)


def new_revision(tree: MigrationTree, message: str, database_url: str | None = None,
                 autogenerate: bool = True) -> Path:
    """Write the next revision file (`versions/<NNNN>_<slug>.py`), autogenerated from the models
    against `database_url` (at head) or, without one, a scratch SQLite database migrated to head.
    Returns its path. Read and tidy it before committing."""
    rev_id = f"{max((int(r) for r in _known_revisions(tree) if r.isdigit()), default=0) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        url = database_url or f"sqlite:///{Path(scratch) / 'scratch.db'}"
        if database_url is None:
            upgrade(tree, url)
        with _connection(url) as connection:
            check_current(connection.engine, tree)
            script = command.revision(tree.config(connection), message=message,
                                      autogenerate=autogenerate, rev_id=rev_id)
            connection.commit()
    return Path(script.path)


def run_env(models: Sequence[type[SQLModel]]) -> None:
    """The body of every service's migrations/env.py (Alembic runs env.py for each command)."""
    from alembic import context

    tree = MigrationTree.of(models)
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported; run against a database")
    connection = context.config.attributes.get("connection")
    if connection is None:  # Alembic's own command line with an alembic.ini of someone's
        with _connection(context.config.get_main_option("sqlalchemy.url")) as connection:
            _run(context, tree, connection)
    else:
        _run(context, tree, connection)


def _run(context, tree: MigrationTree, connection: Connection) -> None:  # noqa: ANN001
    context.configure(connection=connection, target_metadata=tree.metadata(),
                      **_context_options(tree))
    with context.begin_transaction():
        context.run_migrations()


def _context_options(tree: MigrationTree) -> dict:
    return {
        "version_table": tree.version_table,
        "include_name": tree.include_name,
        # Batch operations work on both: plain ALTERs on PostgreSQL, a table rebuild on SQLite.
        "render_as_batch": True,
        "compare_type": True,
        "compare_server_default": True,
        "render_item": _render_item,
    }


def _render_item(type_: str, obj: object, _autogen_context: object) -> str | bool:
    """Write column types as plain SQLAlchemy types: a migration must not import app code
    (SQLModel's AutoString, our UTCDateTime), which may change after the migration is written."""
    if type_ != "type" or not isinstance(obj, TypeDecorator | String):
        return False
    if isinstance(obj, TypeDecorator):
        obj = obj.impl
    if isinstance(obj, String) and type(obj).__module__.startswith("sqlmodel"):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    if type(obj).__module__ == "sqlalchemy.sql.sqltypes":  # a generic type: sa.DateTime(...)
        return f"sa.{obj!r}"
    return False


def _refuse_untracked_tables(tree: MigrationTree, connection: Connection) -> None:
    """A database with this service's tables but no version row was made without migrations:
    creating the tables again would fail halfway, so say what to do instead."""
    try:
        present = set() if current(tree, connection) else (
            tree.table_names & set(inspect(connection).get_table_names()))
    finally:
        connection.rollback()  # end the reads: Alembic must own the transaction it writes in
    if present:
        first = tree.script().get_base()
        raise SchemaNotCurrent(
            f"{tree.service}'s database has {len(present)} of its tables but no migration history "
            f"(made by start-up's create_all before migrations existed?). If so its schema is "
            f"revision {first}: run `{tree.command} --stamp {first}`, then `{tree.command}`.")


def _describe(difference: tuple | list) -> str:
    """One autogenerate difference in a few words: "add_column record_state.note"."""
    if isinstance(difference, list):  # column modifications come as a list of tuples
        difference = difference[0]
    op, *rest = difference
    names = [x if isinstance(x, str) else x.name for x in rest
             if isinstance(x, str) or isinstance(getattr(x, "name", None), str)]
    return f"{op} {'.'.join(names)}"


def _known_revisions(tree: MigrationTree) -> list[str]:
    return [script.revision for script in tree.script().walk_revisions()]


def _list(revisions: set[str]) -> str:
    return ", ".join(sorted(revisions)) or "base"


@contextmanager
def _connection(target: str | Engine | Connection | None) -> Iterator[Connection]:
    if target is None:
        raise SystemExit("no database: set DATABASE_URL")
    if isinstance(target, Connection):  # already inside one of ours
        yield target
        return
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        if isinstance(target, str):
            engine.dispose()


@contextmanager
def _locked(tree: MigrationTree, target: str | Engine) -> Iterator[Connection]:
    """A connection holding the tree's advisory lock on PostgreSQL, so replicas or jobs running
    migrate at once take turns (the second finds the work done). SQLite serialises writers."""
    with _connection(target) as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": tree.lock_id})
            connection.commit()  # Alembic then owns the transaction the migrations run in
        try:
            yield connection
        finally:
            connection.rollback()  # whatever a failed command left open (Alembic commits its own)
            if postgres:
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": tree.lock_id})
                connection.commit()

