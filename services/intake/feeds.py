"""Accepting a feed: validate each record, store every new or changed version sealed, and
enqueue its affected-record message — all in one transaction, so 202 means durable.

Re-sending the same (agency, incident, source_record_id) with identical content is a no-op;
changed content becomes the next version of that record.
"""

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from sqlalchemy import func, insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.common import outbox
from services.common.crypto import Sealer
from services.common.messages import (
    AffectedRecordMessage,
    RecordWithdrawnMessage,
    record_sealing_context,
    utcnow,
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
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        session.add(feed)
        session.flush()
        for chunk in _chunks(items, chunk_size):
            feed.received += len(chunk)
            if feed.received > max_records:
                raise TooManyRecords()
            clean: list[tuple[dict, str]] = []
            problems: list[Problem] = []
            for line, item in chunk:
                if isinstance(item, ParseError):
                    problems.append(item.to_problem())
                    feed.rejected += 1
                    continue
                result = validate_record(item, line)
                problems.extend(result.problems)
                if result.record is None:
                    feed.rejected += 1
                    continue
                feed.warnings += sum(1 for p in result.problems if p.severity == "warning")
                clean.append((result.record, sealer.fingerprint(result.record)))
            _store_chunk(session, sealer, feed, clean, now)
            _store_problems(session, feed.feed_id, problems)
            room = receipt_problem_limit - len(outcome.problems)
            outcome.problems.extend(problems[: max(room, 0)])
        session.add(feed)
        session.commit()
    return outcome


def _store_chunk(
    session: Session, sealer: Sealer, feed: Feed, clean: list[tuple[dict, str]], now
) -> None:  # noqa: ANN001
    if not clean:
        return
    latest = _latest_versions(
        session, feed.incident_id, feed.agency_id, [r["source_record_id"] for r, _ in clean]
    )
    record_rows: list[dict] = []
    outbox_rows: list[dict] = []
    for record, fingerprint in clean:
        srid = record["source_record_id"]
        previous = latest.get(srid)
        if previous is not None and previous[1] == fingerprint and not previous[2]:
            feed.unchanged += 1
            continue
        version = previous[0] + 1 if previous else 1
        latest[srid] = (version, fingerprint, False)
        personal = {k: v for k, v in record.items() if k not in _CLEAR_FIELDS}
        sealed = sealer.seal(
            personal, record_sealing_context(feed.incident_id, feed.agency_id, srid, version)
        )
        message = AffectedRecordMessage(
            incident_id=feed.incident_id,
            agency_id=feed.agency_id,
            source_record_id=srid,
            record_version=version,
            feed_id=feed.feed_id,
            received_at=now,
            data_categories=record.get("data_categories") or [],
            document_count=record.get("document_count") or 0,
            preferred_language=record.get("preferred_language") or "en",
            on_hold=bool(record.get("hold")),
            sealed=sealed,
        )
        record_rows.append(
            {
                "incident_id": feed.incident_id,
                "agency_id": feed.agency_id,
                "source_record_id": srid,
                "version": version,
                "fingerprint": fingerprint,
                "sealed": sealed,
                "feed_id": feed.feed_id,
                "received_at": now,
            }
        )
        outbox_rows.append(
            {"topic": AFFECTED_RECORDS.name, "key": feed.incident_id,
             "payload": message.to_bytes(), "created_at": now}
        )
        feed.accepted += 1
    if record_rows:
        session.execute(insert(AffectedRecord), record_rows)
        session.execute(insert(OutboxMessage), outbox_rows)


def _store_problems(session: Session, feed_id: str, problems: list[Problem]) -> None:
    if problems:
        session.execute(
            insert(FeedProblem),
            [
                {"feed_id": feed_id, "line": p.line, "source_record_id": p.source_record_id,
                 "field": p.field, "severity": p.severity, "code": p.code, "message": p.message}
                for p in problems
            ],
        )


def withdraw_record(session: Session, incident_id: str, agency_id: str, source_record_id: str) -> bool | None:
    """Withdraw a record sent by mistake. None: no such record; False: already withdrawn."""
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
