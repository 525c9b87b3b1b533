"""dispatch_incident: the latest revision of each incident (content and channel policy), and
dispatch_incident_revision: every revision, for sends pinned to an older one."""

from __future__ import annotations

from sqlmodel import Session

from services.common.clock import utcnow
from services.common.messages import IncidentMessage, decode_incident
from services.dispatch.models import DispatchIncident, DispatchIncidentRevision


def upsert_incident(session: Session, message: IncidentMessage, raw: bytes) -> tuple[bool, IncidentMessage]:
    """Store the incident if this revision is newer than the stored one. Returns whether it was
    stored, and the latest revision (this one, or the newer one already stored)."""
    row = session.get(DispatchIncident, message.incident_id, with_for_update=True)
    if session.get(DispatchIncidentRevision, (message.incident_id, message.revision)) is None:
        session.add(DispatchIncidentRevision(incident_id=message.incident_id,
                                             revision=message.revision, payload=raw))
    if row is not None and row.revision >= message.revision:
        return False, decode_incident(row.payload)
    if row is None:
        session.add(
            DispatchIncident(incident_id=message.incident_id, revision=message.revision, payload=raw)
        )
    else:
        row.revision, row.payload, row.updated_at = message.revision, raw, utcnow()
    return True, message


def load_incident(session: Session, incident_id: str) -> IncidentMessage | None:
    row = session.get(DispatchIncident, incident_id)
    return decode_incident(row.payload) if row is not None else None


def load_revision(session: Session, incident_id: str, revision: int) -> IncidentMessage | None:
    row = session.get(DispatchIncidentRevision, (incident_id, revision))
    return decode_incident(row.payload) if row is not None else None
