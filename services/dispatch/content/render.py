"""Render one person's breach notice as email (subject, text, HTML), SMS and letter text.

Design rules (DOMAIN.md §1, §4):
- every email/letter carries all six s117 elements; rendering refuses if the incident content
  cannot support them (e.g. the Privacy Commissioner has not been notified yet);
- no clickable links, nothing asked of the reader, a reference code and a never-ask list;
- only this person's details are put into the template context, so nothing else can leak;
- coordinator-supplied te reo Māori templates run in a sandbox and pass the same safety checks.

Over 400 lines on purpose: the three channels share one template context, one set of safety
checks and the cached skeletons; split by channel, each part would rebuild the context.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from services.common.messages import IncidentMessage
from services.dispatch.content import sandbox
from services.dispatch.content.bilingual import BILINGUAL_TEXT_DIVIDER, bilingual_html, is_bilingual
from services.dispatch.content.checks import (  # noqa: F401 - the errors are render's API too
    RenderError,
    SmsTooLong,
    UnsafeContent,
    check_s117,
    check_safe,
)
from services.dispatch.content.models import IncidentContent, Notice
from services.dispatch.content.sms_segments import (
    SegmentCount,
    count_segments,
    downgrade_typography,
    normalise,
)

Language = Literal["en", "mi"]
FullNoticeVia = Literal["email", "postal", "none"]

DATA_CATEGORY_LABELS_EN: Mapping[str, str] = {
    "clinical_notes": "Clinical notes written by health professionals",
    "lab_results": "Laboratory test results",
    "test_results": "Test results",
    "imaging": "X-ray and scan reports",
    "prescriptions": "Prescriptions and medicines",
    "medications": "Medicines",
    "diagnoses": "Diagnoses and health conditions",
    "immunisations": "Immunisation records",
    "referrals": "Referral letters",
    "appointments": "Appointment history",
    "mental_health": "Mental health records",
    "sexual_health": "Sexual health records",
    "portal_messages": "Messages sent through the patient portal",
    "documents": "Documents uploaded to the portal",
    "nhi": "National Health Index (NHI) number",
    "demographics": "Name, date of birth and gender",
    "contact_details": "Contact details (address, phone, email)",
    "billing": "Billing and account information",
    "next_of_kin": "Next of kin and emergency contact details",
}


@dataclass(frozen=True)
class RenderedEmail:
    to: str
    subject: str
    text: str
    html: str
    language: Language
    reference_code: str


@dataclass(frozen=True)
class RenderedSms:
    to: str
    body: str
    language: Language
    reference_code: str
    variant: Literal["full", "short", "minimal"]
    segments: SegmentCount


# ---------------------------------------------------------------------------------- filters


def nolink(value: str) -> Markup:
    """Break up a web address so mail clients do not turn it into a link.

    Autolinkers match on a contiguous text run; wrapping each dot in its own element defeats
    the common ones while the reader still sees (and can type) the plain address.
    """
    return Markup("<span>.</span>").join(escape(part) for part in str(value).split("."))


def long_date(value: date | None) -> str:
    return f"{value.day} {value:%B %Y}" if value else ""


def _configure(env: Environment) -> Environment:
    env.filters["nolink"] = nolink
    env.filters["long_date"] = long_date
    env.trim_blocks = True
    env.lstrip_blocks = True
    env.keep_trailing_newline = False
    return env


_bundled = _configure(
    Environment(
        loader=PackageLoader("services.dispatch.content", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,
        # Bundled templates never change at runtime: no stat() of the file on every render.
        auto_reload=False,
    )
)
# Coordinator-supplied template source is data from outside the codebase: sandboxed, bounded.
sandbox.configure(_configure)


def uses_coordinator_templates(notice: Notice, incident: IncidentContent) -> bool:
    """Whether rendering this notice runs coordinator template source (then callers render it
    off the event loop: the sandbox bounds it at up to a second of CPU)."""
    return _language(notice) == "mi" and coordinator_templates(incident) is not None


def coordinator_templates(incident: IncidentContent) -> Any:
    """The coordinator's te reo templates, only once approved as they are (see preview.py)."""
    return incident.mi_templates if incident.mi_templates_approved else None


# ---------------------------------------------------------------------------------- context


def category_label(category: str, incident: IncidentContent, language: Language) -> str:
    for lang in (language, "en"):
        label = incident.data_category_labels.get(lang, {}).get(category)
        if label:
            return label
    return DATA_CATEGORY_LABELS_EN.get(category) or category.replace("_", " ").capitalize()


def template_context(notice: Notice, incident: IncidentContent, language: Language) -> dict[str, Any]:
    """What the templates see: this person's details and the incident's content, nothing else."""
    if notice.incident_id != incident.incident_id:
        raise RenderError("notice and incident content are for different incidents")
    if not incident.privacy_commissioner_notified:
        # s117(1)(d): the notice must confirm the Commissioner has been notified.
        raise RenderError("incident content does not confirm the Privacy Commissioner was notified")
    rep = notice.representative
    return {
        "language": language,
        "addressee_name": notice.addressee_name,
        "addressee_given_name": (rep.name if rep else notice.recipient.given_names) or "",
        "person_name": notice.recipient.full_name or "the person this notice is about",
        "representative": (
            {"name": rep.name or "", "relationship": rep.relationship or "representative"}
            if rep
            else None
        ),
        "is_amendment": notice.is_amendment,
        "version": notice.version,
        "reference_code": notice.effective_reference_code,
        "agencies": [
            {
                "name": a.name,
                "document_count": a.document_count,
                "categories": [category_label(c, incident, language) for c in a.data_categories],
            }
            for a in notice.agencies
        ],
        # None when any agency gave no count: a sum of the known ones would understate it.
        "total_documents": (
            None if any(a.document_count is None for a in notice.agencies)
            else sum(a.document_count or 0 for a in notice.agencies)
        ),
        "incident": {
            "title": incident.title,
            "breach_description": incident.breach_description,
            "suspected_holder_statement": incident.suspected_holder_statement,
            "steps_taken": incident.steps_taken,
            "mitigation_advice": list(incident.mitigation_advice),
            "privacy_commissioner_notified_on": incident.privacy_commissioner_notified_on,
            "complaint_right": incident.complaint_right,
            "sender_name": incident.sender_name,
            "never_ask": list(incident.never_ask),
        },
        "contact": incident.contact.model_dump(),
    }


# ------------------------------------------------------------------ skeletons (bundled only)
#
# Rendering the bundled templates is most of the CPU of a notice, yet almost all of the output
# depends only on the incident, the language, the agencies and a few flags. So each bundled
# template is rendered ONCE per such combination with unguessable sentinels in place of the
# per-person values, and each notice only fills them in (HTML-escaped exactly as autoescape
# would in the HTML template). This is the same output as a full render because, in the
# bundled templates (audited; tests/dispatch/test_render.py compares both paths), the
# per-person values below are only ever printed with a bare `{{ name }}` (no filters, tests
# or comparisons) and only tested for truthiness (`{% if addressee_given_name %}`,
# `{% if representative %}`), which is part of the cache key. Everything else in the context
# is part of the key. Coordinator-supplied templates are arbitrary Jinja, so they are always
# rendered in full. The safety and s 117 checks still run on every notice's final text.

_NONCE = secrets.token_hex(8)
_SLOTS = ("addressee_given_name", "person_name", "rep_name", "rep_relationship",
          "reference_code", "addressee_name")
_SENTINEL = {slot: f"\x00{_NONCE}:{i}\x00" for i, slot in enumerate(_SLOTS)}
_SENTINEL_SPLIT = re.compile("\x00" + _NONCE + ":(\\d)\x00")
_SKELETON_LIMIT = 4096


@dataclass(frozen=True)
class _Skeleton:
    parts: tuple[str, ...]  # literal text, between the slots
    slots: tuple[int, ...]  # index into _SLOTS of each gap


_skeletons: dict[tuple, tuple[IncidentContent, _Skeleton]] = {}
_skeleton_lock = threading.Lock()


def _agencies_key(ctx: dict[str, Any]) -> tuple:
    return tuple(
        (a["name"], a["document_count"], tuple(a["categories"])) for a in ctx["agencies"]
    )


def _skeleton(name: str, language: Language, ctx: dict[str, Any],
              incident: IncidentContent) -> _Skeleton:
    rep = ctx["representative"]
    key = (
        name, language, id(incident), bool(ctx["addressee_given_name"]), rep is not None,
        ctx["is_amendment"], ctx["version"], ctx.get("full_notice_via"), _agencies_key(ctx),
        ctx["total_documents"],
    )
    hit = _skeletons.get(key)
    if hit is not None and hit[0] is incident:
        return hit[1]
    skel_ctx = dict(ctx)
    skel_ctx["addressee_given_name"] = (
        _SENTINEL["addressee_given_name"] if ctx["addressee_given_name"] else ""
    )
    skel_ctx["person_name"] = _SENTINEL["person_name"]
    skel_ctx["reference_code"] = _SENTINEL["reference_code"]
    skel_ctx["addressee_name"] = _SENTINEL["addressee_name"]
    if rep is not None:
        skel_ctx["representative"] = {
            "name": _SENTINEL["rep_name"], "relationship": _SENTINEL["rep_relationship"]
        }
    ext = "html.j2" if name == "email_html" else "j2"
    rendered = _bundled.get_template(f"{name}.{language}.{ext}").render(skel_ctx)
    pieces = _SENTINEL_SPLIT.split(rendered)
    skeleton = _Skeleton(tuple(pieces[0::2]), tuple(int(i) for i in pieces[1::2]))
    with _skeleton_lock:
        if len(_skeletons) >= _SKELETON_LIMIT:
            _skeletons.clear()
        _skeletons[key] = (incident, skeleton)
    return skeleton


def _fill(skeleton: _Skeleton, ctx: dict[str, Any], html: bool) -> str:
    rep = ctx["representative"] or {}
    values = (
        ctx["addressee_given_name"], ctx["person_name"], rep.get("name"),
        rep.get("relationship"), ctx["reference_code"], ctx["addressee_name"],
    )
    if html:
        values = tuple(None if v is None else str(escape(v)) for v in values)
    parts = skeleton.parts
    out = [parts[0]]
    for i, slot in enumerate(skeleton.slots):
        out.append(values[slot])
        out.append(parts[i + 1])
    return "".join(out)


def _language(notice: Notice) -> Language:
    return notice.preferred_language


def render_part(name: str, language: Language, ctx: dict[str, Any], incident: IncidentContent) -> str:
    """One part (email_subject, email_text, email_html, sms, sms_short, sms_minimal) with the person's
    `template_context`: the coordinator's template for this language if supplied, else the
    bundled template through its cached skeleton."""
    templates = coordinator_templates(incident) if language == "mi" else None
    if templates is not None:
        source = getattr(templates, name, None)  # sms_minimal is bundled only
        if source:
            try:
                return sandbox.render(source, ctx, html=name == "email_html").strip()
            except sandbox.SandboxError as exc:
                # Kind and line only, never a value: safe to log.
                raise RenderError(f"coordinator template {name!r} failed: {exc}") from None
    return _fill(_skeleton(name, language, ctx, incident), ctx, name == "email_html").strip()


def render_bundled(name: str, language: Language, ctx: dict[str, Any]) -> str:
    """A bundled template rendered directly, without skeletons: the reference `render_part`
    must equal byte for byte (tests compare them)."""
    ext = "html.j2" if name.endswith("email_html") else "j2"
    return _bundled.get_template(f"{name}.{language}.{ext}").render(ctx).strip()


# ---------------------------------------------------------------------------------- public API


def render_email(
    notice: Notice | Mapping[str, Any], incident: IncidentContent | Mapping[str, Any]
) -> RenderedEmail:
    notice, incident = as_models(notice, incident)
    notice = as_sent(notice)
    if not notice.addressee_email:
        raise RenderError("addressee has no email address")
    if notice.correction is not None:
        return _correction_email(notice, incident)
    language = _language(notice)
    ctx = template_context(notice, incident, language)
    subject = " ".join(render_part("email_subject", language, ctx, incident).split())
    text = render_part("email_text", language, ctx, incident) + "\n"
    html = render_part("email_html", language, ctx, incident) + "\n"
    if is_bilingual(_language(notice), incident):
        en = template_context(notice, incident, "en")
        subject = subject + " / " + " ".join(render_part("email_subject", "en", en, incident).split())
        text = text + BILINGUAL_TEXT_DIVIDER + render_part("email_text", "en", en, incident) + "\n"
        html = bilingual_html(html, render_part("email_html", "en", en, incident), incident.title)
    ref = ctx["reference_code"]
    check_safe("email subject", subject, ref)
    check_safe("email text", text, ref)
    check_safe("email html", html, ref, html=True)
    check_s117("email text", text, ctx)
    # The HTML splits the web address with <span>s, so check the text-only rendering of it.
    check_s117("email html", re.sub(r"<span>\.</span>", ".", html), ctx)
    return RenderedEmail(notice.addressee_email, subject, text, html, language, ref)


def render_letter_text(
    notice: Notice | Mapping[str, Any], incident: IncidentContent | Mapping[str, Any]
) -> str:
    """Plain-text body for the postal channel (same content as the email text part)."""
    notice, incident = as_models(notice, incident)
    notice = as_sent(notice)
    if notice.correction is not None:
        return _correction_letter(notice, incident)
    language = _language(notice)
    ctx = template_context(notice, incident, language)
    text = render_part("email_text", language, ctx, incident) + "\n"
    if is_bilingual(_language(notice), incident):
        en = template_context(notice, incident, "en")
        text = text + BILINGUAL_TEXT_DIVIDER + render_part("email_text", "en", en, incident) + "\n"
    check_safe("letter", text, ctx["reference_code"])
    check_s117("letter", text, ctx)
    return text


def render_sms(
    notice: Notice | Mapping[str, Any],
    incident: IncidentContent | Mapping[str, Any],
    *,
    full_notice_via: FullNoticeVia | None = None,
) -> RenderedSms:
    """Render the SMS within the incident's segment budget.

    full_notice_via says what the SMS points to: 'email' (we emailed the notice), 'postal'
    (a letter is coming) or 'none' (SMS is all they get, so it carries a summary). Default:
    email if the addressee has an email address, else postal if they have an address.
    """
    notice, incident = as_models(notice, incident)
    notice = as_sent(notice)
    if not notice.addressee_mobile:
        raise RenderError("addressee has no mobile number")
    if full_notice_via is None:
        full_notice_via = (
            "email" if notice.addressee_email else "postal" if notice.addressee_address else "none"
        )
    language = _language(notice)
    ctx = template_context(notice, incident, language) | {"full_notice_via": full_notice_via}
    variants = (("full", "sms"), ("short", "sms_short"), ("minimal", "sms_minimal"))
    if notice.correction is not None:
        ctx = _correction_context(notice, incident, language) | {
            "full_notice_via": full_notice_via}
        variants = (("full", "correction_sms"), ("minimal", "correction_sms_minimal"))
    budget = incident.sms_segment_budget
    tried: list[str] = []
    # Longest first; the minimal one drops the title, so a long sender name, web address and
    # phone number still fit (tests/dispatch/test_notice_content.py: the longest realistic).
    for variant, name in variants:
        body = _sms_text(render_bundled(name, language, ctx) if notice.correction is not None
                         else render_part(name, language, ctx, incident))
        check_safe(f"sms ({variant})", body, ctx["reference_code"])
        segments = count_segments(body)
        if segments.segments <= budget:
            return RenderedSms(
                notice.addressee_mobile, body, language, ctx["reference_code"], variant, segments
            )
        tried.append(f"{variant}={segments.segments} ({segments.encoding})")
    raise SmsTooLong(f"SMS exceeds the incident budget of {budget} segment(s): " + ", ".join(tried))


# --------------------------------------------------------------------- correction notices
#
# A correction notice (issue 16's retractions; NoticeCorrection) corrects an earlier notice:
# it says what was wrong (sent in error, or an agency named wrongly) and what stands, with
# the reference, the never-ask list, the typed-in web address and the contact line, and passes
# the same safety checks. Bundled templates only, rendered in full (corrections are few): a
# coordinator's te reo templates know nothing of corrections, so a te reo reader gets the
# bundled te reo wrapper (correction_*.mi: a te reo greeting and sign-off around the English,
# saying so), as a te reo reader's notice does without approved templates (docs/decisions.md).


def as_sent(notice: Notice) -> Notice:
    """What a correction notice says given what its person was sent before. A correction that
    an agency was named wrongly, for a person no earlier version reached (`updates_earlier`
    False: it was still queued for the morning and superseded unsent), is their first notice:
    the full notice about the agencies that stand, not "we sent you a notice". (A sent-in-error
    correction with nothing sent before is not sent at all: policy.correction_has_anything_to_say.)
    None (not known) keeps the correction."""
    if (notice.correction is not None and notice.updates_earlier is False
            and notice.correction.kind == "agency_not_involved"):
        return notice.model_copy(update={"correction": None})
    return notice


def _correction_context(notice: Notice, incident: IncidentContent,
                        language: Language) -> dict[str, Any]:
    correction = notice.correction
    assert correction is not None  # noqa: S101 - callers check
    return template_context(notice, incident, language) | {"correction": {
        "kind": correction.kind, "names": correction.names,
        "agencies": [a.name for a in correction.agencies]}}


def _correction_email(notice: Notice, incident: IncidentContent,
                      letter: bool = False) -> RenderedEmail:
    language = _language(notice)
    ctx = _correction_context(notice, incident, language)
    ref = ctx["reference_code"]
    subject = " ".join(render_bundled("correction_email_subject", language, ctx).split())
    text = render_bundled("correction_email_text", language, ctx) + "\n"
    html = "" if letter else render_bundled("correction_email_html", language, ctx) + "\n"
    check_safe("letter" if letter else "email text", text, ref)
    for agency in [*ctx["agencies"], *({"name": n} for n in ctx["correction"]["agencies"])]:
        if agency["name"] not in text:  # what was wrong and what stands: every agency named
            raise RenderError("correction does not name every agency")
    check_s117("letter" if letter else "email text", text, ctx)
    if not letter:
        check_safe("email subject", subject, ref)
        check_safe("email html", html, ref, html=True)
        check_s117("email html", re.sub(r"<span>\.</span>", ".", html), ctx)
    return RenderedEmail(notice.addressee_email or "", subject, text, html, language, ref)


def _correction_letter(notice: Notice, incident: IncidentContent) -> str:
    """A correction by post: its own wording (correction_letter_text) — which notice it
    corrects (how, when, its reference, when known), what that said, what has changed, this
    letter's reference, how to check it is real, the contact line — and the email's checks."""
    language = _language(notice)
    ctx = _correction_context(notice, incident, language) | {
        "told_before": notice.told_before.model_dump() if notice.told_before else None}
    ref = ctx["reference_code"]
    text = render_bundled("correction_letter_text", language, ctx) + "\n"
    check_safe("letter", text, ref)
    for agency in [*ctx["agencies"], *({"name": n} for n in ctx["correction"]["agencies"])]:
        if agency["name"] not in text:
            raise RenderError("correction does not name every agency")
    if notice.told_before is not None and notice.told_before.reference not in text:
        raise RenderError("correction letter does not name the notice it corrects")
    check_s117("letter", text, ctx)
    return text


def _sms_text(rendered: str) -> str:
    # Collapse template whitespace; SMS is one paragraph and every character costs.
    return " ".join(downgrade_typography(normalise(rendered)).split())


def as_models(
    notice: Notice | Mapping[str, Any],
    incident: IncidentContent | IncidentMessage | Mapping[str, Any],
) -> tuple[Notice, IncidentContent]:
    """The notice and the incident content as models, from models, contract messages or dicts."""
    n = notice if isinstance(notice, Notice) else Notice.model_validate(notice)
    if isinstance(incident, IncidentContent):
        i = incident
    elif isinstance(incident, IncidentMessage):
        i = IncidentContent.from_contract(incident)
    else:
        i = IncidentContent.model_validate(incident)
    return n, i
