"""Te reo Māori done honestly (issue 17): the coordinator's te reo templates are used only once
approved exactly as previewed; bilingual notices carry te reo and English in one message; the
bundled wrapper says plainly that the body is in English."""

import re

from services.common.messages import templates_fingerprint
from services.dispatch.content.bilingual import BILINGUAL_TEXT_DIVIDER
from services.dispatch.content.models import IncidentContent
from services.dispatch.content.preview import SAMPLE_RECIPIENT, preview_notice
from services.dispatch.content.render import render_email, render_letter_text
from testkit.notices import incident_message

from .conftest import make_notice

TE_REO = {
    "email_subject": "Pānui mō te {{ incident.title }}",
    "email_text": "Tēnā koe {{ addressee_given_name }}.\n\nHe pānui tēnei nā {{ incident.sender_name }}."
                  "\n{% for a in agencies %}{{ a.name }}\n{% endfor %}Waea mai: {{ contact.phone }}, "
                  "{{ contact.web_address }}. Tohutoro: {{ reference_code }}",
    "email_html": "<p>Tēnā koe {{ addressee_given_name }}.</p><p>He pānui tēnei nā "
                  "{{ incident.sender_name }}. {% for a in agencies %}{{ a.name }} {% endfor %}"
                  "Waea mai: {{ contact.phone }}, {{ contact.web_address | nolink }}. "
                  "Tohutoro: {{ reference_code }}</p>",
}


def _content(approved: str | None, bilingual: bool = False, templates: dict = TE_REO) -> IncidentContent:
    message = incident_message(incident_id="INC-TEST-1", templates_mi=templates,
                               templates_mi_approved=approved, bilingual=bilingual)
    return IncidentContent.from_contract(message)


def _mi() -> dict:
    notice = make_notice(preferred_language="mi")
    notice["agencies"][0]["name"] = "Example Medical Centre"
    return notice


def test_the_bundled_wrapper_says_plainly_the_body_is_in_english(incident):
    email = render_email(_mi(), incident)
    assert "Most of this notice is in English." in email.text
    assert "Kei te reo Pākehā te nuinga o tēnei pānui." in email.text
    assert "Most of this notice is in English." in email.html
    assert "Most of this notice is in English." not in render_email(make_notice(), incident).text


def test_coordinator_templates_are_used_only_once_approved_as_they_are():
    unapproved = _content(None)
    assert unapproved.mi_templates is not None and not unapproved.mi_templates_approved
    assert "Most of this notice is in English." in render_email(_mi(), unapproved).text
    approved = _content(templates_fingerprint(TE_REO))
    assert render_email(_mi(), approved).text.startswith("Tēnā koe Testperson1.\n\nHe pānui")
    # Edited after the approval: the approval no longer holds.
    edited = dict(TE_REO, email_text=TE_REO["email_text"] + " Kua whakarerekētia.")
    stale = _content(templates_fingerprint(TE_REO), templates=edited)
    assert not stale.mi_templates_approved
    assert "Kua whakarerekētia" not in render_email(_mi(), stale).text


def test_a_bilingual_notice_carries_te_reo_then_english_in_one_message():
    content = _content(templates_fingerprint(TE_REO), bilingual=True)
    email = render_email(_mi(), content)
    mi_part, en_part = email.text.split(BILINGUAL_TEXT_DIVIDER)
    assert mi_part.startswith("Tēnā koe") and "Tohutoro:" in mi_part
    assert en_part.startswith("Kia ora Testperson1,")
    assert "notified the Privacy Commissioner" in en_part  # the full s 117 notice in English
    assert email.subject.startswith("Pānui mō te") and " / Example portal breach" in email.subject
    sections = re.findall(r'<section lang="([^"]+)">', email.html)
    assert sections == ["mi", "en-NZ"] and email.html.count("<body") == 1
    assert BILINGUAL_TEXT_DIVIDER in render_letter_text(_mi(), content)
    # English readers get English only; without approved templates there is no te reo part.
    assert BILINGUAL_TEXT_DIVIDER not in render_email(make_notice(), content).text
    assert BILINGUAL_TEXT_DIVIDER not in render_email(_mi(), _content(None, bilingual=True)).text


def test_the_preview_shows_what_a_te_reo_reader_would_get_and_what_to_approve():
    message = incident_message(incident_id="INC-TEST-1", templates_mi=TE_REO, bilingual=True)
    preview = preview_notice(message, "mi")
    assert preview.templates_mi_fingerprint == templates_fingerprint(TE_REO)
    assert preview.templates_mi_approved is False  # not used in real notices yet
    assert preview.email.text.startswith("Tēnā koe Aroha.")  # but previewed as if approved
    assert preview.bilingual and BILINGUAL_TEXT_DIVIDER in preview.email.text
    assert SAMPLE_RECIPIENT["family_name"] in preview.email.text or "Aroha" in preview.email.text
    assert preview.sms.body and preview.letter_text
    english = preview_notice(message, "en")
    assert english.email.text.startswith("Kia ora Aroha,") and not english.bilingual
