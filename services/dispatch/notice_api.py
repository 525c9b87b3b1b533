"""The coordinator's preview of an incident's notice (before release: te reo templates are
previewed, then approved in intake)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query

from services.common.deps import CoordinatorContext, IdPath
from services.common.errors import ApiError, ErrorResponse
from services.dispatch.content.preview import preview_notice
from services.dispatch.content.render import RenderError
from services.dispatch.schemas import NoticePreview

router = APIRouter(tags=["coordinator"])


@router.get("/v1/incidents/{incident_id}/notice-preview",
            responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
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
        raise ApiError(422, "preview.render_failed", str(exc)) from None
    return NoticePreview(
        language=p.language, bilingual=p.bilingual,
        templates_mi_fingerprint=p.templates_mi_fingerprint,
        templates_mi_approved=p.templates_mi_approved,
        email_subject=p.email.subject, email_text=p.email.text, email_html=p.email.html,
        sms=p.sms.body, sms_segments=p.sms.segments.segments,
        sms_encoding=p.sms.segments.encoding.value, letter_text=p.letter_text,
    )
