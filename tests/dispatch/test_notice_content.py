"""What a person reads (issue 17): nothing misleading. An agency that gave no document count
must never read as "0 documents"."""

import re

import pytest

from services.common.references import LENGTH, reference_from_digest
from services.dispatch.content.render import SmsTooLong, render_email, render_letter_text, render_sms
from services.dispatch.content.sms_segments import SmsEncoding, count_segments

from .conftest import make_notice


def _html_text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _unknown_count_notice() -> dict:
    notice = make_notice()
    notice["agencies"][1]["document_count"] = None
    return notice


@pytest.mark.parametrize("language", ["en", "mi"])
def test_an_unknown_document_count_reads_as_not_known_never_as_zero(incident, language):
    notice = _unknown_count_notice() | {"preferred_language": language}
    email = render_email(notice, incident)
    letter = render_letter_text(notice, incident)
    for body in (email.text, letter):
        assert "Sample Pharmacy (number of documents not known)" in body
        assert "Example Medical Centre (12 documents)" in body
        assert not re.search(r"\b0 documents?\b", body)
    row = re.search(r"Sample Pharmacy.*?</tr>", email.html, re.S).group(0)
    assert "Not known" in row and ">0<" not in row
    assert "Not known" not in re.search(r"Example Medical Centre.*?</tr>", email.html, re.S).group(0)


def test_a_real_zero_is_still_shown_as_zero(incident):
    notice = make_notice()
    notice["agencies"][1]["document_count"] = 0
    email = render_email(notice, incident)
    assert "Sample Pharmacy (0 documents)" in email.text
    assert "not known" not in email.text.lower()


# ------------------------------------------------------------------------------------- SMS
#
# The SMS names no person and no agency (nothing personal in a text message), so what makes it
# long is the incident's own text. The longest realistic values, as a New Zealand health
# breach would have them: a sender with a macron (so even the English SMS is UCS-2), a long
# title, a long typed web address, a phone number with an extension.
LONGEST = {
    "sender_name": "Te Whatu Ora – Health New Zealand Waitematā",
    "title": "Manage My Health patient portal privacy breach of December 2026",
    "contact": {"name": "Te Whatu Ora Privacy Breach Helpline", "phone": "0800 611 116 ext 2",
                "web_address": "www.tewhatuora.govt.nz/privacy-breach-check",
                "hours": "8am to 8pm"},
}
LONGEST_PERSON = {
    "given_names": "Wharekauri Tūmanako Hinewairangi",
    "family_name": "Te Rangitākuku-Pōtae",
}
LONGEST_REFERENCE = reference_from_digest("f" * 64)
MANY_AGENCIES = [
    {"agency_id": f"AG-{i}", "name": f"Ngā Kaitiaki o te Ora Hauora Medical Centre {i}",
     "data_categories": ["clinical_notes", "lab_results", "prescriptions"], "document_count": 99}
    for i in range(40)
]
REP = {"name": "Hinemoa Tūmanako-Whāngārei", "relationship": "parent",
       "mobile": "+64210009999"}


def _worst_case(incident: dict, language: str, *, email: bool, address: bool, rep: bool,
                version: int) -> tuple[dict, dict]:
    incident = incident | LONGEST
    # The reference as dedupe makes it now (12 characters, PAN-XXXX-XXXX-XXXX: the longest).
    notice = make_notice(version=version, preferred_language=language, agencies=MANY_AGENCIES,
                         reference_code=LONGEST_REFERENCE)
    notice["recipient"] |= LONGEST_PERSON
    if not email:
        notice["recipient"]["email"] = None
    if not address:
        notice["recipient"]["address"] = None
    if rep:
        notice["representative"] = REP | ({"email": "rep@example.nz"} if email else {})
    return notice, incident


@pytest.mark.parametrize("language", ["en", "mi"])
@pytest.mark.parametrize("via", ["email", "postal", "none"])
@pytest.mark.parametrize("rep", [False, True])
@pytest.mark.parametrize("version", [1, 2])
def test_every_sms_variant_fits_its_budget_at_the_longest_realistic_values(
    incident, language, via, rep, version
):
    notice, incident = _worst_case(incident, language, email=via == "email",
                                   address=via != "none", rep=rep, version=version)
    sms = render_sms(notice, incident)
    budget = incident["sms_segment_budget"]
    assert budget == 3  # the default
    assert sms.segments.segments <= budget
    # At these lengths the full (6 parts) and short (4) variants are over: the minimal one,
    # without the title, is what fits.
    assert sms.variant == "minimal"
    for part in (incident["sender_name"].replace("–", "-"), incident["contact"]["phone"],
                 incident["contact"]["web_address"]):
        assert part in sms.body
    # Macrons are counted: ā (in the sender's name, and 'Tēnā koe') makes it UCS-2, 67 a part.
    assert sms.segments.encoding is SmsEncoding.UCS2
    assert "ā" in sms.segments.non_gsm_characters
    assert sms.segments.segments == count_segments(sms.body).segments
    assert sms.segments.units == len(sms.body)
    assert sms.segments.segments == (1 if len(sms.body) <= 70 else -(-len(sms.body) // 67))
    # Nothing personal, whatever the name and agency list.
    assert "Wharekauri" not in sms.body and "Kaitiaki" not in sms.body
    assert sms.reference_code == LONGEST_REFERENCE and LONGEST_REFERENCE in sms.body
    assert len(LONGEST_REFERENCE) == len("PAN-") + LENGTH + 2


@pytest.mark.parametrize("language", ["en", "mi"])
def test_the_longest_variant_within_the_budget_is_sent_and_none_over_it(
    incident, language
):
    notice, incident = _worst_case(incident, language, email=False, address=False, rep=True,
                                   version=2)
    incident["sms_segment_budget"] = 4
    sms = render_sms(notice, incident)
    assert sms.variant == "short" and sms.segments.segments == 4
    assert incident["title"] in sms.body
    incident["sms_segment_budget"] = 2
    with pytest.raises(SmsTooLong, match="full=6 .*short=4 .*minimal=3 "):
        render_sms(notice, incident)


def test_a_plain_english_sms_stays_gsm7(incident):
    sms = render_sms(make_notice(), incident | {"sender_name": "Example Health"})
    assert sms.segments.encoding is SmsEncoding.GSM7
    assert sms.segments.segments == (1 if len(sms.body) <= 160 else -(-len(sms.body) // 153))
