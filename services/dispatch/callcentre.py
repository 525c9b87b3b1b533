"""The call centre (0800 line): find a person's notice by the reference they read out, verified
by their date of birth (or a detail the operator checked), and see exactly what was sent —
each channel's message rendered again, deterministically, from the stored sealed notice and
the incident revision that delivery is pinned to (delivery.content_revision, says_emailed,
says_update: what the sender rendered with) — when, its delivery history, the person's other
versions (amendments), and whether they are unreachable (on the s 115 public-notice list).

A person held under s 116 before any notice has none (dedupe holds it), so no reference to
read out: the lookup finds nothing, as for any unknown reference. A person held after their
notice went out (a hold on a record that came later: nothing more is sent to them) is
`held` — dedupe says so on notices.v1 (notice-hold), with no ground, agency or record — and
the operator is told not to disclose (HELD_GUIDANCE): the hold is there so they are not told.
Every lookup, found or not, is in the audit log (the notice id and how the caller was
verified; never the date of birth).
Scripted answers for the common questions are bundled (content/call_centre.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources

from sqlmodel import Session

from services.common.crypto import SealError, Vault
from services.common.messages import NoticeMessage, decode_notice, notice_sealing_context
from services.common.references import DOB_LABEL, dob_text, normalise_reference
from services.dispatch import policy
from services.dispatch.content.models import Notice, ToldBefore, reference_of
from services.dispatch.content.render import (
    RenderError,
    render_email,
    render_letter_text,
    render_sms,
)
from services.dispatch.genuine import digests_match
from services.dispatch.incidents import IncidentBook, IncidentEntry
from services.dispatch.store import holds, lookups, notices
from services.dispatch.store.lookups import DeliveryView, HistoryEntry, VersionView

ACTION = "notice.lookup"
# What the operator reads when the person is held: what to do, never why (they are not told).
HELD_GUIDANCE = (
    "Held under s 116: more about this breach is being held back from this person on purpose. "
    "Do not disclose: answer only from the notice shown here, do not mention a hold, that more "
    "may follow, or any other agency, and pass the call to the incident coordinator.")


@dataclass(frozen=True, slots=True)
class Found:
    notice: NoticeMessage
    reference_code: str
    deliveries: list[DeliveryView]
    history: list[HistoryEntry]
    versions: list[VersionView]
    revisions: dict[int, IncidentEntry]  # the revisions its deliveries are pinned to
    held: bool = False  # dedupe holds the person under s 116 now (after this notice)
    told_before: ToldBefore | None = None  # a correction: the version its letter names


@dataclass(frozen=True, slots=True)
class Sent:
    """One channel's message as it was sent (rendered again from what the delivery pins)."""

    channel: str
    revision: int
    subject: str | None
    text: str
    problem: str | None = None  # it could not be rendered again (the reason, never a value)


def lookup(session: Session, vault: Vault, book: IncidentBook, incident_id: str,
           typed_reference: str, date_of_birth: date | None) -> Found | None:
    """The notice of this incident printed with the reference — checked against the date of
    birth when one is given (the caller verified the person some other way otherwise) — or
    None. A wrong date and an unknown reference are both None."""
    code = normalise_reference(typed_reference)
    row = notices.by_reference(session, code) if code else None
    if row is None or row.incident_id != incident_id:
        return None
    if date_of_birth is not None:
        try:
            digest = vault.digest(dob_text(date_of_birth), label=DOB_LABEL, key_id=row.key_id or "")
        except SealError:
            return None
        if not digests_match(digest, row.dob_checks):
            return None
    payload = notices.notice_payload(session, row.notice_id)
    if payload is None:
        return None
    message = decode_notice(payload)
    found_deliveries = lookups.deliveries(session, row.notice_id)
    revisions = {}
    for d in found_deliveries:
        if d.content_revision is not None and d.content_revision not in revisions:
            entry = book.revision(session, incident_id, d.content_revision)
            if entry is not None:
                revisions[d.content_revision] = entry
    earlier = (lookups.told_before(session, incident_id, row.person_id, message.version)
               if message.correction is not None else None)
    return Found(message, reference_of(message), found_deliveries,
                 lookups.history(session, row.notice_id),
                 lookups.versions(session, incident_id, row.person_id), revisions,
                 holds.is_held(session, incident_id, row.person_id),
                 ToldBefore.of(earlier.notice_id, earlier.reference_code, earlier.channel,
                               earlier.first_attempt_at) if earlier else None)


def render_sent(vault: Vault, found: Found) -> list[Sent]:
    """Each rendered delivery's message again. Pure given the sealed notice and the pinned
    revision (the renderer is deterministic), so it is what the gateway got. CPU-bound, and
    coordinator templates run in the sandbox: call it off the event loop."""
    sealed = vault.open(found.notice.sealed, notice_sealing_context(found.notice.notice_id))
    sent = []
    for d in found.deliveries:
        entry = found.revisions.get(d.content_revision) if d.content_revision is not None else None
        if entry is None or d.channel == "none" or d.status == "not-needed":
            continue  # not-needed: a correction never sent (nothing to correct), nothing to read
        view = Notice.from_contract(found.notice, sealed, updates_earlier=d.says_update,
                                    told_before=found.told_before)
        try:
            if d.channel == "email":
                email = render_email(view, entry.content)
                sent.append(Sent("email", d.content_revision, email.subject, email.text))
            elif d.channel == "sms":
                via = policy.sms_full_notice_via(
                    bool(d.says_emailed), bool(view.addressee_address),
                    "postal" in entry.message.channel_policy.fallback)
                sms = render_sms(view, entry.content, full_notice_via=via)
                sent.append(Sent("sms", d.content_revision, None, sms.body))
            elif d.channel == "postal":
                sent.append(Sent("postal", d.content_revision, None,
                                 render_letter_text(view, entry.content)))
        except RenderError as exc:
            sent.append(Sent(d.channel, d.content_revision, None, "", str(exc)))
    return sent


@cache
def scripted_answers() -> list[dict]:
    """The bundled answers to the common questions ({id, question, answer})."""
    text = resources.files("services.dispatch.content").joinpath("call_centre.json").read_text("utf-8")
    return json.loads(text)["answers"]
