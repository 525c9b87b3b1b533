"""Accepting a feed: validate each record, store every new or changed version sealed, and
enqueue its affected-record message — all in one transaction, so 202 means durable.

Re-sending the same (agency, incident, source_record_id) with identical content is a no-op;
changed content becomes the next version of that record.
"""

import dataclasses
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import orjson
from sqlalchemy import func, insert, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.common import outbox
from services.common.clock import utcnow
from services.common.crypto import Sealer
from services.common.messages import (
    AffectedRecordMessage,
    RecordWithdrawnMessage,
    new_message_id,
    record_sealing_context,
)
from services.common.outbox import OutboxMessage
from services.common.topics import AFFECTED_RECORDS
from services.intake.models import AffectedRecord, Feed, FeedProblem
from services.intake.parsing import ParseError
from services.intake.validation import Problem, validate_record

# Fields that travel in clear beside the sealed ones: routing and counting need them.
_CLEAR_FIELDS = ("source_record_id", "data_categories", "document_count", "preferred_language")


class TooManyRecords(Exception):
    """The request holds more records than one request may carry."""


@dataclass
class FeedOutcome:
    feed: Feed
    problems: list[Problem] = field(default_factory=list)  # the first N, for the receipt


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _latest_versions(
    session: Session, incident_id: str, agency_id: str, source_record_ids: list[str]
) -> dict[str, tuple[int, str, bool]]:
    """source_record_id → (latest version, its fingerprint, withdrawn?)."""
    rows = session.exec(
        select(
            AffectedRecord.source_record_id,
            AffectedRecord.version,
            AffectedRecord.fingerprint,
            AffectedRecord.withdrawn_at,
        ).where(
            AffectedRecord.incident_id == incident_id,
            AffectedRecord.agency_id == agency_id,
            AffectedRecord.source_record_id.in_(source_record_ids),
        )
    ).all()
    latest: dict[str, tuple[int, str, bool]] = {}
    for srid, version, fingerprint, withdrawn_at in rows:
        if srid not in latest or version > latest[srid][0]:
            latest[srid] = (version, fingerprint, withdrawn_at is not None)
    return latest


@dataclass
class _Counts:
    received: int = 0
    accepted: int = 0
    unchanged: int = 0
    rejected: int = 0
    warnings: int = 0


_RECORD_COLUMNS = ("incident_id", "agency_id", "source_record_id", "version", "fingerprint", "sealed",
                   "feed_id", "received_at")
_OUTBOX_COLUMNS = ("topic", "key", "payload", "created_at")
_PROBLEM_COLUMNS = ("feed_id", "line", "source_record_id", "field", "severity", "code", "message")


class _BulkWriter:
    """Appends rows to a table in the session's transaction: COPY on PostgreSQL (an order of
    magnitude faster than INSERT for thousands of rows), executemany INSERT elsewhere."""

    def __init__(self, session: Session):
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"

    def write(self, table, columns: tuple[str, ...], rows: list[tuple]) -> None:  # noqa: ANN001
        if not rows:
            return
        if self.postgres:
            raw = self.session.connection().connection.driver_connection
            with raw.cursor() as cursor, cursor.copy(
                f"COPY {table.__tablename__} ({', '.join(columns)}) FROM STDIN"  # noqa: S608 - fixed names
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            self.session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


def ingest_feed(
    engine: Engine,
    sealer: Sealer,
    *,
    incident_id: str,
    agency_id: str,
    fmt: str,
    items: Iterable[tuple[int, object]],
    idempotency_key: str | None,
    chunk_size: int,
    max_records: int,
    receipt_problem_limit: int,
) -> FeedOutcome:
    """Validate and store one request's records. `items` yields (line, raw record) or
    (line, ParseError) for lines the parser could not read."""
    feed = Feed(
        feed_id=f"feed-{uuid.uuid4().hex[:24]}",
        incident_id=incident_id,
        agency_id=agency_id,
        idempotency_key=idempotency_key,
        format=fmt,
    )
    outcome = FeedOutcome(feed)
    counts = _Counts()
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        session.add(feed)
        session.flush()
        lock_agency_records(session, incident_id, agency_id)
        writer = _BulkWriter(session)
        for chunk in _chunks(items, chunk_size):
            counts.received += len(chunk)
            if counts.received > max_records:
                raise TooManyRecords()
            clean: list[dict] = []
            problems: list[Problem] = []
            for line, item in chunk:
                if isinstance(item, ParseError):
                    problems.append(item.to_problem())
                    counts.rejected += 1
                    continue
                result = validate_record(item, line)
                if result.problems:
                    problems.extend(result.problems)
                    if result.record is not None:
                        counts.warnings += sum(1 for p in result.problems if p.severity == "warning")
                if result.record is None:
                    counts.rejected += 1
                    continue
                clean.append(result.record)
            _store_chunk(session, writer, sealer, feed, counts, clean, now)
            problems = [_safe_problem(p) for p in problems]
            _store_problems(writer, feed.feed_id, problems)
            room = receipt_problem_limit - len(outcome.problems)
            outcome.problems.extend(problems[: max(room, 0)])
        for name in ("received", "accepted", "unchanged", "rejected", "warnings"):
            setattr(feed, name, getattr(counts, name))
        session.add(feed)
        session.commit()
    return outcome


def _store_chunk(session: Session, writer: _BulkWriter, sealer: Sealer, feed: Feed, counts: _Counts,
                 clean: list[dict], now) -> None:  # noqa: ANN001
    if not clean:
        return
    latest = _latest_versions(
        session, feed.incident_id, feed.agency_id, [r["source_record_id"] for r in clean]
    )
    record_rows: list[tuple] = []
    outbox_rows: list[tuple] = []
    incident_id, agency_id, feed_id = feed.incident_id, feed.agency_id, feed.feed_id
    received_at = now.isoformat().replace("+00:00", "Z")
    for record in clean:
        srid = record["source_record_id"]
        fingerprint = sealer.fingerprint(record)
        previous = latest.get(srid)
        if previous is not None and previous[1] == fingerprint and not previous[2]:
            counts.unchanged += 1
            continue
        version = previous[0] + 1 if previous else 1
        latest[srid] = (version, fingerprint, False)
        personal = {k: v for k, v in record.items() if k not in _CLEAR_FIELDS}
        sealed = sealer.seal(personal, record_sealing_context(incident_id, agency_id, srid, version))
        # The message is built as a dict (pydantic per record costs more than sealing it);
        # the first one of each chunk is checked against the contract model.
        payload = orjson.dumps({
            "schema_version": 1, "message_id": new_message_id(), "type": "affected-record",
            "incident_id": incident_id, "agency_id": agency_id, "source_record_id": srid,
            "record_version": version, "feed_id": feed_id, "received_at": received_at,
            "data_categories": record.get("data_categories") or [],
            "document_count": record.get("document_count") or 0,
            "preferred_language": record.get("preferred_language") or "en",
            "on_hold": bool(record.get("hold")), "sealed": sealed,
        })
        if not outbox_rows:
            AffectedRecordMessage.model_validate_json(payload)
        record_rows.append((incident_id, agency_id, srid, version, fingerprint, sealed, feed_id, now))
        outbox_rows.append((AFFECTED_RECORDS.name, incident_id, payload, now))
    counts.accepted += len(record_rows)
    writer.write(AffectedRecord, _RECORD_COLUMNS, record_rows)
    writer.write(OutboxMessage, _OUTBOX_COLUMNS, outbox_rows)


_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _column(value: str | None, limit: int) -> str | None:
    """A problem's field name comes from the agency's input (unknown keys): drop control
    characters and lone surrogates and keep it within its column, so a strange key can never
    fail the whole feed."""
    if value is None:
        return None
    if not value.isprintable():
        value = _UNSTORABLE.sub("?", value)
    return value[:limit]


def _safe_problem(p: Problem) -> Problem:
    field_name, srid = _column(p.field, 64), _column(p.source_record_id, 128)
    if field_name == p.field and srid == p.source_record_id:
        return p
    return dataclasses.replace(p, field=field_name, source_record_id=srid)


def _store_problems(writer: _BulkWriter, feed_id: str, problems: list[Problem]) -> None:
    writer.write(FeedProblem, _PROBLEM_COLUMNS, [
        (feed_id, p.line, p.source_record_id, p.field, p.severity, p.code, p.message) for p in problems
    ])


def lock_agency_records(session: Session, incident_id: str, agency_id: str) -> None:
    """Serialise writers of one agency's records in one incident (feeds, withdrawals,
    completion) for the rest of the transaction, so two concurrent feeds never race for the
    same next version. Other agencies and incidents are not blocked."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                        {"k": f"intake-records|{incident_id}|{agency_id}"})


def withdraw_record(session: Session, incident_id: str, agency_id: str, source_record_id: str) -> bool | None:
    """Withdraw a record sent by mistake. None: no such record; False: already withdrawn."""
    lock_agency_records(session, incident_id, agency_id)
    latest = _latest_versions(session, incident_id, agency_id, [source_record_id])
    if source_record_id not in latest:
        return None
    if latest[source_record_id][2]:
        return False
    now = utcnow()
    session.execute(
        update(AffectedRecord)
        .where(
            AffectedRecord.incident_id == incident_id,
            AffectedRecord.agency_id == agency_id,
            AffectedRecord.source_record_id == source_record_id,
            AffectedRecord.withdrawn_at.is_(None),
        )
        .values(withdrawn_at=now)
    )
    message = RecordWithdrawnMessage(
        incident_id=incident_id, agency_id=agency_id, source_record_id=source_record_id,
        withdrawn_at=now,
    )
    outbox.enqueue(session, AFFECTED_RECORDS, incident_id, message.to_bytes())
    return True


def live_record_count(session: Session, incident_id: str, agency_id: str) -> int:
    """Distinct records the agency has sent for the incident and not withdrawn."""
    return session.exec(
        select(func.count(func.distinct(AffectedRecord.source_record_id))).where(
            AffectedRecord.incident_id == incident_id,
            AffectedRecord.agency_id == agency_id,
            AffectedRecord.withdrawn_at.is_(None),
        )
    ).one()
