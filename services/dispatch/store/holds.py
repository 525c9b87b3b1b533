"""dispatch_notice_hold: whether a notified person is held under s 116 now (notice-hold)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlmodel import Session

from services.common.messages import NoticeHoldMessage
from services.dispatch.models import NoticeHold

HT = NoticeHold.__table__


def record_holds(session: Session, holds: Sequence[NoticeHoldMessage]) -> None:
    """The latest of these per person replaces what is stored (they arrive in order)."""
    latest = {(h.incident_id, h.person_id): h for h in holds}
    for (incident_id, person_id), h in sorted(latest.items()):
        changed = session.execute(HT.update().where(
            HT.c.incident_id == incident_id, HT.c.person_id == person_id).values(
            held=h.held, changed_at=h.changed_at)).rowcount
        if not changed:
            session.execute(HT.insert().values(incident_id=incident_id, person_id=person_id,
                                               held=h.held, changed_at=h.changed_at))


def is_held(session: Session, incident_id: str, person_id: str) -> bool:
    held = session.execute(select(HT.c.held).where(
        HT.c.incident_id == incident_id, HT.c.person_id == person_id)).scalar_one_or_none()
    return bool(held)

