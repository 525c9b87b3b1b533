"""Access to the run's shared Kafka broker and PostgreSQL server, with isolation per test:
each test gets its own topic prefix and its own database, migrated for the service under test.

A service's database is made as the service's operators make it — with its migrations — once
per run: the first request for, say, a dedupe database migrates a template database
(`tpl_dedupe_<random>`), and every later one is `CREATE DATABASE … TEMPLATE` of it (a file copy,
much faster than migrating again). Template names are random, so concurrent pytest runs on the
same server (other worktrees) never share or race on one; `drop_templates` removes this run's.

Copying a template still costs a test ~0.4-2 s (PostgreSQL writes the whole ~8 MB copy to its
WAL) and dropping it more. `lease_database` therefore hands out a database a finished test gave
back with `release_database`, put back into the template's state first: every table the template
holds no rows in is truncated, every sequence set back to the template's value, and the result
compared with the template's fingerprint (its schema, triggers, functions, privileges, database
settings, and the rows of the tables it holds rows in, such as the migration version). A
database that differs in anything (a test altered the schema, migrated down, left a prepared
transaction or still has a connection) is dropped, never reused. A leased database is renamed to
a new unique name each time, so no URL is ever handed out twice and a connection a test left
behind cannot reach the next test's data.
"""

import asyncio
import hashlib
import importlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common import migrations

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("intake", "dedupe", "dispatch")
_templates: dict[tuple[str, str], str] = {}  # (admin url, service) -> template database name
_shapes: dict[tuple[str, str], "_Shape"] = {}  # (admin url, service) -> what its template holds
_idle: dict[tuple[str, str], list[str]] = {}  # (admin url, service) -> databases reset, unleased
_leased: dict[str, tuple[str, str]] = {}  # leased database name -> (admin url, service)
# How long a test waits for a condition that should come true (a message, a row, a state) before
# it fails. A wait returns as soon as the condition holds, so a passing test pays nothing for a
# long bound; a short one fails on a busy 2-core CI box (several tests timed out at 20-30 s there).
WAIT_S = 120.0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kafka_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def pg_admin_url() -> str:
    url = os.environ.get("PANUI_PG_ADMIN_URL")
    if url:
        return url
    return subprocess.run(
        [str(REPO / "scripts/postgres.sh"), "url"], capture_output=True, text=True, check=True
    ).stdout.strip()


def migration_tree(service: str) -> migrations.MigrationTree:
    """The migrations of "intake", "dedupe" or "dispatch"."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
    return migrations.MigrationTree.of(importlib.import_module(f"services.{service}.models").MODELS)


def create_database(admin_url: str, prefix: str = "t", service: str | None = None) -> tuple[str, str]:
    """A new database on the shared server: (name, url). With `service`, it holds that service's
    schema at its head revision (as `python -m services.<service> migrate` leaves it); without,
    it is empty."""
    template = _template(admin_url, service) if service else None
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name, database_url(admin_url, name)


def create_language_collated_database(admin_url: str, service: str) -> tuple[str, str]:
    """A new database whose default collation is ICU's English (New Zealand), not C.UTF-8 as
    on the shared server — as a production database may be — holding `service`'s schema at its
    head revision: (name, url). Language order is not code point order (a-1, b, B, C against
    B, C, a-1, b)."""
    name = f"icu_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\' '
                     "LOCALE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'en-NZ'")
    url = database_url(admin_url, name)
    migrations.upgrade(migration_tree(service), url)
    return name, url


def database_url(admin_url: str, name: str) -> str:
    return f"{admin_url.rpartition('/')[0]}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_database(path: Path, service: str) -> str:
    """A SQLite database file migrated for `service` (what `make run` uses): its URL."""
    url = f"sqlite:///{path}"
    migrations.upgrade(migration_tree(service), url)
    return url


def _template(admin_url: str, service: str) -> str:
    key = (admin_url, service)
    if key not in _templates:
        name, url = create_database(admin_url, f"tpl_{service}")
        try:
            # upgrade() disposes its engine: no session stays to block CREATE DATABASE … TEMPLATE.
            migrations.upgrade(migration_tree(service), url)
        except BaseException:
            drop_database(admin_url, name)
            raise
        _templates[key] = name
    return _templates[key]


def drop_templates() -> None:
    """Drop the template and pooled databases this process made (at the end of a test run)."""
    for (admin_url, _service), names in list(_idle.items()):
        while names:
            drop_database(admin_url, names.pop())
    while _templates:
        (admin_url, _service), name = _templates.popitem()
        drop_database(admin_url, name)


def lease_database(admin_url: str, service: str) -> tuple[str, str]:
    """A database at `service`'s head revision holding no data, as `create_database(service=…)`
    gives (name, url), under a name never handed out before; give it back with
    `release_database` (or drop it: both are safe)."""
    key = (admin_url, service)
    idle = _idle.setdefault(key, [])
    name = f"t_{uuid.uuid4().hex[:16]}"
    while idle:
        pooled = idle.pop()
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{pooled}" RENAME TO "{name}"')
        except psycopg.Error:
            drop_database(admin_url, pooled)
            continue
        _leased[name] = key
        return name, database_url(admin_url, name)
    name, url = create_database(admin_url, service=service)
    _leased[name] = key
    return name, url


def release_database(admin_url: str, name: str) -> None:
    """Give back a leased database: reset to its template's state for the next lease when that
    provably restores it, dropped otherwise (and any database not from `lease_database`)."""
    key = _leased.pop(name, None)
    if key is None:
        drop_database(admin_url, name)
        return
    pooled = f"p_{uuid.uuid4().hex[:16]}"
    try:
        _disconnect_and_rename(admin_url, name, pooled)
    except psycopg.Error:
        drop_database(admin_url, name)
        return
    try:
        reusable = _reset(database_url(admin_url, pooled), _shape(*key))
    except psycopg.Error:
        reusable = False
    if reusable:
        _idle.setdefault(key, []).append(pooled)
    else:
        drop_database(admin_url, pooled)


def idle_databases(admin_url: str, service: str) -> list[str]:
    """The names of the reset databases of `service` waiting for a lease (a copy)."""
    return list(_idle.get((admin_url, service), []))


def _disconnect_and_rename(admin_url: str, name: str, new_name: str) -> None:
    """End every session still on `name` (as DROP DATABASE … WITH (FORCE) does), then rename it:
    a rename needs the database to have no session, so it also proves none came back."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while True:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            try:
                conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{new_name}"')
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # a terminated backend is still exiting


class _Shape:
    """What a service's template holds that a reset must restore and check."""

    def __init__(self, conn: psycopg.Connection):
        tables = [r[0] for r in conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1")]
        holding = {t for t in tables if _has_rows(conn, t)}
        self.emptied = [t for t in tables if t not in holding]  # reset by TRUNCATE
        self.kept = sorted(holding)  # left alone; their rows are part of the fingerprint
        self.sequences = conn.execute(
            "SELECT format('%I.%I', schemaname, sequencename),"
            " coalesce(last_value, start_value), last_value IS NOT NULL FROM pg_sequences").fetchall()
        self.triggers = conn.execute(
            "SELECT tgrelid::regclass::text, quote_ident(tgname) FROM pg_trigger"
            " WHERE NOT tgisinternal AND tgenabled <> 'D'").fetchall()
        self.fingerprint = _fingerprint(conn, self.kept)


def _shape(admin_url: str, service: str) -> _Shape:
    key = (admin_url, service)
    if key not in _shapes:
        with psycopg.connect(database_url(admin_url, _template(admin_url, service))) as conn:
            _shapes[key] = _Shape(conn)
    return _shapes[key]


_CATALOG = """
SELECT x FROM (
  SELECT format('class %s.%s %s %s %s', n.nspname, c.relname, c.relkind, c.relpersistence, c.relacl)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname !~ '^(pg_|information_schema)'
  UNION ALL SELECT format('column %s.%s %s %s %s %s', a.attrelid::regclass, a.attname,
      format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity, pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped AND n.nspname !~ '^(pg_|information_schema)'
  UNION ALL SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
    FROM pg_constraint WHERE connamespace::regnamespace::text !~ '^(pg_|information_schema)'
  UNION ALL SELECT format('index %s', pg_get_indexdef(indexrelid)) FROM pg_index
    WHERE indrelid::regclass::text !~ '^(pg_|information_schema)'
  UNION ALL SELECT format('trigger %s %s', tgenabled, pg_get_triggerdef(oid)) FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL SELECT format('function %s %s %s', p.oid::regprocedure, md5(p.prosrc), p.proacl)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname !~ '^(pg_|information_schema)'
  UNION ALL SELECT format('type %s.%s %s', n.nspname, t.typname, t.typtype)
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname !~ '^(pg_|information_schema)'
  UNION ALL SELECT format('enum %s %s %s', enumtypid::regtype, enumsortorder, enumlabel) FROM pg_enum
  UNION ALL SELECT format('sequence %s.%s %s %s %s %s %s %s', schemaname, sequencename, start_value,
      increment_by, min_value, max_value, cycle, cache_size) FROM pg_sequences
  UNION ALL SELECT format('schema %s %s %s', nspname, nspowner::regrole, nspacl) FROM pg_namespace
  UNION ALL SELECT format('extension %s %s', extname, extversion) FROM pg_extension
  UNION ALL SELECT format('policy %s %s %s', polrelid::regclass, polname, pg_get_expr(polqual, polrelid))
    FROM pg_policy
  UNION ALL SELECT format('rule %s %s', ev_class::regclass, rulename) FROM pg_rewrite
    WHERE ev_class::regclass::text !~ '^(pg_|information_schema)'
  UNION ALL SELECT format('database %s %s %s', datacl, datconnlimit, datallowconn) FROM pg_database
    WHERE datname = current_database()
  UNION ALL SELECT format('setting %s %s', setrole, setconfig) FROM pg_db_role_setting
    WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  UNION ALL SELECT format('large objects %s', count(*)) FROM pg_largeobject_metadata
  UNION ALL SELECT format('prepared %s', count(*)) FROM pg_prepared_xacts WHERE database = current_database()
) s(x) ORDER BY x
"""


def _fingerprint(conn: psycopg.Connection, kept: list[str]) -> str:
    digest = hashlib.sha256()
    for (line,) in conn.execute(_CATALOG):
        digest.update(f"{line}\n".encode())
    for table in kept:
        for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1"):  # noqa: S608 - catalog names, quoted
            digest.update(f"{table} {row!r}\n".encode())
    return digest.hexdigest()


def _has_rows(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute(f"SELECT EXISTS (SELECT FROM {table})").fetchone()[0]  # noqa: S608 - catalog names, quoted


def _reset(url: str, shape: _Shape) -> bool:
    """Put a database of `shape`'s service back into its template's state; True if it then
    matches the template's fingerprint (a database that does not is not reused)."""
    with psycopg.connect(url) as conn:
        if _fingerprint(conn, shape.kept) != shape.fingerprint:
            return False  # schema, settings or kept rows changed: truncating cannot restore it
        holding = [t for t in shape.emptied if _has_rows(conn, t)]
        with conn.transaction():
            if holding:
                # Append-only tables refuse TRUNCATE by trigger; the owner may switch it off
                # inside this transaction (and back on before it commits).
                for table, trigger in shape.triggers:
                    conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
                conn.execute(f"TRUNCATE {', '.join(holding)} RESTART IDENTITY CASCADE")
                for table, trigger in shape.triggers:
                    conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")
            for sequence, value, called in shape.sequences:
                conn.execute("SELECT setval(%s, %s, %s)", (sequence, value, called))
        left = [t for t in shape.emptied if _has_rows(conn, t)]
        return not left and _fingerprint(conn, shape.kept) == shape.fingerprint


def _security(security: dict | None) -> dict:
    """TLS/SASL client options (services/common/kafka_client.client_options) minus the
    bootstrap servers, which these helpers take on their own."""
    return {k: v for k, v in (security or {}).items() if k != "bootstrap_servers"}


async def delete_topics_with_prefix(bootstrap: str, prefix: str, security: dict | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **_security(security))
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()


@asynccontextmanager
async def topic_reader(bootstrap: str, topic: str,
                       security: dict | None = None) -> AsyncIterator["TopicReader"]:
    reader = TopicReader(bootstrap, topic, security)
    await reader.start()
    try:
        yield reader
    finally:
        await reader.stop()


class TopicReader:
    """Reads a whole topic from the beginning without a consumer group (an observer)."""

    def __init__(self, bootstrap: str, topic: str, security: dict | None = None):
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, **_security(security), enable_auto_commit=False, group_id=None,
            isolation_level="read_committed",
        )
        self.messages: list = []

    async def start(self) -> None:
        await self.consumer.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S  # a service under test may still be creating it
        while not (partitions := self.consumer.partitions_for_topic(self.topic)):
            if loop.time() > deadline:
                raise AssertionError(f"topic {self.topic} does not exist")
            await self.consumer._client.force_metadata_update()  # topic may be brand new
            await asyncio.sleep(0.1)
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def wait_for(self, predicate, timeout: float = WAIT_S) -> list:  # noqa: ANN001
        """Read until predicate(all messages so far) is true; returns the messages."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.messages):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s on {self.topic} with {len(self.messages)} messages"
                )
            batch = await self.consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for records in batch.values():
                self.messages.extend(records)
        return self.messages

    async def drain(self, quiet_s: float = 0.5) -> list:
        """Read everything available now: until a poll of quiet_s brings nothing new."""
        while True:
            batch = await self.consumer.getmany(timeout_ms=int(quiet_s * 1000))
            if not any(batch.values()):
                return self.messages
            for records in batch.values():
                self.messages.extend(records)
