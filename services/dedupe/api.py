"""Dedupe's coordinator API (/v1): incident progress, the review queue, release now."""

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlmodel import Session, func, select

from services.common.auth import CoordinatorAuth
from services.common.db import run_db
from services.common.errors import ApiError, ErrorResponse
from services.dedupe.models import IncidentState, PersonState, RecordState, ReviewState
from services.dedupe.settings import DedupeSettings

IdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]


class AgencyProgress(BaseModel):
    agency_id: str
    name: str
    expected: bool
    complete: bool
    records: int = Field(description="Live (not withdrawn) records received")
    withdrawn: int


class Progress(BaseModel):
    incident_id: str
    released_at: datetime | None
    release_reason: str | None
    hold_deadline: datetime | None
    agencies: list[AgencyProgress]
    persons: int = Field(description="Distinct persons the records resolve to")
    pending_release: int
    notified: int
    on_hold: int
    in_review: int


class ReviewView(BaseModel):
    review_id: str
    a: tuple[str, str] = Field(description="(agency_id, source_record_id)")
    b: tuple[str, str]
    reason: str = Field(description="uncertain: between thresholds; guard: a match refused")
    status: str
    evidence: dict = Field(description="Comparison levels and weights — never values")
    decided_at: datetime | None


class ReviewDecision(BaseModel):
    decision: Literal["merge", "keep_apart"]


class ReleaseRequested(BaseModel):
    incident_id: str
    manual_release_requested_at: datetime
    released_at: datetime | None


def _review_view(r: ReviewState) -> ReviewView:
    return ReviewView(review_id=r.review_id, a=(r.a_agency_id, r.a_source_record_id),
                      b=(r.b_agency_id, r.b_source_record_id), reason=r.reason, status=r.status,
                      evidence=r.evidence, decided_at=r.decided_at)


def build_router(settings: DedupeSettings) -> APIRouter:
    coordinator = CoordinatorAuth(settings.coordinator_tokens.get_secret_value())
    router = APIRouter(prefix="/v1", tags=["coordinator"], dependencies=[Depends(coordinator)],
                       responses={c: {"model": ErrorResponse} for c in (401, 404, 422)})

    def runtime(request: Request):  # noqa: ANN202
        return request.app.state.runtime

    @router.get("/incidents/{incident_id}/progress", response_model=Progress,
                summary="Records per agency, persons, pending release, notified, on hold, in review")
    async def progress(incident_id: IdPath, request: Request) -> Progress:
        def work() -> Progress:
            with Session(runtime(request).engine) as session:
                incident = session.get(IncidentState, incident_id)
                if incident is None:
                    raise ApiError(404, "incident.not_found", "No such incident.")
                counts = session.exec(
                    select(RecordState.agency_id, RecordState.withdrawn, func.count())
                    .where(RecordState.incident_id == incident_id)
                    .group_by(RecordState.agency_id, RecordState.withdrawn)).all()
                per_agency: dict[str, list[int]] = {}
                for agency_id, withdrawn, n in counts:
                    per_agency.setdefault(agency_id, [0, 0])[1 if withdrawn else 0] += n
                for agency_id in incident.agency_names:
                    per_agency.setdefault(agency_id, [0, 0])
                statuses = dict(session.exec(
                    select(PersonState.status, func.count())
                    .where(PersonState.incident_id == incident_id)
                    .group_by(PersonState.status)).all())
                in_review = session.exec(select(func.count()).select_from(ReviewState).where(
                    ReviewState.incident_id == incident_id, ReviewState.status == "open")).one()
                hold_deadline = (incident.release_policy or {}).get("hold_deadline")
                return Progress(
                    incident_id=incident_id, released_at=incident.released_at,
                    release_reason=incident.release_reason, hold_deadline=hold_deadline,
                    agencies=[AgencyProgress(
                        agency_id=a, name=incident.agency_names.get(a, a),
                        expected=a in incident.expected_agency_ids, complete=a in incident.completed,
                        records=n[0], withdrawn=n[1]) for a, n in sorted(per_agency.items())],
                    persons=sum(n for s, n in statuses.items() if s != "empty"),
                    pending_release=statuses.get("pending", 0),
                    notified=statuses.get("notified", 0),
                    on_hold=statuses.get("held", 0),
                    in_review=in_review,
                )

        return await run_db(work)

    @router.get("/incidents/{incident_id}/reviews", response_model=list[ReviewView],
                summary="Uncertain pairs awaiting (or with) a decision")
    async def reviews(incident_id: IdPath, request: Request,
                      status: Literal["open", "merge", "keep_apart", "resolved", "all"] = "open",
                      ) -> list[ReviewView]:
        def work() -> list[ReviewView]:
            with Session(runtime(request).engine) as session:
                query = select(ReviewState).where(ReviewState.incident_id == incident_id)
                if status != "all":
                    query = query.where(ReviewState.status == status)
                return [_review_view(r) for r in session.exec(query.order_by(ReviewState.review_id))]

        return await run_db(work)

    @router.post("/incidents/{incident_id}/reviews/{review_id}/decision", response_model=ReviewView,
                 summary="Merge the pair into one person, or keep them apart")
    async def decide(incident_id: IdPath, review_id: IdPath, body: ReviewDecision,
                     request: Request) -> ReviewView:
        pipeline = runtime(request).pipeline
        row = await run_db(pipeline.decide_review, incident_id, review_id, body.decision == "merge")
        if row is None:
            raise ApiError(404, "review.not_found", "No such review item in this incident.")
        return _review_view(row)

    @router.post("/incidents/{incident_id}/release", response_model=ReleaseRequested,
                 summary="Release the incident's notices now (before completion or deadline)")
    async def release(incident_id: IdPath, request: Request) -> ReleaseRequested:
        incident = await run_db(runtime(request).pipeline.request_manual_release, incident_id)
        if incident is None:
            raise ApiError(404, "incident.not_found", "No such incident.")
        return ReleaseRequested(incident_id=incident_id,
                                manual_release_requested_at=incident.manual_release_requested_at,
                                released_at=incident.released_at)

    return router
