"""Closing and purging an incident in intake, and announcing both on incident-lifecycle.v1 so
dedupe and dispatch purge theirs (docs/decisions.md, "Crypto-shredding").

Close (the coordinator): no more feeds or withdrawals; the purge is due `purge_after_s` later.
Purge (intake's purge loop, when due): the sealed record versions, their problems and any
unpublished record messages are deleted, the incident's records data key is destroyed and its
key message tombstoned, the incident's state on incidents.v1 tombstoned, and
`incident-purged` published. What remains is the audit trail (services/common/retention.py)
and the rows without personal data: the incident, its enrolments, its feeds and their counts.
"""

from datetime import datetime, timedelta

from sqlmodel import Session

from services.common import keystore, retention
from services.common.crypto import RECORDS
from services.common.messages import IncidentClosedMessage, IncidentPurgedMessage
from services.common.topics import AFFECTED_RECORDS, INCIDENT_LIFECYCLE, INCIDENTS
from services.intake import store
from services.intake.models import Incident


def close(session: Session, incident_id: str, now: datetime, purge_after_s: float,
          actor: str | None) -> Incident | None:
    """Close the incident (idempotent: a second close changes nothing); None if there is none."""
    incident = store.close_incident(session, incident_id, now, now + timedelta(seconds=purge_after_s))
    if incident is None or incident.closed_at != now:
        return incident
    message = IncidentClosedMessage(incident_id=incident_id, closed_at=now,
                                    purge_after=incident.purge_after)
    store.enqueue(session, INCIDENT_LIFECYCLE, incident_id, message.to_bytes())
    retention.record(session, incident_id, "closed",
                     {"purge_after": incident.purge_after.isoformat()}, actor=actor, at=now)
    return incident


def purge(session: Session, incident_id: str, now: datetime) -> dict | None:
    """Purge it now; the audit counts, or None if it was purged already."""
    counts = store.purge_incident_rows(session, incident_id, now, AFFECTED_RECORDS)
    if counts is None:
        return None
    key_ids = keystore.destroy_incident(session, incident_id)
    keystore.announce_tombstones(session, incident_id, RECORDS, key_ids)
    store.enqueue(session, INCIDENTS, incident_id, None)  # its state leaves the compacted topic
    store.enqueue(session, INCIDENT_LIFECYCLE, incident_id,
                  IncidentPurgedMessage(incident_id=incident_id, purged_at=now).to_bytes())
    counts["data_keys_destroyed"] = len(key_ids)
    retention.record(session, incident_id, "purged", counts, actor="intake:purge", at=now)
    return counts


def purge_due(session: Session, now: datetime) -> list[str]:
    """Purge the closed incidents whose time has come (a few per transaction); their ids."""
    return [incident_id for incident_id in store.incidents_due_for_purge(session, now)
            if purge(session, incident_id, now) is not None]
