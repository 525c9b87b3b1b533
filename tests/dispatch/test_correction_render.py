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
def test_te_reo_preference_gets_the_te_reo_wrapper_of_the_correction(incident, kind):
    """As a te reo reader's notice without approved templates: a te reo greeting and sign-off
    around the English correction, saying so plainly — never a coordinator's template, which
    knows nothing of corrections — on every channel."""
    notice = _correction(kind, preferred_language="mi",
                         **({"agencies": [LAB]} if kind == "sent_in_error" else {}))
    email = render_email(notice, incident)
    assert email.language == "mi" and email.subject.startswith("Pānui: Correction: ")
    letter = render_letter_text(notice, incident)
    assert email.text.startswith("Tēnā koe Testperson1,") and letter.startswith("Tēnā koe")
    assert "CORRECTION TO AN EARLIER NOTICE" in email.text and "CORRECTION" in letter
    assert '<span lang="mi">Tēnā koe</span> Testperson1,' in email.html
    for body in (email.text, _text(email.html), letter):
        assert "Kei te reo Pākehā te nuinga o tēnei pānui. Most of this notice is in English." in body
        assert "Nāku noa, nā" in body and "Ngā mihi" not in body
        assert "Test Community Lab" in body and email.reference_code in body
    assert '<span lang="mi">Kei te reo Pākehā' in email.html
    sms = render_sms(notice, incident)
    assert sms.body.startswith("Tēnā koe. ") and email.reference_code in sms.body
    assert sms.segments.encoding == "UCS-2"  # the macron
    assert sms.segments.segments <= incident.get("sms_segment_budget", 3)
    english = render_email(_correction(kind, **({"agencies": [LAB]} if kind == "sent_in_error"
                                               else {})), incident)
    assert english.language == "en" and "Tēnā koe" not in english.text


def test_a_correction_letter_says_what_the_correction_email_says(incident):
    """Read back from the real PDF (poppler), as the other letters are."""
    notice = _correction("sent_in_error", agencies=[LAB])
    letter = layout.render_letter_pdf(notice, incident, letter_date=date(2026, 12, 2))
    text = " ".join(pdf_text(letter.pdf).split())
    assert "sent to you by mistake" in text and "Test Community Lab" in text
    assert letter.reference_code == render_email(notice, incident).reference_code
    assert f"Reference {letter.reference_code}" in text


@pytest.mark.parametrize("language", ["en", "mi"])
@pytest.mark.parametrize("kind", ["sent_in_error", "agency_not_involved"])
def test_a_correction_reads_at_or_below_the_stated_grade(incident, kind, language):
    """The Plain Language Act bound every bundled template meets (test_plain_language.py)."""
    extra = {"agencies": [LAB]} if kind == "sent_in_error" else {}
    notice = _correction(kind, preferred_language=language, **extra)
    email = render_email(notice, incident)
    texts = {"text": email.text, "sms": render_sms(notice, incident).body}
    for name, text in texts.items():
        prose = "\n".join(line for line in text.splitlines()
                          if not re.fullmatch(r"[A-ZĀĒĪŌŪ ,']{4,}", line.strip())
                          and not line.lstrip().startswith("- "))
        assert measure(prose).grade <= MAX_GRADE, (name, measure(prose).grade)


def test_an_agency_correction_for_a_notice_never_sent_is_the_first_notice(incident):
    """Version 1 was still queued for the morning (quiet hours) and superseded unsent: the
    person never got it, so the correction cannot say "we sent you a notice" — it is the
    person's first notice, about the agencies that stand, with everything s 117 requires."""
    notice = _correction("agency_not_involved", updates_earlier=False)
    email = render_email(notice, incident)
    sms = render_sms(notice, incident)
    letter = render_letter_text(notice, incident)
    for body in (email.text, _text(email.html), letter, sms.body):
        assert "sent you" not in body and "earlier notice" not in body.lower()
        assert "orrection" not in body and "Test Community Lab" not in body  # never named to them
    assert "emailed you a notice about" in sms.body  # the first notice's SMS
    for body in (email.text, letter):
        assert "Example Medical Centre" in body
        assert "Be wary of calls" in body and "Privacy Commissioner" in body  # the full notice
        assert "updates the notice we sent you" not in body
    assert not email.subject.startswith("Correction")
    told = render_email(_correction("agency_not_involved", updates_earlier=True), incident)
    assert "The rest of the earlier notice still stands" in told.text


EMAILED = {"reference": "PAN-ABCD-EFGH", "sent_on": "3 March 2026", "channel": "email"}


@pytest.mark.parametrize("kind", ["sent_in_error", "agency_not_involved"])
def test_a_correction_letter_says_which_notice_it_corrects_what_changed_and_how_to_check(
        incident, kind):
    """A letter has no subject line and may be read days later: it says which notice it
    corrects (how and when we sent it, and its reference — what the person holds), what that
    said, what has changed, its own reference, how to check it is real and the contact line."""
    extra = {"agencies": [LAB]} if kind == "sent_in_error" else {}
    notice = _correction(kind, told_before=EMAILED, **extra)
    letter = render_letter_text(notice, incident)
    ref = render_email(notice, incident).reference_code
    assert "CORRECTION TO A NOTICE WE SENT YOU" in letter
    assert "WHAT WE TOLD YOU BEFORE\nOn 3 March 2026 Example Health emailed you about a " \
        "privacy breach" in letter
    assert "That notice had the reference PAN-ABCD-EFGH." in letter
    assert "It said that information about you held by Test Community Lab was involved." in letter
    changed = letter.split("WHAT HAS CHANGED", 1)[1]
    assert ("sent to you by mistake" if kind == "sent_in_error"
            else "Test Community Lab was not involved") in changed
    assert f"This letter's reference is {ref}." in letter
    check = letter.split("HOW TO CHECK THIS LETTER IS REAL", 1)[1]
    assert "We will never ask for" in check and "type panui.example.nz/check into your " \
        "browser yourself, or call 0800 000 111" in check
    assert "CONTACT US" in letter and "Privacy Commissioner" in letter
    assert "http" not in letter and "click" not in letter.lower()
    texted = render_letter_text(_correction(kind, told_before=EMAILED | {"channel": "postal"},
                                            **extra), incident)
    assert "Example Health wrote to you about a privacy breach" in texted


def test_a_correction_letter_without_the_earlier_send_known_still_says_what_it_corrects(incident):
    letter = render_letter_text(_correction("sent_in_error", agencies=[LAB]), incident)
    assert "WHAT WE TOLD YOU BEFORE\nExample Health sent you a notice about a privacy " \
        "breach" in letter
    assert "That notice had the reference" not in letter


@pytest.mark.parametrize("language", ["en", "mi"])
@pytest.mark.parametrize("kind", ["sent_in_error", "agency_not_involved"])
def test_a_correction_letter_reads_at_or_below_the_stated_grade(incident, kind, language):
    """The same bound (and the same way of measuring) as the correction's email and SMS."""
    extra = {"agencies": [LAB]} if kind == "sent_in_error" else {}
    letter = render_letter_text(_correction(kind, preferred_language=language,
                                            told_before=EMAILED, **extra), incident)
    if language == "mi":
        assert letter.startswith("Tēnā koe") and "Nāku noa, nā" in letter
    prose = "\n".join(line for line in letter.splitlines()
                      if not re.fullmatch(r"[A-ZĀĒĪŌŪ ,']{4,}", line.strip())
                      and not line.lstrip().startswith("- "))
    assert measure(prose).grade <= MAX_GRADE, measure(prose).grade


def test_a_correction_letter_pdf_keeps_every_heading_and_names_the_earlier_notice(incident):
    """Read back from the real PDF (poppler): the title and the first section's heading come
    one after the other, and neither is lost."""
    notice = _correction("sent_in_error", agencies=[LAB], told_before=EMAILED)
    letter = layout.render_letter_pdf(notice, incident, letter_date=date(2026, 12, 2))
    text = " ".join(pdf_text(letter.pdf).split())
    assert "CORRECTION TO A NOTICE WE SENT YOU WHAT WE TOLD YOU BEFORE On 3 March 2026" in text
    assert "PAN-ABCD-EFGH" in text and "HOW TO CHECK THIS LETTER IS REAL" in text
