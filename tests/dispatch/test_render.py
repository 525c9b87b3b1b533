import re
import time

import pytest

from services.dispatch.content.models import derive_reference_code
from services.dispatch.content.render import (
    RenderError,
    SmsTooLong,
    UnsafeContent,
    render_email,
    render_letter_text,
    render_sms,
)
from services.dispatch.content.sms_segments import SmsEncoding

from .conftest import make_notice

S117_PHRASES = [
    "copied records from the patient portal",  # breach description
    "suspect holds the information",  # suspected-holder statement
    "closed the portal",  # steps taken
    "Be wary of calls",  # steps the person can take
    "notified the Privacy Commissioner",  # Commissioner notified
    "right to complain to the Privacy Commissioner",  # right to complain
    "0800 000 111",  # contact point
    "Example Helpline",
]


def _html_text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


@pytest.mark.parametrize("part", ["text", "html"])
def test_email_has_every_s117_element_and_agency_detail(incident, part):
    email = render_email(make_notice(), incident)
    body = email.text if part == "text" else _html_text(email.html)
    for phrase in S117_PHRASES:
        assert phrase in body, phrase
    assert "Example Medical Centre" in body and "Sample Pharmacy" in body
    assert "Laboratory test results" in body  # human label, not 'lab_results'
    assert "lab_results" not in body
    assert "Exotic thing" in body  # unknown category still readable
    assert "12" in body
    assert "4 March 2026" in body
    assert email.reference_code in body
    for never in ("your passwords", "payment or bank details", "one-time codes"):
        assert never in body


def test_email_has_no_links_and_breaks_autolinking(incident):
    email = render_email(make_notice(), incident)
    assert "<a" not in email.html.lower() and "href" not in email.html.lower()
    assert "http://" not in email.html + email.text and "https://" not in email.html + email.text
    assert "panui.example.nz/check" in email.text  # typed form, scheme removed
    assert "panui.example.nz" not in email.html  # split so clients do not linkify
    assert "panui<span>.</span>example<span>.</span>nz/check" in email.html


def test_html_is_autoescaped(incident):
    incident["breach_description"] = "<script>alert(1)</script> & <a href='x'>click</a>"
    email = render_email(make_notice(), incident)
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html
    assert "<a href" not in email.html


def test_reference_code_is_deterministic_and_overridable(incident):
    code = derive_reference_code("NOTICE-0001")
    assert re.fullmatch(r"PAN-[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}", code)
    assert code == derive_reference_code("NOTICE-0001") != derive_reference_code("NOTICE-0002")
    assert render_email(make_notice(), incident).reference_code == code
    given = render_email(make_notice(reference_code="PAN-7K3Q-9XWD"), incident)
    assert given.reference_code == "PAN-7K3Q-9XWD" and "PAN-7K3Q-9XWD" in given.text


def test_only_this_persons_details_appear(incident):
    one, two = make_notice(1), make_notice(2)
    r1, r2 = render_email(one, incident), render_email(two, incident)
    s1, s2 = render_sms(one, incident), render_sms(two, incident)
    l1, l2 = render_letter_text(one, incident), render_letter_text(two, incident)
    for mine, theirs in ((one, two), (two, one)):
        rendered = r1 if mine is one else r2
        sms = s1 if mine is one else s2
        letter = l1 if mine is one else l2
        blob = rendered.subject + rendered.text + rendered.html + sms.body + letter
        rec = theirs["recipient"]
        for value in (
            rec["given_names"],
            rec["family_name"],
            rec["email"],
            rec["mobile"],
            rec["address"]["line1"],
            theirs["notice_id"],
        ):
            assert value not in blob
        assert derive_reference_code(theirs["notice_id"]) not in blob
        assert mine["recipient"]["given_names"] in rendered.text


def test_amendment_says_it_updates_earlier_notice(incident):
    first = render_email(make_notice(version=1), incident)
    second = render_email(make_notice(version=2), incident)
    assert "updates the notice we sent you earlier" in second.text
    assert "updates the notice we sent you earlier" in second.html
    assert second.subject.startswith("Update:")
    assert "earlier" not in first.text
    assert "updated notice" in render_sms(make_notice(version=2), incident).body


def test_representative_is_addressed(incident):
    notice = make_notice(
        representative={
            "name": "Guardian Testrep",
            "relationship": "parent",
            "email": "rep@example.nz",
            "mobile": "+64210009999",
        }
    )
    email = render_email(notice, incident)
    assert email.to == "rep@example.nz"
    assert email.text.startswith("Kia ora Guardian Testrep,")
    assert "parent of Testperson1 Fakename1" in email.text
    assert render_sms(notice, incident).to == "+64210009999"


def test_refuses_when_commissioner_not_notified(incident):
    incident["privacy_commissioner_notified"] = False
    with pytest.raises(RenderError, match="Privacy Commissioner"):
        render_email(make_notice(), incident)


def test_refuses_mismatched_incident(incident):
    with pytest.raises(RenderError, match="different incidents"):
        render_email(make_notice(incident_id="OTHER"), incident)


def test_error_messages_carry_no_personal_data(incident):
    notice = make_notice()
    notice["recipient"]["email"] = None
    with pytest.raises(RenderError) as exc:
        render_email(notice, incident)
    assert "example.nz" not in str(exc.value) and "Testperson" not in str(exc.value)


# ------------------------------------------------------------------- te reo Māori


def test_mi_without_coordinator_templates_uses_bundled_bilingual(incident):
    email = render_email(make_notice(preferred_language="mi"), incident)
    assert email.text.startswith("Tēnā koe Testperson1,")
    assert "notified the Privacy Commissioner" in email.text  # English body as fallback
    assert email.language == "mi"


def test_mi_coordinator_templates_are_used_and_sandboxed(incident):
    incident["mi_templates_approved"] = True  # previewed and approved
    incident["templates_mi"] = {
        "email_subject": "Pānui mō {{ incident.title }} ({{ reference_code }})",
        "email_text": "Tēnā koe {{ addressee_given_name }}. {{ incident.sender_name }} {% for a in agencies %}{{ a.name }} {% endfor %}{{ contact.phone }} {{ contact.web_address }} {{ reference_code }}",
        "email_html": "<p>Tēnā koe {{ addressee_given_name }}</p><p>{{ incident.sender_name }} {% for a in agencies %}{{ a.name }} {% endfor %}{{ contact.phone }} {{ contact.web_address | nolink }} {{ reference_code }}</p>",
    }
    email = render_email(make_notice(preferred_language="mi"), incident)
    assert email.subject.startswith("Pānui mō")
    assert email.text.startswith("Tēnā koe Testperson1.")
    # Only mi readers get the coordinator template.
    assert render_email(make_notice(), incident).text.startswith("Kia ora")


def test_coordinator_template_with_link_is_refused(incident):
    incident["mi_templates_approved"] = True  # previewed and approved
    incident["templates_mi"] = {
        "email_html": "<p><a href='https://evil.example'>Click</a> {{ reference_code }}</p>",
    }
    with pytest.raises(UnsafeContent):
        render_email(make_notice(preferred_language="mi"), incident)


def test_coordinator_template_missing_contact_is_refused(incident):
    incident["mi_templates_approved"] = True  # previewed and approved
    incident["templates_mi"] = {"email_text": "Tēnā koe {{ reference_code }}"}
    with pytest.raises(RenderError, match="missing"):
        render_email(make_notice(preferred_language="mi"), incident)


def test_coordinator_template_cannot_escape_sandbox(incident):
    incident["mi_templates_approved"] = True  # previewed and approved
    incident["templates_mi"] = {"email_text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}
    with pytest.raises(RenderError):
        render_email(make_notice(preferred_language="mi"), incident)


@pytest.mark.parametrize("source", [
    "{{ 'a' * 50000000 }}",  # the resource exhaustion
    "{{ ['a'] * 50000000 }}",
    "{{ 'a' * 90000 + 'b' * 90000 }}",
    "{{ 'x'|center(1000000000) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ 9 ** 9999999 }}",
    "{{ 'x'.ljust(1000000000) }}",
    "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
    "{% for i in range(100000000) %}x{% endfor %}",
    "{{ lipsum(100000) }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{{ ('x' * 99999) ~ ('y' * 99999) }}",
])
def test_coordinator_templates_are_bounded_in_size_and_time(incident, source):
    incident["mi_templates_approved"] = True  # previewed and approved
    incident["templates_mi"] = {"email_text": source}
    started = time.monotonic()
    with pytest.raises(RenderError) as refused:
        render_email(make_notice(preferred_language="mi"), incident)
    assert time.monotonic() - started < 10  # bounded, not a benchmark: the sandbox's bound is 1 s
    assert "coordinator template 'email_text' failed" in str(refused.value)


def test_coordinator_templates_cannot_change_the_context(incident):
    incident["mi_templates_approved"] = True  # previewed and approved
    incident["templates_mi"] = {"email_text": "{{ agencies.append(1) }}{{ reference_code }}"}
    with pytest.raises(RenderError, match="unsafe|SecurityError"):
        render_email(make_notice(preferred_language="mi"), incident)


def test_coordinator_template_errors_carry_no_values(incident):
    notice = make_notice(preferred_language="mi")
    given = notice["recipient"]["given_names"]
    for source in ("{{ addressee_given_name | int(strict) }}", "{{ addressee_given_name + 1 }}",
                   "{{ addressee_given_name.nope }}", "{{ 1 / 0 }}", "{{ addressee_given_name[99] }}"):
        incident["mi_templates_approved"] = True  # previewed and approved
        incident["templates_mi"] = {"email_text": f"line one\n{source}"}
        with pytest.raises(RenderError) as refused:
            render_email(notice, incident)
        message = str(refused.value)
        assert given not in message and "Testperson1" not in message, message
        assert "line 2" in message or "line ?" in message, message


def test_a_notice_with_coordinator_templates_is_rendered_off_the_loop(incident):
    from services.dispatch.content.render import as_models, uses_coordinator_templates

    incident["mi_templates_approved"] = True  # previewed and approved
    incident["templates_mi"] = {"email_text": "{{ reference_code }}"}
    assert uses_coordinator_templates(*as_models(make_notice(preferred_language="mi"), incident))
    assert not uses_coordinator_templates(*as_models(make_notice(), incident))


# ------------------------------------------------------------------- SMS


def test_sms_points_to_email_when_person_has_email(incident):
    sms = render_sms(make_notice(), incident)
    assert "emailed you" in sms.body
    assert "Example Health" in sms.body and "0800 000 111" in sms.body
    assert "panui.example.nz/check" in sms.body and "https://" not in sms.body
    assert sms.reference_code in sms.body
    assert sms.variant == "full"
    assert sms.segments.encoding is SmsEncoding.GSM7
    assert sms.segments.segments <= 3
    # No names or agencies in SMS: lock screens and shared phones.
    assert "Testperson1" not in sms.body and "Medical Centre" not in sms.body


def test_sms_points_to_post_or_summarises_when_no_email(incident):
    notice = make_notice()
    notice["recipient"]["email"] = None
    assert "posting you" in render_sms(notice, incident).body
    notice["recipient"]["address"] = None
    body = render_sms(notice, incident).body
    assert "was involved in the Example portal breach" in body and "read the full notice" in body


def test_sms_falls_back_to_short_variant_when_over_budget(incident):
    incident["sms_segment_budget"] = 1
    sms = render_sms(make_notice(), incident)
    assert sms.variant == "short"
    assert sms.segments.segments == 1
    assert sms.reference_code in sms.body and "0800 000 111" in sms.body


def test_macron_switches_sms_to_ucs2_and_forces_short_variant(incident):
    full_gsm = render_sms(make_notice(), incident)
    assert full_gsm.variant == "full" and full_gsm.segments.segments == 2
    # One macron: the same ~230 characters are now 4 UCS-2 parts (67 each) > budget 3.
    incident["sender_name"] = "Hauora Ātea"
    sms = render_sms(make_notice(), incident)
    assert sms.segments.encoding is SmsEncoding.UCS2
    assert sms.variant == "short" and sms.segments.segments <= 3


def test_sms_too_long_even_when_short_raises(incident):
    incident["sms_segment_budget"] = 1
    incident["sender_name"] = "Hauora Ātea"  # UCS-2: 70 units single
    with pytest.raises(SmsTooLong, match="budget of 1 segment"):
        render_sms(make_notice(), incident)


def test_mi_sms_is_ucs2(incident):
    sms = render_sms(make_notice(preferred_language="mi"), incident)
    assert sms.body.startswith("Tēnā koe.")
    assert sms.segments.encoding is SmsEncoding.UCS2
    assert sms.segments.segments <= 3


def test_sms_requires_mobile(incident):
    notice = make_notice()
    notice["recipient"]["mobile"] = None
    with pytest.raises(RenderError, match="no mobile"):
        render_sms(notice, incident)


# ------------------------------------------------------------------ skeleton = full render


def _variants():
    rep = {"name": "Guardian <Test> & 'Rep'", "relationship": 'parent "&" carer',
           "email": "rep@example.nz", "mobile": "+64210009999"}
    yield make_notice(1)
    yield make_notice(2, version=3)
    yield make_notice(3, representative=rep)
    yield make_notice(4, representative={**rep, "name": None, "relationship": None})
    yield make_notice(5, preferred_language="mi")
    yield make_notice(6, preferred_language="mi", representative=rep, version=2)
    yield make_notice(7, reference_code="PAN-7K3Q-9XWD")
    odd = make_notice(8)
    odd["recipient"]["given_names"] = "Ngā <b>Tama</b> & \"Hine\" {{ x }} \u00a0"
    odd["recipient"]["family_name"] = "O'Brien-Te Whare"
    yield odd
    nameless = make_notice(9)
    nameless["recipient"]["given_names"] = None
    yield nameless
    one = make_notice(10)
    one["agencies"] = one["agencies"][1:]
    yield one


def test_skeleton_rendering_equals_a_full_render(incident):
    """The per-(incident, language, agencies, flags) skeleton filled with one person's values
    must be byte-identical to rendering the bundled template for that person."""
    from services.dispatch.content import render as r

    content = r.as_models(make_notice(), incident)[1]
    for raw in _variants():
        notice = r.Notice.model_validate(raw)
        language = notice.preferred_language
        base = r.template_context(notice, content, language)
        contexts = [(name, base) for name in ("email_subject", "email_text", "email_html")]
        contexts += [(name, base | {"full_notice_via": via})
                     for name in ("sms", "sms_short") for via in ("email", "postal", "none")]
        for name, ctx in contexts:
            for _ in range(2):  # miss (builds the skeleton), then hit
                assert r.render_part(name, language, ctx, content) == \
                    r.render_bundled(name, language, ctx), (raw["notice_id"], name)


def test_skeletons_are_per_incident_revision(incident):
    first = render_email(make_notice(), incident)
    incident["title"] = "A different breach"
    second = render_email(make_notice(), incident)
    assert "A different breach" in second.text and "A different breach" not in first.text


def test_personal_values_are_still_checked_on_every_notice(incident):
    render_email(make_notice(1), incident)  # warm the skeleton
    hostile = make_notice(2)
    hostile["recipient"]["given_names"] = "https://evil.example"
    with pytest.raises(UnsafeContent):
        render_email(hostile, incident)
