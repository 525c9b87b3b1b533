"""The HTML email in a real browser (issue 17): Debian's headless Chromium at a narrow phone's
width, light and dark, checked by axe-core (WCAG 2.2 A/AA + best practices) with no serious or
critical violation, reflowing without sideways scrolling, with the page language set. The
phone-width screenshots are saved under var/artifacts/."""

import pytest

from services.dispatch.content.render import render_email
from testkit.browser import chromium, open_html, run_axe
from testkit.infra import REPO

from .conftest import make_notice

pytestmark = [pytest.mark.slow]

ARTIFACTS = REPO / "var" / "artifacts"
PHONE = 320  # CSS px: the narrowest phone in common use (and WCAG 1.4.10's reflow width)


def _notice(language: str) -> dict:
    notice = make_notice(preferred_language=language, version=2)
    notice["agencies"][0]["name"] = "Kōwhai Hauora Māori Medical Centre and After-Hours Clinic"
    notice["agencies"][1]["document_count"] = None
    return notice


@pytest.mark.parametrize("language", ["en", "mi"])
def test_the_html_email_passes_axe_at_phone_width_in_light_and_dark_mode(incident, tmp_path,
                                                                        language):
    email = render_email(_notice(language), incident)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium(PHONE, 1400) as browser:
        for dark in (False, True):
            open_html(browser, email.html, tmp_path, dark=dark)
            result = run_axe(browser)
            serious = [(v["id"], v["impact"], len(v["nodes"])) for v in result["violations"]
                       if v["impact"] in ("serious", "critical")]
            assert serious == [], serious
            assert result["passes"] > 10  # axe really ran its rules
            # Reflow: nothing wider than the phone, so no sideways scrolling (WCAG 1.4.10).
            assert browser.execute_script(
                "return document.documentElement.scrollWidth") <= PHONE
            body_bg = browser.execute_script(
                "return getComputedStyle(document.querySelector('main')).backgroundColor")
            assert body_bg == ("rgb(11, 12, 12)" if dark else "rgb(255, 255, 255)")
            mode = "dark" if dark else "light"
            browser.save_screenshot(str(ARTIFACTS / f"email-phone-{language}-{mode}.png"))
        # Page language, headings and te reo phrases marked as te reo.
        assert browser.execute_script("return document.documentElement.lang") == "en-NZ"
        headings = browser.execute_script(
            "return [...document.querySelectorAll('h1,h2')].map(h => h.tagName + ':' + h.textContent)")
        assert headings[0].startswith("H1:Update: ") and len(headings) == 8
        assert all(h.startswith("H2:") for h in headings[1:])
        mi = browser.execute_script(
            "return [...document.querySelectorAll('[lang=mi]')].map(e => e.textContent)")
        assert mi[0] == ("Kia ora" if language == "en" else "Tēnā koe")
        if language == "mi":
            assert "Kei te reo Pākehā te nuinga o tēnei pānui." in mi
            assert "Most of this notice is in English." in email.html


def test_a_coordinator_te_reo_template_is_marked_as_te_reo(incident, tmp_path):
    incident["mi_templates_approved"] = True  # previewed and approved
    incident["templates_mi"] = {
        "email_html": "<!DOCTYPE html><html lang=\"mi\"><head><title>Pānui</title></head><body>"
                      "<main><h1>Pānui</h1><p>Tēnā koe {{ addressee_given_name }}. "
                      "{{ incident.sender_name }} {% for a in agencies %}{{ a.name }} {% endfor %}"
                      "{{ contact.phone }} {{ contact.web_address | nolink }} {{ reference_code }}"
                      "</p></main></body></html>",
    }
    email = render_email(_notice("mi"), incident)
    with chromium(PHONE) as browser:
        open_html(browser, email.html, tmp_path)
        assert browser.execute_script("return document.documentElement.lang") == "mi"
        serious = [v["id"] for v in run_axe(browser)["violations"]
                   if v["impact"] in ("serious", "critical")]
        assert serious == []


def test_a_bilingual_notice_marks_each_language_and_passes_axe(incident, tmp_path):
    incident["mi_templates_approved"] = True  # previewed and approved
    incident["bilingual"] = True
    incident["templates_mi"] = {
        "email_html": "<h1>Pānui</h1><p>Tēnā koe {{ addressee_given_name }}. "
                      "{{ incident.sender_name }} {% for a in agencies %}{{ a.name }} {% endfor %}"
                      "{{ contact.phone }} {{ contact.web_address | nolink }} {{ reference_code }}</p>",
    }
    email = render_email(_notice("mi"), incident)
    with chromium(PHONE) as browser:
        open_html(browser, email.html, tmp_path)
        langs = browser.execute_script(
            "return [...document.querySelectorAll('section')].map(s => s.lang)")
        assert langs == ["mi", "en-NZ"]
        serious = [v["id"] for v in run_axe(browser)["violations"]
                   if v["impact"] in ("serious", "critical")]
        assert serious == []
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE
