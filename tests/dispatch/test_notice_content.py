"""What a person reads (issue 17): nothing misleading. An agency that gave no document count
must never read as "0 documents"."""

import re

import pytest

from services.dispatch.content.render import render_email, render_letter_text

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
