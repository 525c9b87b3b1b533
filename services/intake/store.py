"""Intake's data access (the DAO): every SQL statement of intake, as functions taking the
transaction's `Session` first.

They return table rows for whole entities (SQLModel instances with no relationships, never
expired on commit, so they stay plain values after the transaction) and small dataclasses or
named tuples for projections. Only functions here change rows. Bulk appends (record versions,
problems, outbox messages) use COPY on PostgreSQL, an order of magnitude faster than INSERT for
thousands of rows.

Over 400 lines because it is intake's one DAO: every statement in one place, by table group.
"""

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import NamedTuple

from sqlalchemy import case, func, insert, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from services.common import outbox
from services.common.clock import utcnow
from services.common.outbox import OutboxMessage
from services.common.topics import TopicSpec
from services.intake.models import AffectedRecord, Agency, ApiKey, Enrolment, Feed, FeedProblem, Incident
from services.intake.validation import Problem

# --- incidents, agencies and enrolment ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnrolledAgency:
    agency_id: str
    name: str
    expected: bool
    completed_at: datetime | None


def get_incident(session: Session, incident_id: str) -> Incident | None:
    return session.get(Incident, incident_id)


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    incident_id: str
    title: str
    revision: int
    dry_run: bool
    created_at: datetime
    updated_at: datetime
    agencies: int
    agencies_complete: int


def list_incidents(session: Session, limit: int) -> list[IncidentSummary]:
    """The newest incidents first, with how many agencies are enrolled and complete."""
    enrolled = (sa_select(Enrolment.incident_id, func.count().label("agencies"),
                       func.count(Enrolment.completed_at).label("complete"))
                .group_by(Enrolment.incident_id).subquery())
    rows = session.execute(
        sa_select(Incident.incident_id, Incident.title, Incident.revision, Incident.dry_run,
               Incident.created_at,
               Incident.updated_at, func.coalesce(enrolled.c.agencies, 0),
               func.coalesce(enrolled.c.complete, 0))
        .outerjoin(enrolled, enrolled.c.incident_id == Incident.incident_id)
        .order_by(Incident.created_at.desc(), Incident.incident_id).limit(limit))
    return [IncidentSummary(*row) for row in rows]


def add_incident(session: Session, incident_id: str, title: str, content: dict,
                 release_policy: dict, channel_policy: dict, dry_run: bool = False) -> Incident | None:
    """The new incident (revision 1), or None when one with this id exists."""
    if session.get(Incident, incident_id) is not None:
        return None
    incident = Incident(incident_id=incident_id, title=title, content=content,
                        release_policy=release_policy, channel_policy=channel_policy,
                        dry_run=dry_run)
    session.add(incident)
    session.flush()
    return incident


def lock_incident(session: Session, incident_id: str) -> Incident | None:
    """The incident, its row locked until the transaction ends (edits compare revisions)."""
    return session.get(Incident, incident_id, with_for_update=True)


def bump_revision(session: Session, incident: Incident) -> None:
    incident.revision += 1
    incident.updated_at = utcnow()
    session.add(incident)
    session.flush()


def set_content(session: Session, incident: Incident, content: dict) -> None:
    """Replace the incident's notice content (a new dict: the JSON column sees the change)."""
    incident.content = dict(content)
    bump_revision(session, incident)


def agency_exists(session: Session, agency_id: str) -> bool:
    return session.get(Agency, agency_id) is not None


def save_agency(session: Session, agency_id: str, name: str) -> Agency:
    """Create the agency, or rename it."""
    agency = session.get(Agency, agency_id)
    if agency is None:
        agency = Agency(agency_id=agency_id, name=name)
    else:
        agency.name = name
    session.add(agency)
    return agency


def save_enrolment(session: Session, incident_id: str, agency_id: str, expected: bool) -> Enrolment:
    """Enrol the agency in the incident, or change whether it is expected."""
    enrolment = session.get(Enrolment, (incident_id, agency_id))
    if enrolment is None:
        enrolment = Enrolment(incident_id=incident_id, agency_id=agency_id)
    enrolment.expected = expected
    session.add(enrolment)
    return enrolment


def enrolled_agencies(session: Session, incident_id: str) -> list[EnrolledAgency]:
    """The incident's agencies, by agency id."""
    rows = session.exec(
        select(Enrolment, Agency)
        .join(Agency, Agency.agency_id == Enrolment.agency_id)
        .where(Enrolment.incident_id == incident_id)
        .order_by(Enrolment.agency_id)
    ).all()
    return [EnrolledAgency(a.agency_id, a.name, e.expected, e.completed_at) for e, a in rows]


def record_completion(session: Session, incident_id: str, agency_id: str, record_count: int) -> Enrolment:
    enrolment = session.get(Enrolment, (incident_id, agency_id))
    if enrolment is None:
        raise LookupError("the agency is not enrolled in the incident")
    enrolment.completed_at = utcnow()
    enrolment.completed_record_count = record_count
    session.add(enrolment)
    return enrolment


class Access(Enum):
    """What an agency may see of an incident (and one of its feeds). An incident the agency is
    not enrolled in is NO_INCIDENT, exactly as one that does not exist: no existence oracle."""

    OK = "ok"
    NO_INCIDENT = "no-incident"
    NO_FEED = "no-feed"  # no such feed, or not this agency's in this incident


def agency_access(session: Session, incident_id: str, agency_id: str, feed_id: str | None = None) -> Access:
    # One lookup either way (an enrolment implies its incident), so timing tells nothing either.
    if session.get(Enrolment, (incident_id, agency_id)) is None:
        return Access.NO_INCIDENT
    if feed_id is not None:
        feed = session.get(Feed, feed_id)
        if feed is None or feed.agency_id != agency_id or feed.incident_id != incident_id:
            return Access.NO_FEED
    return Access.OK


# --- API keys -----------------------------------------------------------------------------------


def add_api_key(session: Session, agency_id: str, key_id: str, secret_sha256: str) -> None:
    session.add(ApiKey(key_id=key_id, agency_id=agency_id, secret_sha256=secret_sha256))


def get_api_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def revoke_api_key(session: Session, agency_id: str, key_id: str) -> bool:
    """False when the agency has no such key. Revoking again keeps the first revocation time."""
    row = session.get(ApiKey, key_id)
    if row is None or row.agency_id != agency_id:
        return False
    row.revoked_at = row.revoked_at or utcnow()
    session.add(row)
    return True


# --- feeds and their problems -------------------------------------------------------------------


class IdempotencyKeyTaken(Exception):
    """Another feed of this agency holds the Idempotency-Key (a concurrent request committed it
    first). The transaction is spoilt: let it roll back and look the other feed up."""


def add_feed(session: Session, feed_id: str, incident_id: str, agency_id: str,
             idempotency_key: str | None, fmt: str) -> Feed:
    feed = Feed(feed_id=feed_id, incident_id=incident_id, agency_id=agency_id,
                idempotency_key=idempotency_key, format=fmt)
    session.add(feed)
    try:
        session.flush()
    except IntegrityError as exc:
        if idempotency_key is None:
            raise
        raise IdempotencyKeyTaken() from exc
    return feed


def set_feed_counts(session: Session, feed: Feed, *, received: int, accepted: int, unchanged: int,
                    rejected: int, warnings: int) -> None:
    feed.received, feed.accepted, feed.unchanged = received, accepted, unchanged
    feed.rejected, feed.warnings = rejected, warnings
    session.add(feed)


def get_feed(session: Session, feed_id: str) -> Feed | None:
    return session.get(Feed, feed_id)


def feed_by_idempotency_key(session: Session, agency_id: str, idempotency_key: str) -> Feed | None:
    return session.exec(select(Feed).where(
        Feed.agency_id == agency_id, Feed.idempotency_key == idempotency_key)).first()


_PROBLEM_COLUMNS = ("feed_id", "line", "source_record_id", "field", "severity", "code", "message")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _fit(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if not value.isprintable():
        value = _UNPRINTABLE.sub("?", value)
    return value[:limit]


def _storable_problem(p: Problem) -> Problem:
    field_name, srid = _fit(p.field, 64), _fit(p.source_record_id, 128)
    if field_name == p.field and srid == p.source_record_id:
        return p
    return dataclasses.replace(p, field=field_name, source_record_id=srid)


def add_problems(session: Session, feed_id: str, problems: Sequence[Problem]) -> list[Problem]:
    """Store a feed's problems; returns them as stored. A problem's field name and record id
    come from the agency's input (unknown keys): control characters and lone surrogates become
    '?' and both are cut to their columns, so a strange key can never fail the whole feed."""
    stored = [_storable_problem(p) for p in problems]
    _append(session, FeedProblem, _PROBLEM_COLUMNS, [
        (feed_id, p.line, p.source_record_id, p.field, p.severity, p.code, p.message) for p in stored
    ])
    return stored


def _problem(row: FeedProblem) -> Problem:
    return Problem(row.severity, row.line, row.source_record_id, row.field, row.code, row.message)


def first_problems(session: Session, feed_id: str, limit: int) -> list[Problem]:
    """The feed's first problems in the order they were found (what its receipt shows)."""
    rows = session.exec(select(FeedProblem).where(FeedProblem.feed_id == feed_id)
                        .order_by(FeedProblem.id).limit(limit)).all()
    return [_problem(r) for r in rows]


@dataclass(frozen=True, slots=True)
class ProblemsPage:
    problems: list[Problem]
    next_after_line: int | None  # None: this is the last page


def problems_page(session: Session, feed_id: str, after_line: int, limit: int) -> ProblemsPage:
    """Up to `limit` problems on lines after `after_line`, by line. One line's problems are never
    split across pages (a page holds more than `limit` only when one line has more)."""
    query = (select(FeedProblem).where(FeedProblem.feed_id == feed_id)
             .order_by(FeedProblem.line, FeedProblem.id))
    rows = session.exec(query.where(FeedProblem.line > after_line).limit(limit + 1)).all()
    page = list(rows[:limit])
    if len(rows) <= limit:
        return ProblemsPage([_problem(r) for r in page], None)
    last_line = page[-1].line
    whole_lines = [p for p in page if p.line < last_line]
    if not whole_lines:  # one line has more problems than a page holds: it comes whole
        whole_lines = list(session.exec(query.where(FeedProblem.line == last_line)).all())
    last = whole_lines[-1].line
    more = session.exec(select(FeedProblem.id).where(
        FeedProblem.feed_id == feed_id, FeedProblem.line > last).limit(1)).first() is not None
    return ProblemsPage([_problem(r) for r in whole_lines], last if more else None)


# --- affected records and their versions --------------------------------------------------------


def lock_agency_records(session: Session, incident_id: str, agency_id: str) -> None:
    """Serialise writers of one agency's records in one incident (feeds, withdrawals,
    completion) for the rest of the transaction, so two concurrent feeds never race for the
    same next version. Other agencies and incidents are not blocked."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                        {"k": f"intake-records|{incident_id}|{agency_id}"})


class LatestVersion(NamedTuple):
    version: int
    fingerprint: str
    withdrawn: bool


def latest_versions(session: Session, incident_id: str, agency_id: str,
                    source_record_ids: Sequence[str]) -> dict[str, LatestVersion]:
    """source_record_id → its latest stored version, for those the agency has sent."""
    rows = session.exec(
        select(AffectedRecord.source_record_id, AffectedRecord.version, AffectedRecord.fingerprint,
               AffectedRecord.withdrawn_at)
        .where(AffectedRecord.incident_id == incident_id, AffectedRecord.agency_id == agency_id,
               AffectedRecord.source_record_id.in_(source_record_ids))
    ).all()
    latest: dict[str, LatestVersion] = {}
    for srid, version, fingerprint, withdrawn_at in rows:
        if srid not in latest or version > latest[srid].version:
            latest[srid] = LatestVersion(version, fingerprint, withdrawn_at is not None)
    return latest


class RecordOutcome(NamedTuple):
    """Intake's part of an agency's reconciliation (services/common/reconciliation.py)."""

    source_record_id: str
    state: str  # accepted | withdrawn | rejected
    record_version: int | None
    rejection_codes: list[str]


def record_outcomes(session: Session, incident_id: str, agency_id: str, after: str,
                    limit: int) -> tuple[list[RecordOutcome], str | None]:
    """The agency's records after `after` by source_record_id: accepted (newest version) or
    withdrawn, and those only ever rejected (with their error codes); the next cursor or None."""
    mine = (AffectedRecord.incident_id == incident_id, AffectedRecord.agency_id == agency_id)
    # One walk of the lookup index: each record's newest version, and its newest not withdrawn
    # (a withdrawal marks every version; a version sent after it is live again).
    accepted = session.execute(
        sa_select(AffectedRecord.source_record_id, func.max(AffectedRecord.version),
                  func.max(case((AffectedRecord.withdrawn_at.is_(None), AffectedRecord.version))))
        .where(*mine, AffectedRecord.source_record_id > after)
        .group_by(AffectedRecord.source_record_id).order_by(AffectedRecord.source_record_id)
        .limit(limit + 1)).all()
    ever_accepted = sa_select(AffectedRecord.source_record_id).where(
        *mine, AffectedRecord.source_record_id == FeedProblem.source_record_id)
    # Past a full page of accepted records no rejected one can make this page.
    bound = (FeedProblem.source_record_id <= accepted[-1][0],) if len(accepted) > limit else ()
    rejected_ids = list(session.scalars(
        sa_select(FeedProblem.source_record_id).join(Feed, Feed.feed_id == FeedProblem.feed_id)
        .where(Feed.incident_id == incident_id, Feed.agency_id == agency_id,
               FeedProblem.severity == "error", FeedProblem.source_record_id > after, *bound,
               ~ever_accepted.exists())
        .group_by(FeedProblem.source_record_id).order_by(FeedProblem.source_record_id)
        .limit(limit + 1)))
    latest = {srid: LatestVersion(newest, "", live != newest) for srid, newest, live in accepted}
    ids = sorted(latest.keys() | set(rejected_ids))
    page, more = ids[:limit], len(ids) > limit
    codes: dict[str, set[str]] = {}
    rejected = [i for i in page if i not in latest]
    if rejected:
        for srid, code in session.execute(
                sa_select(FeedProblem.source_record_id, FeedProblem.code)
                .join(Feed, Feed.feed_id == FeedProblem.feed_id)
                .where(Feed.incident_id == incident_id, Feed.agency_id == agency_id,
                       FeedProblem.severity == "error", FeedProblem.source_record_id.in_(rejected))):
            codes.setdefault(srid, set()).add(code)
    outcomes = [
        RecordOutcome(i, "withdrawn" if latest[i].withdrawn else "accepted", latest[i].version, [])
        if i in latest else RecordOutcome(i, "rejected", None, sorted(codes.get(i, ())))
        for i in page]
    return outcomes, (page[-1] if more else None)


class RecordVersion(NamedTuple):
    """One new version of an affected record, in `affected_record`'s column order."""

    incident_id: str
    agency_id: str
    source_record_id: str
    version: int
    fingerprint: str
    sealed: str
    feed_id: str
    received_at: datetime


def add_record_versions(session: Session, versions: Sequence[RecordVersion]) -> None:
    _append(session, AffectedRecord, RecordVersion._fields, versions)


def withdraw_record(session: Session, incident_id: str, agency_id: str, source_record_id: str,
                    at: datetime) -> None:
    """Mark every version of the record withdrawn (versions already withdrawn keep their time)."""
    session.execute(
        update(AffectedRecord)
        .where(AffectedRecord.incident_id == incident_id, AffectedRecord.agency_id == agency_id,
               AffectedRecord.source_record_id == source_record_id,
               AffectedRecord.withdrawn_at.is_(None))
        .values(withdrawn_at=at)
    )


def live_record_count(session: Session, incident_id: str, agency_id: str) -> int:
    """Distinct records the agency has sent for the incident and not withdrawn."""
    return session.exec(
        select(func.count(func.distinct(AffectedRecord.source_record_id))).where(
            AffectedRecord.incident_id == incident_id,
            AffectedRecord.agency_id == agency_id,
            AffectedRecord.withdrawn_at.is_(None),
        )
    ).one()


def withdrawn_record_count(session: Session, incident_id: str, agency_id: str) -> int:
    """Distinct records the agency has sent for the incident and withdrawn (a record sent
    again after its withdrawal has a version not withdrawn: it is live)."""
    sent = session.exec(
        select(func.count(func.distinct(AffectedRecord.source_record_id))).where(
            AffectedRecord.incident_id == incident_id, AffectedRecord.agency_id == agency_id)
    ).one()
    return sent - live_record_count(session, incident_id, agency_id)


# --- retention: close and purge ------------------------------------------------------------------


def close_incident(session: Session, incident_id: str, now: datetime,
                   purge_after: datetime) -> Incident | None:
    """Close it (once: closing again keeps the first close and its purge time); None if none."""
    incident = session.get(Incident, incident_id, with_for_update=True)
    if incident is None:
        return None
    if incident.closed_at is None:
        incident.closed_at, incident.purge_after = now, purge_after
        session.add(incident)
    return incident


def is_closed(session: Session, incident_id: str) -> bool:
    incident = session.get(Incident, incident_id)
    return incident is not None and incident.closed_at is not None


def incidents_due_for_purge(session: Session, now: datetime, limit: int = 10) -> list[str]:
    return list(session.exec(select(Incident.incident_id).where(
        Incident.purge_after.is_not(None), Incident.purge_after <= now,
        Incident.purged_at.is_(None)).order_by(Incident.purge_after).limit(limit)).all())


def purge_incident_rows(session: Session, incident_id: str, now: datetime,
                        topic: TopicSpec) -> dict | None:
    """Delete what holds personal data (sealed versions, problems, unpublished messages on
    `topic`); keep the incident, its enrolments and feeds (who sent what when, the counts).
    The counts of what went, for the audit trail; None if another replica purged it first."""
    incident = session.get(Incident, incident_id, with_for_update=True)
    if incident is None or incident.purged_at is not None:
        return None
    records = session.exec(select(func.count(func.distinct(
        AffectedRecord.agency_id + "/" + AffectedRecord.source_record_id))).where(
        AffectedRecord.incident_id == incident_id)).one()
    versions = session.execute(AffectedRecord.__table__.delete().where(
        AffectedRecord.__table__.c.incident_id == incident_id)).rowcount
    feed_ids = select(Feed.feed_id).where(Feed.incident_id == incident_id)
    problems = session.execute(FeedProblem.__table__.delete().where(
        FeedProblem.__table__.c.feed_id.in_(feed_ids))).rowcount
    outbox_table = OutboxMessage.__table__
    unpublished = session.execute(outbox_table.delete().where(
        outbox_table.c.topic == topic.name, outbox_table.c.key == incident_id)).rowcount
    feeds = session.exec(select(func.count()).select_from(Feed).where(
        Feed.incident_id == incident_id)).one()
    incident.purged_at = now
    session.add(incident)
    return {"records": records, "versions_deleted": versions, "problems_deleted": problems,
            "unpublished_messages_deleted": unpublished, "feeds_kept": feeds}


# --- the outbox ---------------------------------------------------------------------------------


class OutboxRow(NamedTuple):
    topic: str  # the logical topic name (TopicSpec.name)
    key: str
    payload: bytes
    created_at: datetime


def enqueue(session: Session, topic: TopicSpec, key: str, payload: bytes | None) -> None:
    outbox.enqueue(session, topic, key, payload)


def enqueue_many(session: Session, rows: Sequence[OutboxRow]) -> None:
    _append(session, OutboxMessage, OutboxRow._fields, rows)


# --- bulk appends -------------------------------------------------------------------------------


def _append(session: Session, table: type[SQLModel], columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Append rows in the session's transaction: COPY on PostgreSQL, executemany elsewhere."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        raw = session.connection().connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(
            f"COPY {table.__tablename__} ({', '.join(columns)}) FROM STDIN"  # noqa: S608 - fixed names
        ) as copy:
            for row in rows:
                copy.write_row(row)
    else:
        session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


# --- the Privacy Commissioner's report (services/common/report.py) ---------------------------


@dataclass(frozen=True, slots=True)
class CommissionerCounts:
    incident: dict[str, int]
    by_agency: dict[str, dict[str, int]]
    milestones: list[tuple[str | None, str, datetime]]  # (agency or None, milestone, at)


def commissioner_counts(session: Session, incident_id: str) -> CommissionerCounts | None:
    """Records received, accepted, unchanged and rejected (by problem code), and withdrawn, per
    agency and in all; when the incident was made, each agency's first feed and completion."""
    incident = session.get(Incident, incident_id)
    if incident is None:
        return None
    by_agency: dict[str, dict[str, int]] = {}
    feed, problem, record = Feed.__table__, FeedProblem.__table__, AffectedRecord.__table__
    milestones: list[tuple[str | None, str, datetime]] = [(None, "incident.created", incident.created_at)]
    for agency_id, n, received, accepted, unchanged, rejected, first in session.execute(
            sa_select(feed.c.agency_id, func.count(), func.sum(feed.c.received),
                      func.sum(feed.c.accepted), func.sum(feed.c.unchanged),
                      func.sum(feed.c.rejected), func.min(feed.c.created_at))
            .where(feed.c.incident_id == incident_id).group_by(feed.c.agency_id)):
        by_agency[agency_id] = {"feeds": n, "records.received": int(received or 0),
                                "records.accepted": int(accepted or 0),
                                "records.unchanged": int(unchanged or 0),
                                "records.rejected": int(rejected or 0)}
        milestones.append((agency_id, "feed.first", first))
    for agency_id, code, n in session.execute(
            sa_select(feed.c.agency_id, problem.c.code, func.count())
            .join(feed, feed.c.feed_id == problem.c.feed_id)
            .where(feed.c.incident_id == incident_id, problem.c.severity == "error")
            .group_by(feed.c.agency_id, problem.c.code)):
        by_agency.setdefault(agency_id, {})[f"rejected.{code}"] = n
    for agency_id, n in session.execute(
            sa_select(record.c.agency_id, func.count(record.c.source_record_id.distinct()))
            .where(record.c.incident_id == incident_id, record.c.withdrawn_at.is_not(None))
            .group_by(record.c.agency_id)):
        by_agency.setdefault(agency_id, {})["records.withdrawn"] = n
    for enrolment in session.exec(select(Enrolment).where(Enrolment.incident_id == incident_id)):
        by_agency.setdefault(enrolment.agency_id, {})
        if enrolment.completed_at is not None:
            milestones.append((enrolment.agency_id, "contribution.complete", enrolment.completed_at))
    if incident.closed_at is not None:
        milestones.append((None, "incident.closed", incident.closed_at))
    totals: dict[str, int] = {}
    for counts in by_agency.values():
        for measure, value in counts.items():
            totals[measure] = totals.get(measure, 0) + value
    totals["agencies"] = len(by_agency)
    return CommissionerCounts(totals, by_agency, sorted(milestones, key=lambda m: m[2]))
