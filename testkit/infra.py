"""Access to the run's shared Kafka broker and PostgreSQL server, with isolation per test:
each test gets its own topic prefix and its own database, migrated for the service under test.

A service's database is made as the service's operators make it — with its migrations — once
per run: the first request for, say, a dedupe database migrates a template database
(`tpl_dedupe_<random>`), and every later one is `CREATE DATABASE … TEMPLATE` of it (a file copy,
much faster than migrating again). Template names are random, so concurrent pytest runs on the
same server (other worktrees) never share or race on one; `drop_templates` removes this run's.
"""

import asyncio
import importlib
import os
import socket
import subprocess
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
    """Drop the template databases this process made (at the end of a test run)."""
    while _templates:
        (admin_url, _service), name = _templates.popitem()
        drop_database(admin_url, name)


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
