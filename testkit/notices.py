"""Incidents and notices as dispatch receives them from Kafka (synthetic people only), for the
dispatch tests and the dispatch benchmark."""

from datetime import UTC, date, datetime

from services.common.crypto import Sealer
from services.common.ids import notice_id as make_notice_id
from services.common.messages import (
    ChannelPolicy,
    IncidentAgency,
    IncidentContent,
    IncidentMessage,
    NoticeAgency,
    NoticeMessage,
    ReleasePolicy,
    notice_sealing_context,
)
from services.common.references import notice_checks

CONTENT = IncidentContent(
    sender_name="Example Health",
    breach_description="On 2 March 2026 an unauthorised party copied records from the portal.",
    suspected_holder_statement="We have identified a group we suspect holds the information.",
    steps_taken="We closed the portal, reset all access and are working with police.",
    mitigation_advice=["Be wary of calls, texts or emails about this breach."],
    privacy_commissioner_notified=True,
    privacy_commissioner_notified_on=date(2026, 3, 4),
    contact={"organisation": "Example Helpline", "phone": "0800 000 111",
             "web_address": "panui.example.nz/check", "hours": "8am-8pm"},
)


def incident_message(incident_id: str = "inc-1", mode: str = "email_else_sms",
                     fallback: tuple[str, ...] = ("email", "sms", "postal"), revision: int = 1,
                     **content) -> IncidentMessage:
    return IncidentMessage(
        incident_id=incident_id,
        revision=revision,
        title="Example portal breach",
        content=CONTENT.model_copy(update=content),
        agencies=[IncidentAgency(agency_id="gp-1", name="Example Medical Centre")],
        expected_agency_ids=["gp-1"],
        release_policy=ReleasePolicy(),
        channel_policy=ChannelPolicy(mode=mode, fallback=list(fallback)),
        updated_at=datetime.now(UTC),
    )


def person(n: int, email: bool = True, mobile: bool = True, address: bool = True, **extra) -> dict:
    recipient = {"given_names": f"Testperson{n}", "family_name": f"Fakename{n}"}
    if email:
        recipient["email"] = f"person{n}@example.nz"
    if mobile:
        recipient["mobile"] = f"+6421{n:07d}"
    if address:
        recipient["address"] = {"line1": f"{n} Test Street", "city": "Testville",
                                "postcode": "9010"}
    recipient.update(extra)
    return recipient


def notice_message(sealer: Sealer, n: int, recipient: dict, incident_id: str = "inc-1",
                   version: int = 1, language: str = "en",
                   dates_of_birth: list[str] | None = None) -> NoticeMessage:
    """A notice as dedupe makes it. With `dates_of_birth`, it carries a keyed reference and
    the digests the genuine-notice check compares with (as dedupe's build_notice does);
    without, no reference (dispatch prints the legacy code)."""
    person_id = f"prs-{n:06d}"
    nid = make_notice_id(incident_id, person_id, version)
    channels = [c for c, k in (("email", "email"), ("sms", "mobile"), ("postal", "address"))
                if recipient.get(k)]
    sealed = sealer.seal({"recipient": recipient, "representative": None},
                         notice_sealing_context(nid))
    checks = {}
    if dates_of_birth is not None:
        reference, dob_checks = notice_checks(sealer, nid, sealed, dates_of_birth)
        checks = {"reference_code": reference, "dob_checks": dob_checks}
    return NoticeMessage(
        notice_id=nid, incident_id=incident_id, person_id=person_id, version=version,
        created_at=datetime.now(UTC), preferred_language=language, channels=channels,
        agencies=[NoticeAgency(agency_id="gp-1", name="Example Medical Centre",
                               data_categories=["clinical_notes", "lab_results"],
                               document_count=3)],
        sealed=sealed,
        **checks,
    )
