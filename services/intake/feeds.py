"""Accepting a feed: parse and validate each record, store every new or changed version sealed,
and enqueue its affected-record message — all in one transaction, so 202 means durable.

Re-sending the same (agency, incident, source_record_id) with identical content is a no-op;
changed content becomes the next version of that record. A request with an Idempotency-Key the
agency has used before gets the original feed back instead of a new one.

Validation and parsing are pure (services/intake/validation, services/intake/parsing); every
statement is in the store. Records are validated and written in chunks of
`store_chunk_records`, so memory stays flat however long the feed; the one commit is at the end.
"""

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

import orjson
from sqlmodel import Session

from services.common.batching import chunks
from services.common.clock import utcnow
from services.common.crypto import RECORDS, Sealer
from services.common.db import Database
from services.common.messages import (
    AffectedRecordMessage,
    RecordWithdrawnMessage,
    new_message_id,
    record_sealing_context,
)
from services.common.topics import AFFECTED_RECORDS
from services.intake import metrics, store
from services.intake.models import Feed
from services.intake.parsing import FeedFormat, Item, ParseError, iter_feed
from services.intake.settings import IntakeSettings
from services.intake.validation import Problem, validate_record

# Fields that travel in clear beside the sealed ones: routing and counting need them.
_CLEAR_FIELDS = ("source_record_id", "data_categories", "document_count", "preferred_language")


class TooManyRecords(Exception):
    """The request holds more records than one request may carry (nothing is stored)."""


class CsvHeaderMissing(Exception):
    """A CSV feed whose first row is not a header row (nothing is stored, not even a problem:
    the row is most likely a person's)."""


class IdempotencyKeyReused(Exception):
    """The agency used this Idempotency-Key for a feed of another incident."""


@dataclass
class FeedOutcome:
    feed: Feed
    problems: list[Problem] = field(default_factory=list)  # the first N, for the receipt
    # Rejected records by their first error's code, for the metrics (a new feed only).
    rejections: Counter[str] | None = None


@dataclass
class _Counts:
    received: int = 0
    accepted: int = 0
    unchanged: int = 0
    rejected: int = 0
    warnings: int = 0


async def accept_feed(db: Database, sealer: Sealer, settings: IntakeSettings, *, incident_id: str,
                      agency_id: str, fmt: FeedFormat, body: BinaryIO,
                      idempotency_key: str | None) -> FeedOutcome:
    """Store a request's feed (its body spooled in `body`) and return what its receipt shows."""
    await asyncio.to_thread(sealer.ensure, incident_id, RECORDS)  # the incident's data key first
    try:
        outcome = await db.run(
            ingest_feed, sealer, incident_id=incident_id, agency_id=agency_id, fmt=fmt,
            items=iter_feed(body, fmt), idempotency_key=idempotency_key,
            chunk_size=settings.store_chunk_records, max_records=settings.max_records_per_request,
            receipt_problem_limit=settings.receipt_problem_limit,
        )
        _count(outcome)
        return outcome
    except store.IdempotencyKeyTaken:
        # A concurrent request with the same Idempotency-Key won: replay its receipt.
        replayed = await db.run(replay, incident_id, agency_id, idempotency_key,
                                settings.receipt_problem_limit)
        if replayed is None:
            raise
        return replayed


def _count(outcome: FeedOutcome) -> None:
    """Metrics of a committed new feed (a replayed receipt counts nothing twice)."""
    if outcome.rejections is None:
        return
    feed = outcome.feed
    metrics.FEED_RECORDS.observe(feed.received)
    for kind, n in (("accepted", feed.accepted), ("unchanged", feed.unchanged),
                    ("rejected", feed.rejected)):
        if n:
            metrics.RECORDS.labels(outcome=kind).inc(n)
    for reason, n in outcome.rejections.items():
        metrics.REJECTED.labels(reason=reason).inc(n)


def replay(session: Session, incident_id: str, agency_id: str, idempotency_key: str,
           problem_limit: int) -> FeedOutcome | None:
    """The feed this agency already sent with this Idempotency-Key, or None."""
    feed = store.feed_by_idempotency_key(session, agency_id, idempotency_key)
    if feed is None:
        return None
    if feed.incident_id != incident_id:
        raise IdempotencyKeyReused()
    return FeedOutcome(feed, store.first_problems(session, feed.feed_id, problem_limit))


def stored_outcome(session: Session, feed_id: str, problem_limit: int) -> FeedOutcome:
    """A stored feed and its first problems (the caller has checked that it exists)."""
    feed = store.get_feed(session, feed_id)
    if feed is None:
        raise LookupError("no such feed")
    return FeedOutcome(feed, store.first_problems(session, feed_id, problem_limit))


def ingest_feed(
    session: Session,
    sealer: Sealer,
    *,
    incident_id: str,
    agency_id: str,
    fmt: str,
    items: Iterable[Item],
    idempotency_key: str | None,
    chunk_size: int,
    max_records: int,
    receipt_problem_limit: int,
) -> FeedOutcome:
    """Validate and store one request's records in the session's transaction. `items` yields
    (line, raw record) or (line, ParseError) for lines the parser could not read."""
    feed = store.add_feed(session, f"feed-{uuid.uuid4().hex[:24]}", incident_id, agency_id,
                          idempotency_key, fmt)
    store.lock_agency_records(session, incident_id, agency_id)
    outcome = FeedOutcome(feed, rejections=Counter())
    counts = _Counts()
    now = utcnow()
    for chunk in chunks(items, chunk_size):
        counts.received += len(chunk)
        if counts.received > max_records:
            raise TooManyRecords()
        clean, problems = _validate(chunk, counts, outcome.rejections)
        _store_versions(session, sealer, feed, counts, clean, now)
        problems = store.add_problems(session, feed.feed_id, problems)
        room = receipt_problem_limit - len(outcome.problems)
        outcome.problems.extend(problems[: max(room, 0)])
    store.set_feed_counts(session, feed, **dataclasses.asdict(counts))
    return outcome


def _validate(chunk: list[Item], counts: _Counts, rejections: Counter[str]
              ) -> tuple[list[dict], list[Problem]]:
    clean: list[dict] = []
    problems: list[Problem] = []
    for line, item in chunk:
        if isinstance(item, ParseError):
            if item.code == "csv.header_missing":
                raise CsvHeaderMissing()  # the transaction, with the feed row, rolls back
            problems.append(item.to_problem())
            counts.rejected += 1
            rejections[item.code] += 1
            continue
        result = validate_record(item, line)
        if result.problems:
            problems.extend(result.problems)
            if result.record is not None:
                counts.warnings += sum(1 for p in result.problems if p.severity == "warning")
        if result.record is None:
            counts.rejected += 1
            rejections[next((p.code for p in result.problems if p.severity == "error"),
                            "record.invalid")] += 1
            continue
        clean.append(result.record)
    return clean, problems


def _store_versions(session: Session, sealer: Sealer, feed: Feed, counts: _Counts,
                    clean: list[dict], now: datetime) -> None:
    """Seal and store the chunk's new and changed records, each with its outbox message."""
    if not clean:
        return
    latest = store.latest_versions(session, feed.incident_id, feed.agency_id,
                                   [r["source_record_id"] for r in clean])
    versions: list[store.RecordVersion] = []
    messages: list[store.OutboxRow] = []
    incident_id, agency_id, feed_id = feed.incident_id, feed.agency_id, feed.feed_id
    received_at = now.isoformat().replace("+00:00", "Z")
    for record in clean:
        srid = record["source_record_id"]
        fingerprint = sealer.fingerprint(record, incident_id=incident_id)
        previous = latest.get(srid)
        if previous is not None and previous.fingerprint == fingerprint and not previous.withdrawn:
            counts.unchanged += 1
            continue
        version = previous.version + 1 if previous else 1
        latest[srid] = store.LatestVersion(version, fingerprint, False)
        personal = {k: v for k, v in record.items() if k not in _CLEAR_FIELDS}
        sealed = sealer.seal(personal, record_sealing_context(incident_id, agency_id, srid, version),
                             incident_id=incident_id, purpose=RECORDS)
        # The message is built as a dict (pydantic per record costs more than sealing it);
        # the first one of each chunk is checked against the contract model.
        payload = orjson.dumps({
            "schema_version": 1, "message_id": new_message_id(), "type": "affected-record",
            "incident_id": incident_id, "agency_id": agency_id, "source_record_id": srid,
            "record_version": version, "feed_id": feed_id, "received_at": received_at,
            "data_categories": record.get("data_categories") or [],
            "document_count": record.get("document_count"),
            "preferred_language": record.get("preferred_language") or "en",
            "on_hold": bool(record.get("hold")), "sealed": sealed,
        })
        if not messages:
            AffectedRecordMessage.model_validate_json(payload)
        versions.append(store.RecordVersion(incident_id, agency_id, srid, version, fingerprint,
                                            sealed, feed_id, now))
        messages.append(store.OutboxRow(AFFECTED_RECORDS.name, incident_id, payload, now))
    counts.accepted += len(versions)
    store.add_record_versions(session, versions)
    store.enqueue_many(session, messages)


def withdraw_record(session: Session, incident_id: str, agency_id: str, source_record_id: str) -> bool | None:
    """Withdraw a record sent by mistake. None: no such record; False: already withdrawn."""
    store.lock_agency_records(session, incident_id, agency_id)
    latest = store.latest_versions(session, incident_id, agency_id, [source_record_id]).get(source_record_id)
    if latest is None:
        return None
    if latest.withdrawn:
        return False
    now = utcnow()
    store.withdraw_record(session, incident_id, agency_id, source_record_id, now)
    # The version withdrawn: a record's versions and withdrawals are one sequence, so a
    # consumer replaying the topic never applies this withdrawal over a later re-send.
    message = RecordWithdrawnMessage(incident_id=incident_id, agency_id=agency_id,
                                     source_record_id=source_record_id,
                                     record_version=latest.version, withdrawn_at=now)
    store.enqueue(session, AFFECTED_RECORDS, incident_id, message.to_bytes())
    return True
