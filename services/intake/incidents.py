"""Incidents, enrolment and API keys: the coordinator's side of intake, and an agency's
completion.

Every change to an incident publishes its full current state on the compacted incidents
topic, which dedupe (release policy, agency names) and dispatch (notice content) read.
"""

from dataclasses import dataclass, field

from sqlmodel import Session

from services.common.messages import (
    ChannelPolicy,
    ContributionCompleteMessage,
    IncidentAgency,
    IncidentContent,
    IncidentMessage,
    ReleasePolicy,
    templates_fingerprint,
)
from services.common.topics import AFFECTED_RECORDS, INCIDENTS
from services.intake import auth, store
from services.intake.models import Enrolment, Incident
from services.intake.schemas import IncidentCreate, IncidentEdit


@dataclass(frozen=True, slots=True)
class IncidentSnapshot:
    incident: Incident
    agencies: list[store.EnrolledAgency]
    issued_keys: list[auth.NewKey] = field(default_factory=list)


def snapshot(session: Session, incident_id: str) -> IncidentSnapshot | None:
    incident = store.get_incident(session, incident_id)
    if incident is None:
        return None
    return IncidentSnapshot(incident, store.enrolled_agencies(session, incident_id))


def create_incident(session: Session, setup: IncidentCreate) -> IncidentSnapshot | None:
    """The new incident with its agencies enrolled and one key issued to each; None when an
    incident with this id exists."""
    # Te reo templates are approved only after a preview (approve_templates_mi), never at once.
    content = setup.content.model_dump(mode="json") | {"templates_mi_approved": None}
    incident = store.add_incident(
        session, setup.incident_id, setup.title, content,
        setup.release_policy.model_dump(mode="json"), setup.channel_policy.model_dump(mode="json"),
        setup.dry_run)
    if incident is None:
        return None
    publish_incident(session, incident)
    keys = []
    for agency in setup.expected_agencies:
        _enrol(session, incident, agency.agency_id, agency.name, agency.expected)
        keys.append(_issue_key(session, agency.agency_id))
    return IncidentSnapshot(incident, store.enrolled_agencies(session, incident.incident_id), keys)


def enrol_agency(session: Session, incident_id: str, agency_id: str, name: str,
                 expected: bool) -> auth.NewKey | None:
    """Enrol (or re-enrol) an agency and issue it a key; None when there is no such incident."""
    incident = store.get_incident(session, incident_id)
    if incident is None:
        return None
    _enrol(session, incident, agency_id, name, expected)
    return _issue_key(session, agency_id)


def issue_key(session: Session, agency_id: str) -> auth.NewKey | None:
    """Another key for an agency (rotation); None when there is no such agency."""
    if not store.agency_exists(session, agency_id):
        return None
    return _issue_key(session, agency_id)


def _issue_key(session: Session, agency_id: str) -> auth.NewKey:
    key = auth.mint_key(agency_id)
    store.add_api_key(session, agency_id, key.key_id, key.secret_sha256)
    return key


def _enrol(session: Session, incident: Incident, agency_id: str, name: str, expected: bool) -> None:
    store.save_agency(session, agency_id, name)
    store.save_enrolment(session, incident.incident_id, agency_id, expected)
    store.bump_revision(session, incident)
    publish_incident(session, incident)


def publish_incident(session: Session, incident: Incident) -> IncidentMessage:
    agencies = store.enrolled_agencies(session, incident.incident_id)
    message = IncidentMessage(
        incident_id=incident.incident_id,
        revision=incident.revision,
        title=incident.title,
        content=IncidentContent.model_validate(incident.content),
        agencies=[IncidentAgency(agency_id=a.agency_id, name=a.name) for a in agencies],
        expected_agency_ids=[a.agency_id for a in agencies if a.expected],
        release_policy=ReleasePolicy.model_validate(incident.release_policy),
        channel_policy=ChannelPolicy.model_validate(incident.channel_policy),
        updated_at=incident.updated_at,
        dry_run=incident.dry_run,
    )
    store.enqueue(session, INCIDENTS, incident.incident_id, message.to_bytes())
    return message


class TemplatesChanged(Exception):
    """The te reo templates are not the ones previewed (or there are none)."""


def approve_templates_mi(session: Session, incident_id: str, fingerprint: str) -> Incident | None:
    """The coordinator approves the te reo templates they previewed (dispatch's notice
    preview gave the fingerprint). Publishes the new revision; None when there is no incident."""
    incident = store.get_incident(session, incident_id)
    if incident is None:
        return None
    templates = incident.content.get("templates_mi") or {}
    if not templates or templates_fingerprint(templates) != fingerprint:
        raise TemplatesChanged
    store.set_content(session, incident, incident.content | {"templates_mi_approved": fingerprint})
    publish_incident(session, incident)
    return incident


class RevisionConflict(Exception):
    """The incident changed since the revision the edit was made from."""

    def __init__(self, current: int):
        super().__init__(current)
        self.current = current


class IncidentClosed(Exception):
    """A closed incident's content is final."""


def edit_content(session: Session, incident_id: str, edit: IncidentEdit) -> IncidentSnapshot | None:
    """Replace the title and notice content, made from `edit.revision` (else RevisionConflict:
    someone else's edit would be lost); publishes the new revision, which dispatch renders
    every notice sent from then on with. The te reo approval holds only while the templates
    are exactly the ones approved. None when there is no incident."""
    incident = store.lock_incident(session, incident_id)
    if incident is None:
        return None
    if incident.closed_at is not None:
        raise IncidentClosed
    if incident.revision != edit.revision:
        raise RevisionConflict(incident.revision)
    content = edit.content.model_dump(mode="json")
    approved = incident.content.get("templates_mi_approved")
    templates = content.get("templates_mi") or {}
    content["templates_mi_approved"] = (
        approved if templates and approved == templates_fingerprint(templates) else None)
    incident.title = edit.title
    store.set_content(session, incident, content)
    publish_incident(session, incident)
    return snapshot(session, incident_id)


def mark_complete(session: Session, incident_id: str, agency_id: str) -> Enrolment:
    """The agency has sent everything; dedupe's release policy waits for all expected agencies.
    Marking again re-announces the (possibly changed) count."""
    store.lock_agency_records(session, incident_id, agency_id)  # count after in-flight feeds commit
    count = store.live_record_count(session, incident_id, agency_id)
    enrolment = store.record_completion(session, incident_id, agency_id, count)
    # Withdrawn ones too: dedupe reconciles every record it saw (live or withdrawn) with them.
    message = ContributionCompleteMessage(
        incident_id=incident_id, agency_id=agency_id, record_count=count,
        withdrawn_count=store.withdrawn_record_count(session, incident_id, agency_id),
        completed_at=enrolment.completed_at,
    )
    store.enqueue(session, AFFECTED_RECORDS, incident_id, message.to_bytes())
    return enrolment
