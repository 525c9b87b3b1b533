"""`panui dead-letters list|replay` — what the consumers set aside, and re-driving it after a fix.

Reads the whole dead-letter topic (services/common/deadletters.py) from its beginning. One row
per origin message (`<topic>:<partition>:<offset>`), however often it was dead-lettered (a
crash before the commit, every follower replica). Never prints a payload, only its size and
SHA-256: the table and the JSON hold codes, ids and offsets, no personal values.

Replay re-publishes the original bytes to the origin topic and partition with the same key,
where every consumer reads them again in order — after everything published since, which the
consumers' idempotence (record versions, revisions, notice ids) makes harmless. Then it
records a `dead-letter-replayed` marker, so a second replay of the same dead letter skips it
(unless --force). A message on a compacted topic that a later message with the same key has
superseded is not replayed (compaction would then keep the old state); nor is a tombstone.

Exit codes: 0 done; 1 a selected dead letter could not be replayed; 2 usage; 3 Kafka did not answer.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from services.common.clock import utcnow
from services.common.kafka_client import options_for
from services.common.settings import ServiceSettings

dead_letters_app = typer.Typer(help="Messages the consumers could not decode or apply.",
                               no_args_is_help=True)

EXIT_NOT_REPLAYED, EXIT_UNAVAILABLE = 1, 3


@dataclass
class Entry:
    """One origin message that was dead-lettered, with everything known about it."""

    letter: object  # the first DeadLetterMessage seen for it
    seen: int = 1
    groups: set[str] = field(default_factory=set)
    last_at: datetime | None = None
    replayed: object | None = None  # the latest DeadLetterReplayedMessage, if any

    @property
    def id(self) -> str:
        return self.letter.origin.id

    @property
    def status(self) -> str:
        return "replayed" if self.replayed is not None else "pending"

    def as_dict(self) -> dict:
        letter = self.letter
        out = {
            "id": self.id,
            "status": self.status,
            "reason": letter.reason.value,
            "error_type": letter.error_type,
            "errors": [e.model_dump() for e in letter.errors],
            "attempts": letter.attempts,
            "origin": letter.origin.model_dump(mode="json"),
            "groups": sorted(self.groups),
            "seen": self.seen,
            "first_dead_lettered_at": _iso(letter.dead_lettered_at),
            "last_dead_lettered_at": _iso(self.last_at or letter.dead_lettered_at),
            "payload_bytes": None if letter.payload is None else len(base64.b64decode(letter.payload)),
            "payload_sha256": letter.payload_sha256,
        }
        if self.replayed is not None:
            out["replayed_at"] = _iso(self.replayed.replayed_at)
            out["replayed_to"] = {"partition": self.replayed.republished_partition,
                                  "offset": self.replayed.republished_offset}
        return out


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Filters:
    groups: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    status: str = "all"

    def admit(self, entry: Entry, prefix: str) -> bool:
        origin = entry.letter.origin
        return ((not self.groups or bool(entry.groups & _prefixed(self.groups, prefix)))
                and (not self.topics or origin.topic in _prefixed(self.topics, prefix))
                and (not self.reasons or entry.letter.reason.value in self.reasons)
                and (not self.services or origin.service in self.services)
                and (self.status == "all" or entry.status == self.status))


def _prefixed(names: tuple[str, ...], prefix: str) -> set[str]:
    return {n for n in names} | {f"{prefix}{n}" for n in names}


async def read_entries(bootstrap: str, prefix: str, timeout_s: float) -> list[Entry]:
    """Every dead letter on the topic now, one Entry per origin message, oldest first."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from services.common.messages import DeadLetterMessage, decode_dead_letters_topic
    from services.common.topics import DEAD_LETTERS

    topic = DEAD_LETTERS.full_name(prefix)
    consumer = AIOKafkaConsumer(**options_for(bootstrap), group_id=None,
                                enable_auto_commit=False, isolation_level="read_committed",
                                request_timeout_ms=int(timeout_s * 1000))
    await consumer.start()
    entries: dict[str, Entry] = {}
    markers: dict[str, object] = {}
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []  # no service has dead-lettered anything yet (the topic does not exist)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            batches = await consumer.getmany(timeout_ms=int(timeout_s * 1000))
            for records in batches.values():
                for record in records:
                    if record.offset >= end[TopicPartition(record.topic, record.partition)]:
                        continue
                    message = decode_dead_letters_topic(record.value)
                    if isinstance(message, DeadLetterMessage):
                        entry = entries.get(message.origin.id)
                        if entry is None:
                            entries[message.origin.id] = Entry(message, groups={message.origin.group},
                                                               last_at=message.dead_lettered_at)
                        else:
                            entry.seen += 1
                            entry.groups.add(message.origin.group)
                            entry.last_at = max(entry.last_at, message.dead_lettered_at)
                    else:
                        markers[message.origin_id] = message
    finally:
        await consumer.stop()
    for origin_id, marker in markers.items():
        if origin_id in entries:
            entries[origin_id].replayed = marker
    return sorted(entries.values(), key=lambda e: e.letter.dead_lettered_at)


def render_table(console: Console, entries: list[Entry]) -> None:
    table = Table(title=f"{len(entries)} dead-lettered message(s)", title_justify="left")
    for column in ("id", "status", "reason", "error", "where", "groups", "key", "seen",
                   "dead-lettered at"):
        table.add_column(column, justify="right" if column == "seen" else "left")
    for e in entries:
        letter = e.letter
        where = ", ".join(f"{x.loc}: {x.type}" for x in letter.errors[:3])
        if len(letter.errors) > 3:
            where += f" (+{len(letter.errors) - 3})"
        table.add_row(e.id, e.status, letter.reason.value, letter.error_type, where,
                      ", ".join(sorted(e.groups)), letter.origin.key or "-", str(e.seen),
                      f"{letter.dead_lettered_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


async def replay_entries(bootstrap: str, prefix: str, entries: list[Entry], *, force: bool,
                         dry_run: bool, timeout_s: float) -> list[tuple[Entry, str, str]]:
    """(entry, outcome, note) for each: outcome replayed | would-replay | skipped | failed."""
    from aiokafka import AIOKafkaProducer

    from services.common.messages import DeadLetterReplayedMessage
    from services.common.topics import ALL_TOPICS, DEAD_LETTERS

    compacted = {spec.full_name(prefix) for spec in ALL_TOPICS if spec.compacted}
    producer = AIOKafkaProducer(**options_for(bootstrap), enable_idempotence=True,
                                request_timeout_ms=int(timeout_s * 1000))
    await producer.start()
    results = []
    try:
        for entry in entries:
            origin, letter = entry.letter.origin, entry.letter
            if entry.replayed is not None and not force:
                results.append((entry, "skipped", "already replayed (--force to replay again)"))
                continue
            if letter.payload is None:
                results.append((entry, "skipped", "a tombstone: nothing to replay"))
                continue
            key = origin.key.encode() if origin.key is not None else None
            if origin.topic in compacted and await _superseded(bootstrap, origin, key, timeout_s):
                results.append((entry, "skipped", "superseded by a later message with its key"))
                continue
            if dry_run:
                results.append((entry, "would-replay", f"to {origin.topic}:{origin.partition}"))
                continue
            try:
                sent = await producer.send_and_wait(origin.topic, base64.b64decode(letter.payload),
                                                    key=key, partition=origin.partition)
                marker = DeadLetterReplayedMessage(
                    origin_id=entry.id, republished_partition=sent.partition,
                    republished_offset=sent.offset, replayed_at=utcnow())
                await producer.send_and_wait(DEAD_LETTERS.full_name(prefix), marker.to_bytes(), key=key)
            except Exception as exc:  # noqa: BLE001 - reported per dead letter
                results.append((entry, "failed", type(exc).__name__))
                continue
            results.append((entry, "replayed", f"as {origin.topic}:{sent.partition}:{sent.offset}"))
    finally:
        await producer.stop()
    return results


async def _superseded(bootstrap: str, origin, key: bytes | None, timeout_s: float) -> bool:  # noqa: ANN001
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(origin.topic, origin.partition)
    consumer = AIOKafkaConsumer(**options_for(bootstrap), group_id=None,
                                enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, origin.offset + 1)
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=int(timeout_s * 1000))
            if any(r.key == key and r.offset < end for r in batch.get(tp, [])):
                return True
        return False
    finally:
        await consumer.stop()


# --- the commands -------------------------------------------------------------------------------

Bootstrap = Annotated[str, typer.Option("--bootstrap", envvar="KAFKA_BOOTSTRAP_SERVERS",
                                        help="Kafka bootstrap servers.")]
Prefix = Annotated[str, typer.Option("--prefix", envvar="PANUI_TOPIC_PREFIX",
                                     help="The deployment's topic and group prefix.")]
GroupOpt = Annotated[list[str] | None, typer.Option(
    "--group", "-g", help="Only what this consumer group set aside (repeatable; with or without "
                          "the prefix; a follower is follow:<topic>).")]
TopicOpt = Annotated[list[str] | None, typer.Option(
    "--topic", "-t", help="Only messages from this topic (repeatable; with or without the prefix).")]
ReasonOpt = Annotated[list[str] | None, typer.Option(
    "--reason", "-r", help="Only this reason (repeatable): undecodable, schema-invalid, "
                           "unknown-version, unexpected-tombstone, unauthenticated, apply-failed.")]
ServiceOpt = Annotated[list[str] | None, typer.Option(
    "--service", "-s", help="Only what this service set aside (repeatable).")]
Timeout = Annotated[float, typer.Option("--timeout", min=0.1, metavar="SECONDS",
                                        help="Kafka request timeout.")]
_BOOTSTRAP = ServiceSettings.model_fields["kafka_bootstrap_servers"].default
_PREFIX = ServiceSettings.model_fields["topic_prefix"].default


def _filters(group, topic, reason, service, status: str = "all") -> Filters:  # noqa: ANN001
    from services.common.messages import DeadLetterReason

    known = {r.value for r in DeadLetterReason}
    for r in reason or ():
        if r not in known:
            raise typer.BadParameter(f"unknown reason {r!r}: one of {', '.join(sorted(known))}",
                                     param_hint="--reason")
    if status not in ("all", "pending", "replayed"):
        raise typer.BadParameter("one of all, pending, replayed", param_hint="--status")
    return Filters(tuple(group or ()), tuple(topic or ()), tuple(reason or ()),
                   tuple(service or ()), status)


def _run(coro) -> object:  # noqa: ANN001
    # aiokafka logs every failed connection attempt; the command says it once, clearly.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(coro)
    except Exception as exc:
        from aiokafka.errors import KafkaError

        from services.common.kafka_client import KafkaSettingsError

        if isinstance(exc, KafkaSettingsError):
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        if isinstance(exc, KafkaError | TimeoutError | OSError):
            typer.echo(f"error: Kafka did not answer ({type(exc).__name__})", err=True)
            raise typer.Exit(code=EXIT_UNAVAILABLE) from None
        raise
    finally:
        kafka_log.setLevel(level)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 200)


@dead_letters_app.command("list")
def list_command(
    bootstrap: Bootstrap = _BOOTSTRAP, prefix: Prefix = _PREFIX, group: GroupOpt = None,
    topic: TopicOpt = None, reason: ReasonOpt = None, service: ServiceOpt = None,
    status: Annotated[str, typer.Option("--status", help="all, pending or replayed.")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array instead of a table.")] = False,
    timeout: Timeout = 10.0,
) -> None:
    """The dead-lettered messages: origin, reason, where the contract failed, status."""
    filters = _filters(group, topic, reason, service, status)
    entries = [e for e in _run(read_entries(bootstrap, prefix, timeout)) if filters.admit(e, prefix)]
    if as_json:
        typer.echo(orjson.dumps([e.as_dict() for e in entries]).decode())
    else:
        render_table(_console(), entries)


@dead_letters_app.command("replay")
def replay_command(
    ids: Annotated[list[str] | None, typer.Argument(
        metavar="[ID]...", help="Dead letters to replay, as `list` shows them "
                                "(<topic>:<partition>:<offset>).")] = None,
    replay_all: Annotated[bool, typer.Option(
        "--all", help="Every dead letter the filters select (needed when no ID is given).")] = False,
    bootstrap: Bootstrap = _BOOTSTRAP, prefix: Prefix = _PREFIX, group: GroupOpt = None,
    topic: TopicOpt = None, reason: ReasonOpt = None, service: ServiceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replay again what was replayed.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array of outcomes.")] = False,
    timeout: Timeout = 10.0,
) -> None:
    """Re-publish dead-lettered messages to their origin topic (same partition and key)."""
    if not ids and not replay_all:
        raise typer.BadParameter("name the dead letters to replay, or select them with --all "
                                 "(and filters)", param_hint="ID")
    filters = _filters(group, topic, reason, service)

    async def go() -> list[tuple[Entry, str, str]]:
        entries = [e for e in await read_entries(bootstrap, prefix, timeout)
                   if filters.admit(e, prefix) and (not ids or e.id in ids)]
        missing = sorted(set(ids or ()) - {e.id for e in entries})
        if missing:
            raise typer.BadParameter(f"no such dead letter: {', '.join(missing)}", param_hint="ID")
        return await replay_entries(bootstrap, prefix, entries, force=force, dry_run=dry_run,
                                    timeout_s=timeout)

    results = _run(go())
    if as_json:
        typer.echo(orjson.dumps([{"id": e.id, "outcome": o, "note": n} for e, o, n in results]).decode())
    else:
        table = Table(title=f"{len(results)} dead letter(s)", title_justify="left")
        for column in ("id", "outcome", "note"):
            table.add_column(column)
        for e, outcome, note in results:
            table.add_row(e.id, outcome, note)
        _console().print(table)
    raise typer.Exit(code=EXIT_NOT_REPLAYED if any(o == "failed" for _e, o, _n in results) else 0)
