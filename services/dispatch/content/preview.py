"""What a notice will look like, before any is sent: the coordinator previews the incident's
notice (and the console, issue 14, shows it) for a synthetic sample person, in English or te
reo, and gets the fingerprint of the te reo templates to approve (intake's
POST /v1/incidents/{id}/templates-mi/approval). The preview renders the templates as if
approved, so the coordinator sees exactly what a te reo reader would get once they are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.common.messages import IncidentMessage, templates_fingerprint
from services.dispatch.content.dry_run import mark_email, mark_letter, mark_sms
from services.dispatch.content.models import IncidentContent, Notice
from services.dispatch.content.render import (
    RenderedEmail,
    RenderedSms,
    render_email,
    render_letter_text,
    render_sms,
)

# Synthetic, obviously a sample (NHI-style ids for tests start with Z; this has none at all).
SAMPLE_RECIPIENT = {
    "given_names": "Aroha", "family_name": "Tauira (sample)",
    "email": "aroha.tauira@example.invalid", "mobile": "+64210000000",
    "address": {"line1": "1 Tauira Street", "suburb": "Te Aro", "city": "Wellington",
                "postcode": "6011"},
}


@dataclass(frozen=True)
class Preview:
    language: str
    bilingual: bool
    templates_mi_fingerprint: str | None  # what to approve; None: no te reo templates
    templates_mi_approved: bool
    dry_run: bool
    email: RenderedEmail
    sms: RenderedSms
    letter_text: str


def preview_notice(incident: IncidentMessage, language: Literal["en", "mi"] = "mi") -> Preview:
    """The incident's notice for the sample person, with every agency of the incident."""
    content = IncidentContent.from_contract(incident)
    approved = content.mi_templates_approved
    if content.mi_templates is not None:
        content = content.model_copy(update={"mi_templates_approved": True})
    notice = {
        "notice_id": f"preview-{incident.incident_id}", "incident_id": incident.incident_id,
        "person_id": "preview", "recipient": SAMPLE_RECIPIENT, "preferred_language": language,
        "agencies": [{"agency_id": a.agency_id, "name": a.name, "data_categories": ["clinical_notes"],
                      "document_count": None} for a in incident.agencies]
        or [{"agency_id": "sample", "name": "Sample Health Provider", "document_count": None}],
    }
    templates = incident.content.templates_mi
    email, sms = render_email(notice, content), render_sms(notice, content)
    letter = render_letter_text(notice, content)
    if incident.dry_run:  # as the simulated gateways will get it
        email, sms, letter = mark_email(email), mark_sms(sms), mark_letter(letter)
    return Preview(
        language=language, bilingual=content.bilingual and language == "mi",
        templates_mi_fingerprint=templates_fingerprint(templates) if templates else None,
        templates_mi_approved=approved, dry_run=incident.dry_run,
        email=email, sms=sms, letter_text=letter,
    )


@dataclass(frozen=True)
class NoticeRendering:
    language: str
    email: RenderedEmail | None  # None: the addressee has no email address
    sms: RenderedSms | None  # None: no mobile number
    letter_text: str


def render_stored(notice: Notice, content: IncidentContent, language: str | None,
                  full_notice_via: Literal["email", "postal", "none"],
                  dry_run: bool = False) -> NoticeRendering:
    """A stored notice as the sender renders it (the same functions, the same inputs, the
    dry-run mark), in its person's language unless `language` asks for the other one."""
    if language is not None and language != notice.preferred_language:
        notice = notice.model_copy(update={"preferred_language": language})
    email = render_email(notice, content) if notice.addressee_email else None
    sms = render_sms(notice, content, full_notice_via=full_notice_via) \
        if notice.addressee_mobile else None
    letter = render_letter_text(notice, content)
    if dry_run:
        email, sms = email and mark_email(email), sms and mark_sms(sms)
        letter = mark_letter(letter)
    return NoticeRendering(language=notice.preferred_language, email=email, sms=sms,
                           letter_text=letter)
