"""Mail-out batches: the queued postal deliveries handed to a print house together.

A letter's delivery goes queued -> sending (in a batch: provider 'mailout', provider_reference
the batch id, the incident revision pinned) -> sent (the batch was posted) -> permanent-failure
(the letter came back: 'mail-returned'), each change with its delivery event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, insert, select, update
from sqlmodel import Session

from services.common.messages import DeliveryStatus
from services.dispatch.delivery_state import TOLD_STATES
from services.dispatch.models import Delivery, DispatchIncident, DispatchNotice, MailoutBatch
from services.dispatch.store.deliveries import DeliveryRow, lock_deliveries
from services.dispatch.store.events import event_row, publish

DT = Delivery.__table__
NT = DispatchNotice.__table__
BT = MailoutBatch.__table__
IT = DispatchIncident.__table__
PROVIDER = "mailout"
S = DeliveryStatus


@dataclass(frozen=True)
class Batch:
    batch_id: str
    incident_id: str
    letters: int
    large_print: bool
    letter_date: date
    created_at: datetime
    posted_at: datetime | None
    returned: int = 0


@dataclass(frozen=True)
class BatchLetter:
    delivery_id: int
    notice_id: str
    notice_payload: bytes
    content_revision: int | None
    status: str
    says_update: bool | None = None  # pinned when batched: an earlier version reached them
    person_id: str = ""
    notice_version: int = 1


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def create_batch(session: Session, batch_id: str, incident_id: str, limit: int, large_print: bool,
                 letter_date: date, now: datetime) -> Batch | None:
    """Put up to `limit` queued letters of the incident, oldest first, into a new batch; None
    when no letter is waiting. Concurrent calls never take the same letter (SKIP LOCKED)."""
    query = (
        select(DT.c.id)
        .where(DT.c.incident_id == incident_id, DT.c.channel == "postal",
               DT.c.status == S.QUEUED.value)
        .order_by(DT.c.id).limit(limit)
    )
    if _postgres(session):
        query = query.with_for_update(skip_locked=True)
    ids = [r[0] for r in session.execute(query)]
    if not ids:
        return None
    revision = session.execute(
        select(IT.c.revision).where(IT.c.incident_id == incident_id)).scalar_one_or_none()
    # What the letter says is pinned with its batch, as a claim pins an email's: whether an
    # earlier version reached them ("this updates"/"this corrects" — or the first notice).
    earlier = DT.alias("earlier")
    told = select(earlier.c.id).where(
        earlier.c.incident_id == DT.c.incident_id, earlier.c.person_id == DT.c.person_id,
        earlier.c.notice_version < DT.c.notice_version,
        earlier.c.status.in_([s.value for s in TOLD_STATES])).exists()
    session.execute(
        update(DT).where(DT.c.id.in_(ids)).values(
            status=S.SENDING.value, attempts=DT.c.attempts + 1, provider=PROVIDER,
            provider_reference=batch_id, reason_code="mailout-batched",
            content_revision=func.coalesce(DT.c.content_revision, revision),
            says_update=func.coalesce(DT.c.says_update, told),
            first_attempt_at=func.coalesce(DT.c.first_attempt_at, now.timestamp()),
            lease_owner=None, lease_until=None, updated_at=now,
        )
    )
    rows = lock_deliveries(session, ids)
    publish(session, [event_row(r, S.SENDING, r.attempts, now, PROVIDER, "mailout-batched")
                      for r in rows.values()])
    session.execute(insert(BT).values(
        batch_id=batch_id, incident_id=incident_id, letters=len(ids), large_print=large_print,
        letter_date=letter_date, created_at=now, posted_at=None,
    ))
    return get_batch(session, batch_id)


def _returned_counts(session: Session, batch_ids: list[str]) -> dict[str, int]:
    rows = session.execute(
        select(DT.c.provider_reference, func.count())
        .where(DT.c.provider == PROVIDER, DT.c.provider_reference.in_(batch_ids),
               DT.c.status == S.PERMANENT_FAILURE.value)
        .group_by(DT.c.provider_reference)
    ).all()
    return {ref: n for ref, n in rows}


def _batch(row: object, returned: dict[str, int]) -> Batch:
    return Batch(row.batch_id, row.incident_id, row.letters, bool(row.large_print),
                 row.letter_date, row.created_at, row.posted_at, returned.get(row.batch_id, 0))


def get_batch(session: Session, batch_id: str) -> Batch | None:
    row = session.execute(select(BT).where(BT.c.batch_id == batch_id)).first()
    return _batch(row, _returned_counts(session, [batch_id])) if row is not None else None


def list_batches(session: Session, incident_id: str) -> list[Batch]:
    rows = session.execute(
        select(BT).where(BT.c.incident_id == incident_id).order_by(BT.c.created_at, BT.c.batch_id)
    ).all()
    returned = _returned_counts(session, [r.batch_id for r in rows])
    return [_batch(r, returned) for r in rows]


def batch_letters(session: Session, batch_id: str) -> list[BatchLetter]:
    """The batch's letters in print order, with their notices (recipient still sealed)."""
    rows = session.execute(
        select(DT.c.id, DT.c.notice_id, NT.c.payload, DT.c.content_revision, DT.c.status,
               DT.c.says_update, DT.c.person_id, DT.c.notice_version)
        .join(NT, NT.c.notice_id == DT.c.notice_id)
        .where(DT.c.provider == PROVIDER, DT.c.provider_reference == batch_id,
               DT.c.channel == "postal")
        .order_by(DT.c.id)
    ).all()
    return [BatchLetter(*r) for r in rows]


def mark_posted(session: Session, batch_id: str, now: datetime) -> Batch | None:
    """The print house posted the batch: its letters still in 'sending' become 'sent'.
    Posting twice changes nothing."""
    batch = session.execute(select(BT).where(BT.c.batch_id == batch_id).with_for_update()
                            if _postgres(session) else
                            select(BT).where(BT.c.batch_id == batch_id)).first()
    if batch is None:
        return None
    if batch.posted_at is None:
        ids = [r[0] for r in session.execute(
            select(DT.c.id).where(DT.c.provider == PROVIDER, DT.c.provider_reference == batch_id,
                                  DT.c.status == S.SENDING.value))]
        if ids:
            session.execute(update(DT).where(DT.c.id.in_(ids)).values(
                status=S.SENT.value, reason_code="mailout-posted", updated_at=now))
            rows = lock_deliveries(session, ids)
            publish(session, [event_row(r, S.SENT, r.attempts, now, PROVIDER, "mailout-posted")
                              for r in rows.values()])
        session.execute(update(BT).where(BT.c.batch_id == batch_id).values(posted_at=now))
    return get_batch(session, batch_id)


def incident_letters(session: Session, incident_id: str) -> list[tuple[int, str]]:
    """(delivery id, notice id) of the incident's letters that went into a batch."""
    return [(r[0], r[1]) for r in session.execute(
        select(DT.c.id, DT.c.notice_id).where(
            DT.c.incident_id == incident_id, DT.c.channel == "postal",
            DT.c.provider == PROVIDER).order_by(DT.c.id))]


def lock_letter(session: Session, delivery_id: int) -> DeliveryRow | None:
    return lock_deliveries(session, [delivery_id]).get(delivery_id)

