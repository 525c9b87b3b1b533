"""Dedupe's coordinator API (/v1): incident progress, the review queue, release now.

Decisions and release requests are only recorded here; the owner of the incident's partition
applies them on its next tick (pipeline.py)."""

from fastapi import APIRouter

from services.common.clock import utcnow
from services.common.deps import AnyStaffContext, CoordinatorContext, IdPath, staff
from services.common.errors import ApiError, ErrorResponse
from services.dedupe import store
from services.dedupe.conflicts import DecisionRefused
from services.dedupe.schemas import (
    Progress,
    ReleaseRequested,
    ReviewDecision,
    ReviewStatus,
    ReviewView,
)

Reviewer = staff("coordinator", "reviewer")

router = APIRouter(prefix="/v1", tags=["coordinator"],
                   responses={c: {"model": ErrorResponse} for c in (401, 404, 422)})


@router.get("/incidents/{incident_id}/progress", response_model=Progress,
            summary="Records per agency, persons, pending release, notified, on hold, in review")
async def progress(incident_id: IdPath, ctx: AnyStaffContext) -> Progress:
    found = await ctx.db.run(store.progress, incident_id)
    if found is None:
        raise ApiError(404, "incident.not_found", "No such incident.")
    return Progress.model_validate(found)


@router.get("/incidents/{incident_id}/reviews", response_model=list[ReviewView],
            summary="Review items (uncertain pairs, contact and hold conflicts) awaiting (or "
                    "with) a decision")
async def reviews(incident_id: IdPath, ctx: Reviewer,
                  status: ReviewStatus = "open") -> list[ReviewView]:
    found = await ctx.db.run(store.reviews, incident_id, None if status == "all" else status)
    return [ReviewView.model_validate(r) for r in found]


@router.post("/incidents/{incident_id}/reviews/{review_id}/decision", response_model=ReviewView,
             summary="Decide a review item: merge or keep apart a pair; use one agency's "
                     "contact or keep the fallback; release or keep held a hold conflict")
async def decide(incident_id: IdPath, review_id: IdPath, body: ReviewDecision,
                 ctx: Reviewer) -> ReviewView:
    # The audit line names the chosen record (ids), never a contact value.
    chosen = list(body.record or ())
    try:
        review = await ctx.audited(
            lambda r: r and ctx.act("review.decide", incident_id, review_id, body.decision,
                                    *chosen),
            store.decide_review, incident_id, review_id, body.decision, utcnow(), body.record)
    except DecisionRefused as refused:
        raise ApiError(422, refused.code, str(refused)) from None
    if review is None:
        raise ApiError(404, "review.not_found", "No such review item in this incident.")
    return ReviewView.model_validate(review)


@router.post("/incidents/{incident_id}/release", response_model=ReleaseRequested,
             summary="Release the incident's notices now (before completion or deadline)")
async def release(incident_id: IdPath, ctx: CoordinatorContext) -> ReleaseRequested:
    incident = await ctx.audited(lambda i: i and ctx.act("incident.release", incident_id),
                                 store.request_manual_release, incident_id, utcnow())
    if incident is None:
        raise ApiError(404, "incident.not_found", "No such incident.")
    return ReleaseRequested.model_validate(incident)
