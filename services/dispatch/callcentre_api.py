"""HTTP: the call centre's notice lookup and scripted answers (callcentre.py)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from services.common.deps import IdPath, staff
from services.common.errors import ApiError, ErrorResponse
from services.common.inbound import body_limit
from services.dispatch import callcentre
from services.dispatch.content.render import category_label
from services.dispatch.schemas import NoticeLookup, NoticeLookupResult, ScriptedAnswers

router = APIRouter(tags=["call centre"])
CallCentre = staff("call-centre", "coordinator")
CallCentreAnyIncident = staff("call-centre", "coordinator", every_incident=False)


def _iso(value) -> str:  # noqa: ANN001
    return value.isoformat()


@router.post(
    "/v1/incidents/{incident_id}/notice-lookups",
    summary="Find a notice by its reference (verified by date of birth or a checked detail): "
            "what was sent on each channel, when, its history and amendments, and whether the "
            "person is held (s 116) or unreachable",
    dependencies=[body_limit("check_max_bytes")],
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def notice_lookup(incident_id: IdPath, body: NoticeLookup, ctx: CallCentre) -> NoticeLookupResult:
    runtime = ctx.runtime
    born = getattr(body, "date_of_birth", None)
    verified = "date-of-birth" if born is not None else body.verified_detail
    found = await ctx.audited(
        lambda f: ctx.act(callcentre.ACTION, incident_id, f.notice.notice_id if f else "-",
                          "found" if f else "not-found", f"verified:{verified}"),
        callcentre.lookup, runtime.sealer, runtime.book, incident_id, body.reference, born)
    if found is None:
        raise ApiError(404, "notice.not_found",
                       "No notice of this incident has that reference and date of birth.")
    sent = await asyncio.to_thread(callcentre.render_sent, runtime.sealer, found)
    notice = found.notice
    entry = next(iter(found.revisions.values()), None) or runtime.book.cached(incident_id)
    return NoticeLookupResult(
        notice_id=notice.notice_id, reference=found.reference_code, version=notice.version,
        preferred_language=notice.preferred_language, has_representative=notice.has_representative,
        unreachable=any(d.channel == "none" and d.status == "unreachable" for d in found.deliveries),
        held=found.held, held_guidance=callcentre.HELD_GUIDANCE if found.held else None,
        agencies=[{"name": a.name, "data_categories": [
            category_label(c, entry.content, "en") if entry else c for c in a.data_categories]}
            for a in notice.agencies],
        deliveries=[{"channel": d.channel, "status": d.status, "attempts": d.attempts,
                     "provider": d.provider, "reason_code": d.reason_code,
                     "created_at": _iso(d.created_at), "updated_at": _iso(d.updated_at)}
                    for d in found.deliveries],
        history=[{"channel": h.channel, "status": h.status, "attempt": h.attempt,
                  "provider": h.provider, "reason_code": h.reason_code, "at": _iso(h.at)}
                 for h in found.history],
        sent=[{"channel": s.channel, "revision": s.revision, "subject": s.subject, "text": s.text,
               "problem": s.problem} for s in sent],
        versions=[{"notice_id": v.notice_id, "version": v.version, "reference": v.reference_code,
                   "received_at": _iso(v.received_at)} for v in found.versions],
        scripted_answers=callcentre.scripted_answers(),
    )


@router.get("/v1/call-centre/answers", summary="Scripted answers to the common questions")
async def scripted_answers(ctx: CallCentreAnyIncident) -> ScriptedAnswers:
    return ScriptedAnswers(answers=callcentre.scripted_answers())
