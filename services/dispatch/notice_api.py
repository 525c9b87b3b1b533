"""The coordinator's preview of an incident's notice (before release: te reo templates are
previewed, then approved in intake), and of any stored notice by its id (audited: it shows the
person's name and contacts)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query, Response

from services.common.crypto import SealError
from services.common.deps import CoordinatorContext, IdPath
from services.common.errors import ApiError, ErrorResponse
from services.common.messages import decode_notice, notice_sealing_context
from services.common.references import normalise_reference
from services.dispatch import policy
from services.dispatch.content.models import Notice
from services.dispatch.content.preview import preview_notice, render_stored
from services.dispatch.content.render import RenderError
from services.dispatch.schemas import NoticePreview, StoredNoticePreview
from services.dispatch.store import notices, reports

router = APIRouter(tags=["coordinator"])


def _unrenderable(exc: RenderError) -> ApiError:
    # The request is well formed; the incident's content as it stands is what fails (the s 117
    # checks, a te reo template): a conflict with the incident's state, not a bad request.
    return ApiError(409, "preview.render_failed", f"The notice cannot be rendered: {exc}")


@router.get("/v1/incidents/{incident_id}/notice-preview",
            responses={c: {"model": ErrorResponse} for c in (404, 409, 422)},
            summary="The notice a sample person would get (email, SMS, letter text)")
async def notice_preview(incident_id: IdPath, ctx: CoordinatorContext,
                         language: Literal["en", "mi"] = Query("mi")) -> NoticePreview:
    entry = await ctx.db.run(ctx.runtime.book.get, incident_id)
    if entry is None:
        raise ApiError(404, "incident.not_found", "Dispatch has not received this incident.")
    try:
        # Coordinator templates run in the sandbox (up to a second of CPU): off the loop.
        p = await asyncio.to_thread(preview_notice, entry.message, language)
    except RenderError as exc:
        raise _unrenderable(exc) from None
    return NoticePreview(
        language=p.language, bilingual=p.bilingual,
        templates_mi_fingerprint=p.templates_mi_fingerprint,
        templates_mi_approved=p.templates_mi_approved, dry_run=p.dry_run,
        email_subject=p.email.subject, email_text=p.email.text, email_html=p.email.html,
        sms=p.sms.body, sms_segments=p.sms.segments.segments,
        sms_encoding=p.sms.segments.encoding.value, letter_text=p.letter_text,
    )




@router.get("/v1/incidents/{incident_id}/notices/{reference}/preview",
            responses={c: {"model": ErrorResponse} for c in (404, 409, 422)},
            summary="A stored notice by its id or the code printed on it (PAN-XXXX-XXXX), "
                    "rendered as it was (or would be) sent; audited")
async def stored_notice_preview(
        incident_id: IdPath, reference: IdPath, ctx: CoordinatorContext, response: Response,
        language: Literal["en", "mi"] | None = Query(None, description="default: the person's"),
) -> StoredNoticePreview:
    notice_id: str | None = reference
    if (code := normalise_reference(reference)) is not None:
        # The printed code (keyed, or a legacy one): dispatch_notice.reference_code, indexed.
        printed = await ctx.db.run(notices.by_reference, code)
        if printed is None or printed.incident_id != incident_id:
            raise ApiError(404, "notice.not_found", "No such notice in this incident.")
        notice_id = printed.notice_id
    # Read and audit entry in one transaction: nobody sees a person's notice unrecorded.
    stored = await ctx.audited(lambda n: n and ctx.act("notice.preview", incident_id, notice_id),
                               reports.stored_notice, incident_id, notice_id)
    if stored is None:
        raise ApiError(404, "notice.not_found", "No such notice in this incident.")
    runtime = ctx.runtime
    entry = await ctx.db.run(runtime.book.revision, incident_id, stored.content_revision)
    if entry is None:
        raise ApiError(404, "incident.not_found", "Dispatch has not received this incident.")

    def render():  # noqa: ANN202 - opening and the coordinator's templates: off the loop
        notice = decode_notice(stored.payload)
        sealed = runtime.sealer.open(notice.sealed, notice_sealing_context(notice.notice_id))
        view = Notice.from_contract(notice, sealed, updates_earlier=stored.says_update)
        via = policy.sms_full_notice_via(
            bool(stored.says_emailed) if stored.says_emailed is not None else bool(view.addressee_email),
            bool(view.addressee_address), "postal" in entry.message.channel_policy.fallback)
        return notice, render_stored(view, entry.content, language, via, entry.message.dry_run)

    try:
        notice, r = await asyncio.to_thread(render)
    except RenderError as exc:
        raise _unrenderable(exc) from None
    except SealError:  # its data key destroyed: purged (never the value in the message)
        raise ApiError(409, "notice.unavailable", "The notice cannot be opened (purged).") from None
    response.headers["Cache-Control"] = "no-store"
    return StoredNoticePreview(
        notice_id=notice.notice_id, version=notice.version, incident_revision=entry.revision,
        language=r.language, sent=stored.content_revision is not None,
        dry_run=entry.message.dry_run,
        email_subject=r.email.subject if r.email else None,
        email_text=r.email.text if r.email else None, email_html=r.email.html if r.email else None,
        sms=r.sms.body if r.sms else None, sms_segments=r.sms.segments.segments if r.sms else None,
        sms_encoding=r.sms.segments.encoding.value if r.sms else None, letter_text=r.letter_text)
