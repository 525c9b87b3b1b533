"""Correction notices (issue 16's retractions) render on every channel with what was wrong
and what stands, and pass the checks every notice passes: the reference, no link, the
never-ask list, the typed-in web address and the contact line."""

import re
from datetime import date

import pytest

from services.common.readability import MAX_GRADE, measure
from services.dispatch.content.render import render_email, render_letter_text, render_sms
from services.dispatch.letters import layout
from testkit.rendering import pdf_text

from .conftest import make_notice

LAB = {"agency_id": "lab", "name": "Test Community Lab", "data_categories": ["lab_results"],
       "document_count": 2}


def _correction(kind: str, **overrides) -> dict:
    return make_notice(version=2, correction={"kind": kind, "agencies": [LAB],
                                              "review_id": "rev-1"}, **overrides)


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def test_sent_in_error_says_so_and_asks_for_nothing(incident):
    notice = _correction("sent_in_error", agencies=[LAB])
    email = render_email(notice, incident)
    assert email.subject.startswith("Correction: ")
    for body in (email.text, _text(email.html), render_letter_text(notice, incident)):
        assert "sent to you by mistake" in body
        assert "no information about you was involved" in body
        assert "Test Community Lab" in body
        assert email.reference_code in body
        assert "0800 000 111" in body and "We will never ask for" in body
        assert "WHAT YOU CAN DO" not in body and "Be wary of calls" not in body
    assert "http" not in email.html and "<a " not in email.html
    sms = render_sms(notice, incident)
    assert "sent by mistake" in sms.body and email.reference_code in sms.body
    assert sms.segments.segments <= incident.get("sms_segment_budget", 3)


def test_agency_not_involved_names_it_and_what_stands(incident):
    notice = _correction("agency_not_involved")
    email = render_email(notice, incident)
    stands = notice["agencies"][0]["name"]
    for body in (email.text, _text(email.html)):
        assert "Test Community Lab was not involved" in body
        assert "The rest of the earlier notice still stands" in body
        assert stands in body
        assert "sent to you by mistake" not in body
    assert "Test Community Lab was not involved" in render_sms(notice, incident).body


def test_a_correction_to_a_representative_is_about_the_person(incident):
    notice = _correction("sent_in_error", agencies=[LAB], representative={
        "name": "Parent Testperson", "relationship": "parent", "email": "parent@example.nz"})
    email = render_email(notice, incident)
    assert email.to == "parent@example.nz"
    assert "as the parent of Testperson1 Fakename1" in email.text
    assert "no information about Testperson1 Fakename1 was involved" in email.text


@pytest.mark.parametrize("kind", ["sent_in_error", "agency_not_involved"])
def test_te_reo_preference_gets_the_english_correction(incident, kind):
    """No approved te reo wording of a correction exists yet: English, never a coordinator's
    template that knows nothing of corrections."""
    email = render_email(_correction(kind, preferred_language="mi",
                                     **({"agencies": [LAB]} if kind == "sent_in_error" else {})),
                         incident)
    assert email.language == "en" and "CORRECTION TO AN EARLIER NOTICE" in email.text


def test_a_correction_letter_says_what_the_correction_email_says(incident):
    """Read back from the real PDF (poppler), as the other letters are."""
    notice = _correction("sent_in_error", agencies=[LAB])
    letter = layout.render_letter_pdf(notice, incident, letter_date=date(2026, 12, 2))
    text = " ".join(pdf_text(letter.pdf).split())
    assert "sent to you by mistake" in text and "Test Community Lab" in text
    assert letter.reference_code == render_email(notice, incident).reference_code
    assert f"Reference {letter.reference_code}" in text


@pytest.mark.parametrize("kind", ["sent_in_error", "agency_not_involved"])
def test_a_correction_reads_at_or_below_the_stated_grade(incident, kind):
    """The Plain Language Act bound every bundled template meets (test_plain_language.py)."""
    extra = {"agencies": [LAB]} if kind == "sent_in_error" else {}
    notice = _correction(kind, **extra)
    email = render_email(notice, incident)
    texts = {"text": email.text, "sms": render_sms(notice, incident).body}
    for name, text in texts.items():
        prose = "\n".join(line for line in text.splitlines()
                          if not re.fullmatch(r"[A-ZĀĒĪŌŪ ,']{4,}", line.strip())
                          and not line.lstrip().startswith("- "))
        assert measure(prose).grade <= MAX_GRADE, (name, measure(prose).grade)
