"""Dedupe's coordinator API (/v1): incident progress, the review queue, release now; and an
agency's own reconciliation rows (`agency_router`, by an agency status ticket from intake).

Decisions and release requests are only recorded here; the owner of the incident's partition
applies them on its next tick (pipeline.py)."""

import asyncio
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from services.common.clock import utcnow
from services.common.crypto import SealError
from services.common.deps import (
    AnyStaffContext,
    Context,
    CoordinatorContext,
    IdPath,
    PageAfter,
    PageLimit,
    context,
    page_response,
    staff,
)
from services.common.errors import ApiError, ErrorResponse
from services.common.messages import record_sealing_context
from services.common.reconciliation import DedupeRecordPage, DedupeRecordStatus
from services.common.report import ReportMilestone, ServiceReport, counts_of
from services.dedupe import store
from services.dedupe.conflicts import RETRACTION_DECISIONS, DecisionRefused
from services.dedupe.reviews import revealed_values
from services.dedupe.schemas import (
    Progress,
    ReleaseRequested,
    RevealedPair,
    RevealedRecord,
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
             responses={403: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
             summary="Decide a review item: merge or keep apart a pair; use one agency's "
                     "contact or keep the fallback; release or keep held a hold conflict; "
                     "send a correction notice or take no action on a retraction "
                     "(coordinator only, once)")
async def decide(incident_id: IdPath, review_id: IdPath, body: ReviewDecision,
                 ctx: Reviewer) -> ReviewView:
    # The audit line names the chosen record (ids), never a contact value.
    chosen = list(body.record or ())
    # Whether to write to a person again (a correction notice) is the coordinator's call,
    # not a reviewer's: refused before anything is written or audited.
    if body.decision in RETRACTION_DECISIONS and "coordinator" not in ctx.caller.roles:
        raise ApiError(403, "auth.forbidden",
                       "Only a coordinator may decide a retraction.")
    try:
        review = await ctx.audited(
            lambda r: r and ctx.act("review.decide", incident_id, review_id, body.decision,
                                    *chosen),
            store.decide_review, incident_id, review_id, body.decision, utcnow(), body.record)
    except DecisionRefused as refused:
        raise ApiError(refused.status, refused.code, str(refused)) from None
    if review is None:
        raise ApiError(404, "review.not_found", "No such review item in this incident.")
    return ReviewView.model_validate(review)


@router.post("/incidents/{incident_id}/reviews/{review_id}/reveal", response_model=RevealedPair,
             responses={409: {"model": ErrorResponse}},
             summary="The pair's masked values, for this pair only (recorded in the audit log)")
async def reveal(incident_id: IdPath, review_id: IdPath, ctx: Reviewer,
                 response: Response) -> RevealedPair:
    # The audit entry is written with the read, in one transaction: no reveal goes unrecorded.
    pair = await ctx.audited(lambda p: p and ctx.act("review.reveal", incident_id, review_id),
                             store.review_records, incident_id, review_id)
    if pair is None:
        raise ApiError(404, "review.not_found", "No such review item in this incident.")
    review, record_a, record_b = pair
    sealer = ctx.runtime.sealer

    def side(key: tuple[str, str], record: store.SealedRecord | None) -> RevealedRecord:
        held = record is not None and bool(record.sealed) and not record.withdrawn
        personal = sealer.open(record.sealed, record_sealing_context(
            incident_id, key[0], key[1], record.version)) if held else None
        return RevealedRecord(agency_id=key[0], source_record_id=key[1], held=held,
                              values=revealed_values(personal))

    # Opening may load the incident's data key (a query): off the loop.
    try:
        a, b = await asyncio.gather(asyncio.to_thread(side, review.a, record_a),
                                    asyncio.to_thread(side, review.b, record_b))
    except SealError:  # e.g. the incident's key destroyed: nothing to show (never the value)
        raise ApiError(409, "review.values_unavailable",
                       "The records' values cannot be opened (the incident was purged).") from None
    response.headers["Cache-Control"] = "no-store"
    return RevealedPair(review_id=review_id, a=a, b=b)


@router.post("/incidents/{incident_id}/release", response_model=ReleaseRequested,
             summary="Release the incident's notices now (before completion or deadline)")
async def release(incident_id: IdPath, ctx: CoordinatorContext) -> ReleaseRequested:
    incident = await ctx.audited(lambda i: i and ctx.act("incident.release", incident_id),
                                 store.request_manual_release, incident_id, utcnow())
    if incident is None:
        raise ApiError(404, "incident.not_found", "No such incident.")
    return ReleaseRequested.model_validate(incident)


@router.get("/incidents/{incident_id}/report", response_model=ServiceReport,
            summary="Dedupe's part of the Privacy Commissioner's report (counts, no personal data)")
async def commissioner_report(incident_id: IdPath, ctx: CoordinatorContext) -> ServiceReport:
    found = await ctx.db.run(store.commissioner_counts, incident_id)
    if found is None:
        raise ApiError(404, "incident.not_found", "No such incident.")
    incident, by_agency = dict(found.incident), {a: dict(c) for a, c in found.by_agency.items()}
    # The s 116 ground is inside each held record's sealed fields: opened here, counted, and
    # only the count leaves (the grounds are a fixed list: health_prejudice, representative, other).
    for held in found.held:
        try:
            fields = ctx.runtime.sealer.open(held.sealed, record_sealing_context(
                incident_id, held.agency_id, held.source_record_id, held.record_version))
            ground = ((fields.get("hold") or {}).get("reason")) or "unstated"
        except SealError:
            ground = "unreadable"
        measure = f"held.{ground}"
        incident[measure] = incident.get(measure, 0) + 1
        agency = by_agency.setdefault(held.agency_id, {})
        agency[measure] = agency.get(measure, 0) + 1
    return ServiceReport(
        service="dedupe", incident_id=incident_id, generated_at=utcnow(),
        counts=counts_of(incident, by_agency),
        milestones=[ReportMilestone(agency_id=None, milestone=m, at=at)
                    for m, at in sorted(found.milestones.items(), key=lambda kv: kv[1])])


AgencyTicket = Annotated[Context, Depends(context("agency-ticket"))]
agency_router = APIRouter(prefix="/v1", tags=["agency"],
                          responses={c: {"model": ErrorResponse} for c in (401, 404, 422)})


@agency_router.get(
    "/incidents/{incident_id}/reconciliation/records", response_model=DedupeRecordPage,
    summary="Dedupe's part of your reconciliation: each of your records pending, in review, held, "
    "notified or withdrawn, and with how many other agencies' records it was merged")
async def reconciliation_records(
    incident_id: IdPath, ctx: AgencyTicket,
    after: PageAfter = "",
    limit: PageLimit = 5000,
) -> Response:
    # The ticket names the agency and its one incident (deps.refusal checked the path's): an
    # incident dedupe has not heard of yet has no records, an empty page.
    agency_id = ctx.caller.agency_id
    outcomes, next_after = await ctx.db.run(store.record_outcomes, incident_id, agency_id, after, limit)
    return page_response(DedupeRecordPage(
        incident_id=incident_id, agency_id=agency_id, next_after=next_after,
        records=[DedupeRecordStatus(**asdict(o)) for o in outcomes]))
