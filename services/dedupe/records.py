"""Applying the affected-records topic to dedupe's record state.

Each message is applied at most once in effect: an older or equal record version is ignored,
a newer one replaces the evidence, a withdrawal marks the record withdrawn.
"""

from sqlmodel import Session, select

from services.common.messages import (
    AffectedRecordMessage,
    RecordWithdrawnMessage,
    utcnow,
)
from services.dedupe.models import RecordState


def find_record(session: Session, incident_id: str, agency_id: str, source_record_id: str) -> RecordState | None:
    return session.exec(
        select(RecordState).where(
            RecordState.incident_id == incident_id,
            RecordState.agency_id == agency_id,
            RecordState.source_record_id == source_record_id,
        )
    ).first()


def apply_record(session: Session, msg: AffectedRecordMessage) -> RecordState | None:
    """Store the record version; returns the stored state when it changed, else None."""
    state = find_record(session, msg.incident_id, msg.agency_id, msg.source_record_id)
    if state is not None and state.record_version >= msg.record_version:
        return None  # a replay, or an older version arriving late
    if state is None:
        state = RecordState(
            incident_id=msg.incident_id,
            agency_id=msg.agency_id,
            source_record_id=msg.source_record_id,
            record_version=msg.record_version,
            message_id=msg.message_id,
            sealed=msg.sealed,
            data_categories=list(msg.data_categories),
        )
    state.record_version = msg.record_version
    state.message_id = msg.message_id
    state.sealed = msg.sealed
    state.data_categories = list(msg.data_categories)
    state.document_count = msg.document_count
    state.preferred_language = msg.preferred_language
    state.on_hold = msg.on_hold
    state.withdrawn = False
    state.updated_at = utcnow()
    session.add(state)
    session.flush()
    return state


def apply_withdrawal(session: Session, msg: RecordWithdrawnMessage) -> RecordState | None:
    state = find_record(session, msg.incident_id, msg.agency_id, msg.source_record_id)
    if state is None or state.withdrawn:
        return None
    state.withdrawn = True
    state.updated_at = utcnow()
    session.add(state)
    return state

