"""Dedupe's data access: every SQL statement the service runs, over its own tables (models.py)
and the outbox. Functions take a Session first and return plain values or dataclasses; none
commits — the caller's transaction does (the pipeline's, or `Database.run`'s for routes).

Over 400 lines on purpose: it is the service's whole DAO — all of dedupe's SQL in one place.
"""

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime

import orjson
from sqlalchemy import String, bindparam, cast, func, insert, or_, select, update
from sqlmodel import Session

from services.common import outbox
from services.common.batching import chunks
from services.common.db import update_rows, upsert
from services.common.messages import (
    AffectedRecordMessage,
    IncidentMessage,
    NoticeHoldMessage,
    NoticeMessage,
    RecordWithdrawnMessage,
)
from services.common.topics import NOTICES
from services.dedupe.conflicts import check_decision
from services.dedupe.identity import (
    PersonMeta,
    RecordKey,
    RecordMeta,
    ReviewDecision,
    StoredIdentity,
    StoredRecord,
    intern,
)
from services.dedupe.models import (
    IncidentState,
    NoticeState,
    PartitionOwner,
    PersonState,
    RecordState,
    ReviewState,
)
from services.dedupe.notices import NoticeRecord
from services.dedupe.release import PersonView
from services.dedupe.reviews import DECIDED, ReviewChanges

_INCIDENTS = IncidentState.__table__
_RECORDS = RecordState.__table__
_PERSONS = PersonState.__table__
_REVIEWS = ReviewState.__table__
_NOTICES = NoticeState.__table__
_OWNERS = PartitionOwner.__table__
_RECORD_KEY = ["incident_id", "agency_id", "source_record_id"]


# --- incidents ---------------------------------------------------------------------------------

@dataclass(slots=True)
class Incident:
    """An incident as dedupe sees it: from incidents.v1, plus completions and release."""

    incident_id: str
    revision: int = 0
    agency_names: dict[str, str] = field(default_factory=dict)
    expected_agency_ids: list[str] = field(default_factory=list)
    release_policy: dict = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)  # agency → announced record count
    completed_withdrawn: dict[str, int] = field(default_factory=dict)  # … and withdrawn ones
    missing: dict[str, int] = field(default_factory=dict)  # agency → announced, not arrived
    partition: int | None = None
    released_at: datetime | None = None
    release_reason: str | None = None
    manual_release_requested_at: datetime | None = None


def get_incident(session: Session, incident_id: str) -> Incident | None:
    row = session.execute(
        select(_INCIDENTS).where(_INCIDENTS.c.incident_id == incident_id)).first()
    return Incident(**row._mapping) if row is not None else None


def ensure_incident(session: Session, incident_id: str) -> Incident:
    """The incident, created empty when its records (or its definition) arrive first."""
    incident = get_incident(session, incident_id)
    if incident is None:
        incident = Incident(incident_id)
        session.execute(insert(_INCIDENTS).values(**asdict(incident)))
    return incident


def incidents_on(session: Session, partitions: set[int]) -> list[Incident]:
    rows = session.execute(select(_INCIDENTS).where(_INCIDENTS.c.partition.in_(partitions))
                           .order_by(_INCIDENTS.c.incident_id))
    return [Incident(**row._mapping) for row in rows]


def save_definition(session: Session, msg: IncidentMessage) -> None:
    """Agency names, expected agencies and release policy, from an incidents.v1 revision."""
    session.execute(update(_INCIDENTS).where(_INCIDENTS.c.incident_id == msg.incident_id).values(
        revision=msg.revision,
        agency_names={a.agency_id: a.name for a in msg.agencies},
        expected_agency_ids=list(msg.expected_agency_ids),
        release_policy=msg.release_policy.model_dump(mode="json")))


def save_stream_state(session: Session, incident: Incident) -> None:
    """The partition the incident's records arrive on, and the agencies that completed."""
    session.execute(update(_INCIDENTS).where(_INCIDENTS.c.incident_id == incident.incident_id)
                    .values(partition=incident.partition, completed=incident.completed,
                            completed_withdrawn=incident.completed_withdrawn))


def save_missing(session: Session, incident_id: str, missing: dict[str, int]) -> None:
    """What the reconciliation of completions with the records seen found missing."""
    session.execute(update(_INCIDENTS).where(_INCIDENTS.c.incident_id == incident_id)
                    .values(missing=missing))


def mark_released(session: Session, incident_id: str, released_at: datetime, reason: str) -> None:
    session.execute(update(_INCIDENTS).where(_INCIDENTS.c.incident_id == incident_id)
                    .values(released_at=released_at, release_reason=reason))


def request_manual_release(session: Session, incident_id: str, now: datetime) -> Incident | None:
    """Ask the partition owner to release on its next tick; the first request's time stays."""
    incident = get_incident(session, incident_id)
    if incident is None:
        return None
    if incident.manual_release_requested_at is None:
        incident.manual_release_requested_at = now
        session.execute(update(_INCIDENTS).where(_INCIDENTS.c.incident_id == incident_id)
                        .values(manual_release_requested_at=now))
    return incident


# --- partition ownership: the fence ---------------------------------------------------------

def claim_partition(session: Session, partition: int, owner: str, now: datetime) -> int:
    """Take a partition's state over: its epoch goes up by one. Waits for any transaction
    that checked the old epoch (owner_epochs holds a share lock) to end, so everything the
    previous owner committed is visible to the claimer afterwards. Returns the new epoch."""
    values = {"partition": partition, "epoch": 1, "owner": owner, "claimed_at": now}
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = dialect_insert(_OWNERS).values(**values)
    return session.execute(statement.on_conflict_do_update(
        index_elements=["partition"],
        set_={"epoch": _OWNERS.c.epoch + 1, "owner": owner, "claimed_at": now},
    ).returning(_OWNERS.c.epoch)).scalar_one()


def owner_epochs(session: Session, partitions: set[int]) -> dict[int, int]:
    """The partitions' current epochs, share-locked to the end of the transaction: a claim
    waits until it commits, so a write checked here cannot land after a newer claim."""
    return dict(session.execute(
        select(_OWNERS.c.partition, _OWNERS.c.epoch)
        .where(_OWNERS.c.partition.in_(partitions)).with_for_update(read=True)).all())


# --- records and persons -----------------------------------------------------------------------

# The message a record's row is written whole from: a new version, or the withdrawal of a
# version never seen (a tombstone: key, version and withdrawal, no personal fields).
RecordRow = AffectedRecordMessage | RecordWithdrawnMessage


def write_records(session: Session, incident_id: str, records: dict[RecordKey, RecordMeta],
                  versions: dict[RecordKey, RecordRow], now: datetime) -> None:
    """Records whose state changed: a new version or a tombstone (`versions`) is written
    whole; the rest only move to another person or are withdrawn."""
    full, partial = [], []
    for key, meta in records.items():
        msg = versions.get(key)
        if isinstance(msg, RecordWithdrawnMessage):
            full.append({
                "incident_id": incident_id, "agency_id": msg.agency_id,
                "source_record_id": msg.source_record_id, "record_version": meta.version,
                "message_id": msg.message_id, "sealed": "", "data_categories": [],
                "document_count": 0, "preferred_language": "en", "on_hold": False,
                "updated_at": now, "person_id": None, "withdrawn": True,
                "told_version": meta.told_version,
            })
        elif msg is not None:
            full.append({
                "incident_id": incident_id, "agency_id": msg.agency_id,
                "source_record_id": msg.source_record_id, "record_version": msg.record_version,
                "message_id": msg.message_id, "sealed": msg.sealed,
                "data_categories": list(msg.data_categories),
                "document_count": msg.document_count,
                "preferred_language": msg.preferred_language, "on_hold": msg.on_hold,
                "updated_at": now, "person_id": meta.person_id, "withdrawn": meta.withdrawn,
                "told_version": meta.told_version,  # moved on: identity.apply_record
            })
        else:
            partial.append({"incident_id": incident_id, "agency_id": key[0],
                            "source_record_id": key[1], "person_id": meta.person_id,
                            "withdrawn": meta.withdrawn})
    upsert(session, RecordState, full, _RECORD_KEY)
    update_rows(session, _RECORDS, tuple(_RECORD_KEY), partial)


def write_persons(session: Session, incident_id: str, persons: dict[str, PersonMeta]) -> None:
    upsert(session, PersonState, [{
        "incident_id": incident_id, "person_id": person_id, "status": p.status,
        "first_seen_at": p.first_seen_at, "changed_at": p.changed_at, "dirty": p.dirty,
        "notice_person_id": p.notice_person_id, "notified_version": p.notified_version,
        "notified_agency_ids": sorted(p.notified_agency_ids),
        "notified_categories": sorted(p.notified_categories),
    } for person_id, p in persons.items()], ["incident_id", "person_id"])


def load_identity(session: Session, incident_id: str, records: bool = True) -> StoredIdentity:
    """Everything the incident's identity state is rebuilt from. `records` False: all but
    the records (read them with stream_records, after this)."""
    persons = {
        p.person_id: PersonMeta(
            first_seen_at=p.first_seen_at, changed_at=p.changed_at, status=p.status,
            dirty=p.dirty, notice_person_id=p.notice_person_id,
            notified_version=p.notified_version,
            notified_agency_ids=intern(frozenset(p.notified_agency_ids)),
            notified_categories=intern(frozenset(p.notified_categories)))
        for p in session.execute(select(_PERSONS).where(_PERSONS.c.incident_id == incident_id))
    }
    # Coordinators' review decisions are part of the state: the resolver gets them again.
    # Not those still pending: the next tick applies them and writes what they change.
    decisions = _decisions(session, incident_id, _REVIEWS.c.status.in_(DECIDED),
                           _REVIEWS.c.applied == True)  # noqa: E712
    issued = dict(session.execute(
        select(_NOTICES.c.person_id, func.max(_NOTICES.c.version))
        .where(_NOTICES.c.incident_id == incident_id).group_by(_NOTICES.c.person_id)).all())
    return StoredIdentity(list(stream_records(session, incident_id)) if records else [],
                          persons, decisions, issued)


def stream_records(session: Session, incident_id: str, chunk: int = 5000
                   ) -> Iterator[StoredRecord]:
    """The incident's records, read `chunk` rows at a time (a server-side cursor on
    PostgreSQL): a 400k-record incident's sealed values are never all in memory at once."""
    r = _RECORDS
    rows = session.execute(
        select(r.c.agency_id, r.c.source_record_id, r.c.record_version, r.c.person_id,
               r.c.withdrawn, r.c.on_hold, r.c.data_categories, r.c.told_lineage,
               r.c.told_version, r.c.sealed)
        .where(r.c.incident_id == incident_id)
        .execution_options(stream_results=True, yield_per=chunk))
    for row in rows:
        yield StoredRecord((row.agency_id, row.source_record_id),
                           RecordMeta(row.record_version, row.person_id, row.withdrawn,
                                      row.on_hold, tuple(row.data_categories), row.told_lineage,
                                      row.told_version),
                           row.sealed)


def incidents_with_work(session: Session, incident_ids: list[str]) -> set[str]:
    """Of these released incidents, those with something left to do: a person awaiting a
    release decision, or a review decision not yet applied."""
    if not incident_ids:
        return set()
    dirty = select(_PERSONS.c.incident_id).where(
        _PERSONS.c.incident_id.in_(incident_ids), _PERSONS.c.dirty == True)  # noqa: E712
    pending = select(_REVIEWS.c.incident_id).where(
        _REVIEWS.c.incident_id.in_(incident_ids), _REVIEWS.c.applied == False)  # noqa: E712
    return set(session.execute(dirty.union(pending)).scalars())


def live_records(session: Session, incident_id: str, person_ids: list[str]
                 ) -> dict[str, list[NoticeRecord]]:
    """The records (not withdrawn) of each person, as a notice is built from them."""
    r = _RECORDS
    grouped: dict[str, list[NoticeRecord]] = {}
    for row in session.execute(
            select(r.c.person_id, r.c.incident_id, r.c.agency_id, r.c.source_record_id,
                   r.c.record_version, r.c.sealed, r.c.data_categories, r.c.document_count,
                   r.c.preferred_language, r.c.updated_at)
            .where(r.c.incident_id == incident_id, r.c.person_id.in_(person_ids),
                   r.c.withdrawn == False)):  # noqa: E712
        grouped.setdefault(row.person_id, []).append(NoticeRecord(*row[1:]))
    return grouped


def told_records(session: Session, incident_id: str, keys: list[RecordKey]
                 ) -> list[NoticeRecord]:
    """These records as a notice is built from them, withdrawn or not (a correction notice
    goes to whoever the notice it corrects was built for); a tombstone (no personal fields
    kept) is left out."""
    r = _RECORDS
    if not keys:
        return []
    return [NoticeRecord(*row) for row in session.execute(
        select(r.c.incident_id, r.c.agency_id, r.c.source_record_id, r.c.record_version,
               r.c.sealed, r.c.data_categories, r.c.document_count, r.c.preferred_language,
               r.c.updated_at)
        .where(r.c.incident_id == incident_id, r.c.sealed != "",
               or_(*((r.c.agency_id == k[0]) & (r.c.source_record_id == k[1]) for k in keys))))]


def set_correction_notice(session: Session, review_id: str, notice_id: str) -> None:
    session.execute(update(_REVIEWS).where(_REVIEWS.c.review_id == review_id)
                    .values(correction_notice_id=notice_id))


def mark_covered(session: Session, incident_id: str, person_ids: list[str]) -> None:
    """The live records of these persons are covered by the notice just released to each:
    its lineage (the person's notice person id, written before) at the record's version."""
    r, p = _RECORDS, _PERSONS
    lineage = (select(p.c.notice_person_id)
               .where(p.c.incident_id == r.c.incident_id, p.c.person_id == r.c.person_id)
               .scalar_subquery())
    for chunk in chunks(person_ids, 1000):
        session.execute(update(r).where(r.c.incident_id == incident_id, r.c.person_id.in_(chunk),
                                        r.c.withdrawn == False)  # noqa: E712
                        .values(told_lineage=lineage, told_version=r.c.record_version))


# --- notices -----------------------------------------------------------------------------------

def add_notices(session: Session, notices: list[tuple[NoticeMessage, PersonView]],
                now: datetime) -> None:
    """The notices' rows and, in the same transaction, the outbox rows that publish them, in
    this order: two executemany INSERTs, not an ORM object per row (that was half of a
    release's CPU: benchmarks/dedupe/release.py)."""
    if not notices:
        return
    session.flush()  # anything the session still holds goes first, as it was added
    session.execute(insert(_NOTICES), [{
        "notice_id": n.notice_id, "incident_id": n.incident_id, "person_id": n.person_id,
        "version": n.version, "agency_ids": sorted(view.agency_ids),
        "data_categories": sorted(view.categories), "created_at": now,
        "correction": n.correction.kind if n.correction else None,
    } for n, view in notices])
    outbox.enqueue_many(session, NOTICES, [(n.person_id, n.to_bytes()) for n, _ in notices])


def add_hold_changes(session: Session, incident_id: str, changes: list[tuple[str, bool]],
                     now: datetime) -> None:
    """Outbox rows announcing notified persons' s 116 holds starting or ending (notice-hold on
    notices.v1, keyed like their notices, so ordered with them)."""
    if changes:
        outbox.enqueue_many(session, NOTICES, [(person_id, NoticeHoldMessage(
            incident_id=incident_id, person_id=person_id, held=held, changed_at=now).to_bytes())
            for person_id, held in changes])


def flush(session: Session) -> None:
    """Send what the session holds to the database (still uncommitted) and let go of the
    objects: a release of 190k notices holds a chunk's rows in memory, not all of them."""
    session.flush()
    session.expunge_all()


# --- the review queue --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Review:
    review_id: str
    a: RecordKey
    b: RecordKey
    reason: str
    status: str  # open | resolved | a decision (reviews.DECIDED)
    evidence: dict
    decided_at: datetime | None
    kind: str = "pair"  # pair | contact_conflict | hold_conflict | retraction
    chosen: RecordKey | None = None  # use_contact: the record whose contact is used
    correction_notice_id: str | None = None  # send_correction: the notice it made


_REVIEW_COLUMNS = (_REVIEWS.c.review_id, _REVIEWS.c.a_agency_id, _REVIEWS.c.a_source_record_id,
                   _REVIEWS.c.b_agency_id, _REVIEWS.c.b_source_record_id, _REVIEWS.c.reason,
                   _REVIEWS.c.status, _REVIEWS.c.evidence, _REVIEWS.c.decided_at,
                   _REVIEWS.c.kind, _REVIEWS.c.chosen_agency_id,
                   _REVIEWS.c.chosen_source_record_id, _REVIEWS.c.correction_notice_id)


def _review(row) -> Review:  # noqa: ANN001 - a row of _REVIEW_COLUMNS
    chosen = ((row.chosen_agency_id, row.chosen_source_record_id)
              if row.chosen_agency_id is not None else None)
    return Review(row.review_id, (row.a_agency_id, row.a_source_record_id),
                  (row.b_agency_id, row.b_source_record_id), row.reason, row.status,
                  row.evidence, row.decided_at, row.kind, chosen, row.correction_notice_id)


def open_review_count(session: Session) -> int:
    """Review items waiting for a decision, over every incident."""
    return session.execute(select(func.count()).select_from(_REVIEWS)
                           .where(_REVIEWS.c.status == "open")).scalar_one()


def reviews(session: Session, incident_id: str, status: str | None) -> list[Review]:
    """The incident's review rows (all of them when `status` is None), by review id."""
    query = select(*_REVIEW_COLUMNS).where(_REVIEWS.c.incident_id == incident_id)
    if status is not None:
        query = query.where(_REVIEWS.c.status == status)
    return [_review(row) for row in session.execute(query.order_by(_REVIEWS.c.review_id))]


def decide_review(session: Session, incident_id: str, review_id: str, decision: str,
                  now: datetime, chosen: RecordKey | None = None) -> Review | None:
    """Record a coordinator's decision; the partition owner applies it on its next tick.
    Raises conflicts.DecisionRefused when the decision does not fit the item (nothing written)."""
    row = session.execute(select(*_REVIEW_COLUMNS).where(_REVIEWS.c.review_id == review_id)
                          .where(_REVIEWS.c.incident_id == incident_id)).first()
    if row is None:
        return None
    review = _review(row)
    check_decision(review.kind, decision, chosen, review.evidence, review.status)
    chosen = tuple(chosen) if chosen is not None else None  # type: ignore[assignment]
    session.execute(update(_REVIEWS).where(_REVIEWS.c.review_id == review_id)
                    .values(status=decision, decided_at=now, applied=False,
                            chosen_agency_id=chosen[0] if chosen else None,
                            chosen_source_record_id=chosen[1] if chosen else None))
    return Review(review.review_id, review.a, review.b, review.reason, decision, review.evidence,
                  now, review.kind, chosen, review.correction_notice_id)


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """One record of a review pair as stored: `sealed` is "" for a tombstone."""

    key: RecordKey
    version: int
    sealed: str
    withdrawn: bool


def review_records(session: Session, incident_id: str, review_id: str
                   ) -> tuple[Review, SealedRecord | None, SealedRecord | None] | None:
    """A review and its two records (a, b), still sealed; None when there is no such review
    in the incident (a record no longer held: None in its place)."""
    row = session.execute(select(*_REVIEW_COLUMNS).where(_REVIEWS.c.review_id == review_id)
                          .where(_REVIEWS.c.incident_id == incident_id)).first()
    if row is None:
        return None
    review, r = _review(row), _RECORDS
    found = {(x.agency_id, x.source_record_id): SealedRecord(
        (x.agency_id, x.source_record_id), x.record_version, x.sealed, x.withdrawn)
        for x in session.execute(
            select(r.c.agency_id, r.c.source_record_id, r.c.record_version, r.c.sealed,
                   r.c.withdrawn)
            .where(r.c.incident_id == incident_id,
                   or_(*((r.c.agency_id == k[0]) & (r.c.source_record_id == k[1])
                         for k in (review.a, review.b)))))}
    return review, found.get(review.a), found.get(review.b)


def _decisions(session: Session, incident_id: str, *where) -> list[ReviewDecision]:  # noqa: ANN002
    r = _REVIEWS
    return [ReviewDecision(row.review_id, (row.a_agency_id, row.a_source_record_id),
                           (row.b_agency_id, row.b_source_record_id), row.status == "merge",
                           row.kind, row.status,
                           (row.chosen_agency_id, row.chosen_source_record_id)
                           if row.chosen_agency_id is not None else None)
            for row in session.execute(
                select(r.c.review_id, r.c.a_agency_id, r.c.a_source_record_id, r.c.b_agency_id,
                       r.c.b_source_record_id, r.c.status, r.c.kind, r.c.chosen_agency_id,
                       r.c.chosen_source_record_id)
                .where(r.c.incident_id == incident_id, *where))]


def pending_decisions(session: Session, incident_id: str) -> list[ReviewDecision]:
    """Decisions recorded since the partition owner last applied the incident's."""
    return _decisions(session, incident_id, _REVIEWS.c.applied == False)  # noqa: E712


def mark_applied(session: Session, decisions: list[ReviewDecision]) -> None:
    """Only as decided: a coordinator who changed their mind meanwhile stays pending."""
    if decisions:
        session.execute(
            update(_REVIEWS).where(_REVIEWS.c.review_id == bindparam("b_id"),
                                   _REVIEWS.c.status == bindparam("b_status"))
            .values(applied=True),
            [{"b_id": d.review_id,
              "b_status": d.decision or ("merge" if d.same_person else "keep_apart")}
             for d in decisions])


def review_statuses(session: Session, incident_id: str) -> dict[str, tuple[str, str]]:
    """review id → (status, reason) of every review row of the incident."""
    return {rid: (status, reason) for rid, status, reason in session.execute(
        select(_REVIEWS.c.review_id, _REVIEWS.c.status, _REVIEWS.c.reason)
        .where(_REVIEWS.c.incident_id == incident_id))}


def write_review_changes(session: Session, incident_id: str, changes: ReviewChanges,
                         now: datetime) -> None:
    if changes.new:
        session.execute(insert(_REVIEWS), [{
            "review_id": r.review_id, "incident_id": incident_id,
            "a_agency_id": r.a[0], "a_source_record_id": r.a[1],
            "b_agency_id": r.b[0], "b_source_record_id": r.b[1],
            "kind": r.kind, "reason": r.reason, "evidence": r.evidence, "status": "open",
            "applied": True, "updated_at": now,
        } for r in changes.new])
    if changes.revised:  # never over a decision a coordinator made meanwhile
        # or_, not in_(): an IN list is an "expanding" parameter, which executemany refuses.
        session.execute(
            update(_REVIEWS)
            .where(_REVIEWS.c.review_id == bindparam("b_id"),
                   or_(_REVIEWS.c.status == "open", _REVIEWS.c.status == "resolved"))
            .values(status="open", reason=bindparam("b_reason"),
                    evidence=bindparam("b_evidence"), updated_at=now),
            [{"b_id": r.review_id, "b_reason": r.reason, "b_evidence": r.evidence}
             for r in changes.revised])
    if changes.resolved:
        session.execute(
            update(_REVIEWS)
            .where(_REVIEWS.c.review_id == bindparam("b_id"), _REVIEWS.c.status == "open")
            .values(status="resolved", updated_at=now),
            [{"b_id": rid} for rid in changes.resolved])


# --- progress ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AgencyCount:
    agency_id: str
    name: str
    expected: bool
    complete: bool
    records: int  # live (not withdrawn)
    withdrawn: int
    missing: int  # announced by its completion, not arrived


@dataclass(frozen=True, slots=True)
class IncidentProgress:
    incident_id: str
    released_at: datetime | None
    release_reason: str | None
    hold_deadline: str | None  # as the release policy holds it
    agencies: list[AgencyCount]
    records_missing: int  # announced by completions and not arrived: the release waits
    persons: int  # distinct persons the records resolve to
    pending_release: int
    notified: int
    on_hold: int
    in_review: int
    held_for_contact: int  # every channel contested between agencies, awaiting a coordinator
    contact_conflicts: int  # open contact_conflict items (notices meanwhile on other channels)
    hold_conflicts: int  # open hold_conflict items (the person held meanwhile)
    retractions: int  # open retraction items (a notified person's records withdrawn)


def progress(session: Session, incident_id: str) -> IncidentProgress | None:
    incident = get_incident(session, incident_id)
    if incident is None:
        return None
    per_agency: dict[str, list[int]] = {}
    for agency_id, withdrawn, n in session.execute(
            select(_RECORDS.c.agency_id, _RECORDS.c.withdrawn, func.count())
            .where(_RECORDS.c.incident_id == incident_id)
            .group_by(_RECORDS.c.agency_id, _RECORDS.c.withdrawn)):
        per_agency.setdefault(agency_id, [0, 0])[1 if withdrawn else 0] += n
    for agency_id in incident.agency_names:
        per_agency.setdefault(agency_id, [0, 0])
    statuses = dict(session.execute(
        select(_PERSONS.c.status, func.count()).where(_PERSONS.c.incident_id == incident_id)
        .group_by(_PERSONS.c.status)).all())
    open_by_kind = dict(session.execute(
        select(_REVIEWS.c.kind, func.count()).where(
            _REVIEWS.c.incident_id == incident_id, _REVIEWS.c.status == "open")
        .group_by(_REVIEWS.c.kind)).all())
    return IncidentProgress(
        incident_id=incident_id, released_at=incident.released_at,
        release_reason=incident.release_reason,
        hold_deadline=(incident.release_policy or {}).get("hold_deadline"),
        agencies=[AgencyCount(
            agency_id=a, name=incident.agency_names.get(a, a),
            expected=a in incident.expected_agency_ids, complete=a in incident.completed,
            records=n[0], withdrawn=n[1], missing=incident.missing.get(a, 0))
            for a, n in sorted(per_agency.items())],
        records_missing=sum(incident.missing.values()),
        persons=sum(n for s, n in statuses.items() if s != "empty"),
        pending_release=statuses.get("pending", 0),
        # part_held: notified, an agency's part held back under s 116 (a released hold conflict)
        notified=statuses.get("notified", 0) + statuses.get("part_held", 0),
        on_hold=statuses.get("held", 0),
        in_review=sum(open_by_kind.values()),
        held_for_contact=statuses.get("held_contact", 0),
        contact_conflicts=open_by_kind.get("contact_conflict", 0),
        hold_conflicts=open_by_kind.get("hold_conflict", 0),
        retractions=open_by_kind.get("retraction", 0),
    )


# --- the Privacy Commissioner's report (services/common/report.py) ---------------------------


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """A live record on hold (s 116): its ground is inside `sealed` (Hold.reason)."""

    agency_id: str
    source_record_id: str
    record_version: int
    sealed: str


@dataclass(frozen=True, slots=True)
class CommissionerCounts:
    incident: dict[str, int]
    by_agency: dict[str, dict[str, int]]
    held: list[HeldRecord]
    milestones: dict[str, datetime]


def commissioner_counts(session: Session, incident_id: str) -> CommissionerCounts | None:
    incident = get_incident(session, incident_id)
    if incident is None:
        return None
    counts: dict[str, int] = {}
    by_agency: dict[str, dict[str, int]] = {}
    for agency_id, withdrawn, n, persons in session.execute(
            select(_RECORDS.c.agency_id, _RECORDS.c.withdrawn, func.count(),
                   func.count(_RECORDS.c.person_id.distinct()))
            .where(_RECORDS.c.incident_id == incident_id)
            .group_by(_RECORDS.c.agency_id, _RECORDS.c.withdrawn)):
        mine = by_agency.setdefault(agency_id, {})
        mine["records.withdrawn" if withdrawn else "records.live"] = n
        if not withdrawn:
            mine["persons.resolved"] = persons
    for status, n in session.execute(
            select(_PERSONS.c.status, func.count()).where(_PERSONS.c.incident_id == incident_id)
            .group_by(_PERSONS.c.status)):
        if status != "empty":
            counts[f"persons.{status}"] = n
    counts["persons.resolved"] = sum(counts.values())
    # Notified with an agency's part held back under s 116 (a released hold conflict): they
    # were notified, and how many of them are still owed that part is shown on its own.
    part_held = counts.pop("persons.part_held", 0)
    if part_held:
        counts["persons.notified"] = counts.get("persons.notified", 0) + part_held
        counts["persons.notified.part_held"] = part_held
    for status, n in session.execute(
            select(_REVIEWS.c.status, func.count()).where(_REVIEWS.c.incident_id == incident_id)
            .group_by(_REVIEWS.c.status)):
        counts["reviews.open" if status == "open" else f"reviews.decided.{status}"] = n
    for version, correction, n in session.execute(
            select(_NOTICES.c.version, _NOTICES.c.correction, func.count())
            .where(_NOTICES.c.incident_id == incident_id)
            .group_by(_NOTICES.c.version, _NOTICES.c.correction)):
        kind = (f"notices.corrections.{correction}" if correction else
                "notices.amendments" if version > 1 else "notices.first")
        counts[kind] = counts.get(kind, 0) + n
    for status, n in session.execute(
            select(_REVIEWS.c.status, func.count())
            .where(_REVIEWS.c.incident_id == incident_id, _REVIEWS.c.kind == "retraction")
            .group_by(_REVIEWS.c.status)):
        counts[f"retractions.{status}"] = n
    held = [HeldRecord(*row) for row in session.execute(
        select(_RECORDS.c.agency_id, _RECORDS.c.source_record_id, _RECORDS.c.record_version,
               _RECORDS.c.sealed)
        .where(_RECORDS.c.incident_id == incident_id, _RECORDS.c.on_hold.is_(True),
               _RECORDS.c.withdrawn.is_(False)))]
    first_notice, last_decision = session.execute(select(
        select(func.min(_NOTICES.c.created_at)).where(_NOTICES.c.incident_id == incident_id)
        .scalar_subquery(),
        select(func.max(_REVIEWS.c.decided_at)).where(_REVIEWS.c.incident_id == incident_id)
        .scalar_subquery())).one()
    milestones = {k: v for k, v in (("release", incident.released_at),
                                    ("notices.first_made", first_notice),
                                    ("reviews.last_decided", last_decision)) if v is not None}
    return CommissionerCounts(counts, by_agency, held, milestones)


# --- retention ---------------------------------------------------------------------------------


def purge_incident(session: Session, incident_id: str) -> dict:
    """Delete everything dedupe holds of the incident (records still sealed, persons, notices,
    reviews, its state) and its unpublished notices; the counts, for the audit trail."""
    persons = select(PersonState.person_id).where(PersonState.incident_id == incident_id)
    notice_ids = sorted(session.scalars(select(NoticeState.notice_id).where(
        NoticeState.incident_id == incident_id)))
    box = outbox.OutboxMessage.__table__
    unpublished = session.execute(box.delete().where(
        box.c.topic == NOTICES.name, box.c.key.in_(persons.scalar_subquery()))).rowcount
    counts: dict = {"notice_ids": notice_ids, "unpublished_notices_deleted": unpublished}
    for name, table in (("records", RecordState), ("persons", PersonState),
                        ("notices", NoticeState), ("reviews", ReviewState),
                        ("incident_state", IncidentState)):
        t = table.__table__
        counts[name] = session.execute(t.delete().where(t.c.incident_id == incident_id)).rowcount
    return counts


# --- agency reconciliation (services/common/reconciliation.py) ---------------------------------

@dataclass(frozen=True, slots=True)
class RecordOutcome:
    source_record_id: str
    record_version: int
    state: str  # pending | in_review | held | notified | withdrawn
    other_agencies: int  # other agencies' records in the same person (never which)
    notice_id: str | None
    review_open: bool  # an open review item names the record (even once notified)


def record_outcomes(session: Session, incident_id: str, agency_id: str, after: str,
                    limit: int) -> tuple[list[RecordOutcome], str | None]:
    """One agency's records after `after` by source_record_id and what became of each; the
    next cursor or None. Other agencies appear only as a count."""
    r, p, n, v = _RECORDS, _PERSONS, _NOTICES, _REVIEWS
    rows = session.execute(
        select(r.c.source_record_id, r.c.record_version, r.c.withdrawn, r.c.person_id,
               r.c.told_lineage, r.c.on_hold, p.c.status)
        .outerjoin(p, (p.c.incident_id == r.c.incident_id) & (p.c.person_id == r.c.person_id))
        .where(r.c.incident_id == incident_id, r.c.agency_id == agency_id,
               r.c.source_record_id > after)
        .order_by(r.c.source_record_id).limit(limit + 1)).all()
    page, more = rows[:limit], len(rows) > limit
    if not page:
        return [], None
    # The page's records are exactly the agency's in (after, last]: each part below joins on
    # that range of the unique index instead of binding thousands of ids in IN lists.
    last = page[-1].source_record_id
    in_page = (r.c.incident_id == incident_id, r.c.agency_id == agency_id,
               r.c.source_record_id > after, r.c.source_record_id <= last)
    in_review: set[str] = set()
    for a_agency, a_id, b_agency, b_id in session.execute(
            select(v.c.a_agency_id, v.c.a_source_record_id, v.c.b_agency_id, v.c.b_source_record_id)
            .where(v.c.incident_id == incident_id, v.c.status == "open",
                   or_((v.c.a_agency_id == agency_id) & (v.c.a_source_record_id > after)
                       & (v.c.a_source_record_id <= last),
                       (v.c.b_agency_id == agency_id) & (v.c.b_source_record_id > after)
                       & (v.c.b_source_record_id <= last)))):
        in_review |= {i for ag, i in ((a_agency, a_id), (b_agency, b_id))
                      if ag == agency_id and after < i <= last}
    newest: dict[str, tuple[int, str, list[str]]] = {}
    for lineage, version, notice_id, agencies in session.execute(  # agency ids as text: orjson
            select(n.c.person_id, n.c.version, n.c.notice_id, cast(n.c.agency_ids, String))
            .select_from(r.join(n, (n.c.incident_id == r.c.incident_id)
                                & (n.c.person_id == r.c.told_lineage)))
            .where(*in_page)).all():
        if lineage not in newest or version > newest[lineage][0]:
            newest[lineage] = (version, notice_id, orjson.loads(agencies))
    other = r.alias("other")
    agencies_of: dict[str, set[str]] = {}
    for person_id, agency in session.execute(
            select(other.c.person_id, other.c.agency_id).distinct()
            .select_from(r.join(other, (other.c.incident_id == r.c.incident_id)
                                & (other.c.person_id == r.c.person_id)))
            .where(*in_page, other.c.withdrawn == False)):  # noqa: E712
        agencies_of.setdefault(person_id, set()).add(agency)
    outcomes = []
    for row in page:
        notice = newest.get(row.told_lineage) if row.told_lineage else None
        if row.withdrawn:
            state = "withdrawn"
        elif notice is not None:
            state = "notified"
        elif row.status == "held" or row.on_hold:  # its own hold holds it before the release too
            state = "held"
        elif row.source_record_id in in_review or row.status == "held_contact":
            state = "in_review"  # held_contact: a coordinator picks between contested contacts
        else:
            state = "pending"
        # Notified: the agencies the notice named; else the person's agencies as resolved now.
        agencies = set(notice[2]) if notice else agencies_of.get(row.person_id or "", set())
        outcomes.append(RecordOutcome(row.source_record_id, row.record_version, state,
                                      len(agencies - {agency_id}),
                                      notice[1] if notice and state == "notified" else None,
                                      row.source_record_id in in_review))
    return outcomes, (page[-1].source_record_id if more else None)
