"""Plain language (issue 17; the Plain Language Act 2022): every bundled template, as a person
reads it, stays at or below readability.MAX_GRADE (Flesch-Kincaid grade 8), and so does each of
its own paragraphs. The grades are written to var/artifacts/readability.json."""

import json
import re

import pytest

from services.common.readability import MAX_GRADE, check_fields, measure
from services.dispatch.content.models import DEFAULT_COMPLAINT_RIGHT, DEFAULT_NEVER_ASK
from services.dispatch.content.render import render_email, render_letter_text, render_sms
from testkit.infra import REPO

from .conftest import make_notice

GRADES: dict[str, float] = {}


def _prose(text: str) -> str:
    # Headings are labels, not sentences: left out so they do not flatter the grade.
    return "\n".join(line for line in text.splitlines()
                     if not re.fullmatch(r"[A-ZĀĒĪŌŪ ,']{4,}", line.strip()))


def _html_prose(html: str) -> str:
    body = html.split("<body", 1)[1]
    body = re.sub(r"<h2>.*?</h2>", "\n", body)
    body = re.sub(r"<span>\.</span>", ".", body)
    return re.sub(r"<(?:/p|br|/li|/tr|/h\d)[^>]*>", "\n", body).replace("&#39;", "'")


def _rendered(incident: dict, language: str) -> dict[str, str]:
    notice = make_notice(preferred_language=language)
    email = render_email(notice, incident)
    out = {
        f"email_text.{language}": email.text,
        f"email_html.{language}": re.sub(r"<[^>]+>", " ", _html_prose(email.html)),
        f"letter.{language}": render_letter_text(notice, incident),
        f"email_subject.{language}": email.subject,
    }
    for via in ("email", "postal", "none"):
        no_email = notice | {"recipient": notice["recipient"] | {"email": None}}
        sms = render_sms(no_email if via != "email" else notice, incident, full_notice_via=via)
        out[f"sms ({sms.variant}, {via}).{language}"] = sms.body
    return out


@pytest.mark.parametrize("language", ["en", "mi"])
def test_every_bundled_template_reads_at_or_below_the_stated_grade(incident, language):
    for name, text in _rendered(incident, language).items():
        grade = measure(_prose(text)).grade
        GRADES[name] = grade
        assert grade <= MAX_GRADE, (name, grade)


@pytest.mark.parametrize("language", ["en", "mi"])
def test_each_paragraph_the_templates_write_themselves_reads_at_or_below_the_grade(
    incident, language
):
    # The incident's free text replaced by a stub: what is left is the templates' own prose.
    for field in ("breach_description", "suspected_holder_statement", "steps_taken"):
        incident[field] = "Stub."
    incident["mitigation_advice"] = ["Stub."]
    text = _rendered(incident, language)[f"email_text.{language}"]
    # List items are labels and data (agency names, categories), not the templates' prose.
    prose = "\n".join(line for line in _prose(text).splitlines()
                       if not line.lstrip().startswith("- "))
    paragraphs = [p for p in re.split(r"\n\s*\n", prose) if len(p.split()) >= 12]
    assert len(paragraphs) >= 4
    worst = max(measure(p).grade for p in paragraphs)
    GRADES[f"hardest template paragraph.{language}"] = worst
    for p in paragraphs:
        assert measure(p).grade <= MAX_GRADE, p


def test_the_bundled_defaults_read_at_or_below_the_grade():
    assert measure(DEFAULT_COMPLAINT_RIGHT).grade <= MAX_GRADE
    assert check_fields({"complaint_right": DEFAULT_COMPLAINT_RIGHT,
                         "never_ask": "We will never ask for:\n" + "\n".join(DEFAULT_NEVER_ASK)}) == []


def test_the_measure_tells_plain_from_dense():
    plain = "We closed the portal. We changed every password. Call us if you are worried."
    dense = ("Notwithstanding the aforementioned unauthorised exfiltration, organisational "
             "remediation encompassing comprehensive credential rotation was instituted "
             "expeditiously in accordance with contractual obligations.")
    assert measure(plain).grade < 4 < MAX_GRADE < 20 < measure(dense).grade
    warnings = check_fields({"steps_taken": dense, "title": "Portal breach"})
    assert [(w.field, w.grade > MAX_GRADE) for w in warnings] == [("steps_taken", True)]
    assert "grade" in warnings[0].message and dense not in warnings[0].message


def test_zz_write_grades():
    out = REPO / "var" / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    (out / "readability.json").write_text(json.dumps(
        {"max_grade": MAX_GRADE, "grades": dict(sorted(GRADES.items()))}, indent=2))
