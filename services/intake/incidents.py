"""Incidents and enrolments: the coordinator's side of intake.

Every change to an incident publishes its full current state on the compacted incidents
topic, which dedupe (release policy, agency names) and dispatch (notice content) read.
"""

from sqlmodel import Session, select

from services.common import outbox
from services.common.clock import utcnow
from services.common.messages import (
    ChannelPolicy,
    ContributionCompleteMessage,
    IncidentAgency,
    IncidentContent,
    IncidentMessage,
    ReleasePolicy,
)
from services.common.topics import AFFECTED_RECORDS, INCIDENTS
from services.intake.feeds import live_record_count, lock_agency_records
from services.intake.models import Agency, Enrolment, Incident


def publish_incident(session: Session, incident: Incident) -> IncidentMessage:
    enrolments = session.exec(
        select(Enrolment, Agency)
        .join(Agency, Agency.agency_id == Enrolment.agency_id)
        .where(Enrolment.incident_id == incident.incident_id)
        .order_by(Enrolment.agency_id)
    ).all()
    message = IncidentMessage(
        incident_id=incident.incident_id,
        revision=incident.revision,
        title=incident.title,
        content=IncidentContent.model_validate(incident.content),
        agencies=[IncidentAgency(agency_id=a.agency_id, name=a.name) for _, a in enrolments],
        expected_agency_ids=[e.agency_id for e, _ in enrolments if e.expected],
        release_policy=ReleasePolicy.model_validate(incident.release_policy),
        channel_policy=ChannelPolicy.model_validate(incident.channel_policy),
        updated_at=incident.updated_at,
    )
    outbox.enqueue(session, INCIDENTS, incident.incident_id, message.to_bytes())
    return message


def create_incident(
    session: Session,
    incident_id: str,
    title: str,
    content: IncidentContent,
    release_policy: ReleasePolicy,
    channel_policy: ChannelPolicy,
) -> Incident | None:
    if session.get(Incident, incident_id) is not None:
        return None
    incident = Incident(
        incident_id=incident_id,
        title=title,
        content=content.model_dump(mode="json"),
        release_policy=release_policy.model_dump(mode="json"),
        channel_policy=channel_policy.model_dump(mode="json"),
    )
    session.add(incident)
    session.flush()
    publish_incident(session, incident)
    return incident


def enrol_agency(session: Session, incident: Incident, agency_id: str, name: str, expected: bool) -> Agency:
    agency = session.get(Agency, agency_id)
    if agency is None:
        agency = Agency(agency_id=agency_id, name=name)
    else:
        agency.name = name
    session.add(agency)
    enrolment = session.get(Enrolment, (incident.incident_id, agency_id))
    if enrolment is None:
        enrolment = Enrolment(incident_id=incident.incident_id, agency_id=agency_id)
    enrolment.expected = expected
    session.add(enrolment)
    bump(session, incident)
    return agency


def bump(session: Session, incident: Incident) -> None:
    incident.revision += 1
    incident.updated_at = utcnow()
    session.add(incident)
    session.flush()
    publish_incident(session, incident)


def is_enrolled(session: Session, incident_id: str, agency_id: str) -> bool:
    return session.get(Enrolment, (incident_id, agency_id)) is not None


def mark_complete(session: Session, incident_id: str, agency_id: str) -> Enrolment:
    """The agency has sent everything; dedupe's release policy waits for all expected agencies.
    Marking again re-announces the (possibly changed) count."""
    lock_agency_records(session, incident_id, agency_id)  # count after in-flight feeds commit
    enrolment = session.get(Enrolment, (incident_id, agency_id))
    count = live_record_count(session, incident_id, agency_id)
    enrolment.completed_at = utcnow()
    enrolment.completed_record_count = count
    session.add(enrolment)
    message = ContributionCompleteMessage(
        incident_id=incident_id, agency_id=agency_id, record_count=count,
        completed_at=enrolment.completed_at,
    )
    outbox.enqueue(session, AFFECTED_RECORDS, incident_id, message.to_bytes())
    return enrolment
