"""Intake's HTTP API (/v1): the coordinator sets up incidents and agencies; agencies submit
feeds, read their receipts and problems, mark their contribution complete, and withdraw.

An agency sees only its own feeds, and only for incidents it is enrolled in:
wrong or missing key → 401, not enrolled → 403, another agency's feed → 404.
"""

import math
import re
import tempfile
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from services.common.auth import CoordinatorAuth
from services.common.db import run_db, session_scope
from services.common.errors import ApiError, ErrorResponse
from services.common.messages import ChannelPolicy, IncidentContent, ReleasePolicy
from services.common.ratelimit import KeyedRateLimiter
from services.intake import feeds, incidents
from services.intake.auth import current_agency, issue_key, revoke_key
from services.intake.models import Agency, Feed, FeedProblem, Incident
from services.intake.parsing import detect_format, iter_feed
from services.intake.settings import IntakeSettings
from services.intake.validation import Problem

IdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 413, 415, 422, 429)}


# --- request and response bodies ----------------------------------------------------------------


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: object) -> object:
    """Reject text PostgreSQL cannot store (NUL) or UTF-8 cannot encode (lone surrogates),
    anywhere in a body, as a 422 rather than a failed insert."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            raise ValueError("text contains a NUL character or a lone surrogate")
    elif isinstance(value, dict):
        for k, v in value.items():
            _storable(k)
            _storable(v)
    elif isinstance(value, list):
        for v in value:
            _storable(v)
    return value


class _StorableBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _check_storable(cls, data: object) -> object:
        return _storable(data)


class IncidentCreate(_StorableBody):

    incident_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    title: str = Field(min_length=1, max_length=200)
    content: IncidentContent
    release_policy: ReleasePolicy = ReleasePolicy()
    channel_policy: ChannelPolicy = ChannelPolicy()
    expected_agencies: list["AgencyEnrol"] = []


class AgencyEnrol(_StorableBody):

    agency_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    name: str = Field(min_length=1, max_length=200)
    expected: bool = True  # expected agencies gate the incident's release


class IssuedKey(BaseModel):
    agency_id: str
    key_id: str
    api_key: str = Field(description="Shown once; only a hash is kept.")


class IncidentView(BaseModel):
    incident_id: str
    revision: int
    title: str
    content: IncidentContent
    release_policy: ReleasePolicy
    channel_policy: ChannelPolicy
    agencies: list[dict]
    issued_keys: list[IssuedKey] = []


class ProblemView(BaseModel):
    line: int
    source_record_id: str | None
    field: str | None
    severity: str
    code: str
    message: str


class FeedReceipt(BaseModel):
    feed_id: str
    incident_id: str
    format: str
    received: int
    accepted: int = Field(description="New records and new versions of records")
    unchanged: int = Field(description="Identical re-sends: no-ops")
    rejected: int
    warnings: int
    created_at: datetime
    problems: list[ProblemView] = Field(description="The first problems; see problems_url")
    problems_url: str


class ProblemPage(BaseModel):
    feed_id: str
    problems: list[ProblemView]
    next_after_line: int | None


class Completion(BaseModel):
    incident_id: str
    agency_id: str
    completed_at: datetime
    record_count: int


class Withdrawal(BaseModel):
    incident_id: str
    source_record_id: str
    status: str = Field(description="withdrawn | already-withdrawn")


def _problem_view(p: Problem | FeedProblem) -> ProblemView:
    return ProblemView(line=p.line, source_record_id=p.source_record_id, field=p.field,
                       severity=p.severity, code=p.code, message=p.message)


def _receipt(feed: Feed, problems: list) -> FeedReceipt:
    return FeedReceipt(
        feed_id=feed.feed_id, incident_id=feed.incident_id, format=feed.format,
        received=feed.received, accepted=feed.accepted, unchanged=feed.unchanged,
        rejected=feed.rejected, warnings=feed.warnings, created_at=feed.created_at,
        problems=[_problem_view(p) for p in problems],
        problems_url=f"/v1/incidents/{feed.incident_id}/feeds/{feed.feed_id}/problems",
    )


def build_routers(settings: IntakeSettings) -> list[APIRouter]:
    coordinator = CoordinatorAuth(settings.coordinator_tokens.get_secret_value())
    limiter = KeyedRateLimiter(settings.agency_requests_per_minute)

    admin = APIRouter(prefix="/v1", tags=["coordinator"], dependencies=[Depends(coordinator)],
                      responses=ERRORS)
    agency = APIRouter(prefix="/v1", tags=["agency"], responses=ERRORS)

    def engine(request: Request):  # noqa: ANN202
        return request.app.state.runtime.engine

    def incident_view(session: Session, incident: Incident, keys: list[IssuedKey]) -> IncidentView:
        rows = session.exec(select(Agency, incidents.Enrolment)
                            .join(incidents.Enrolment, incidents.Enrolment.agency_id == Agency.agency_id)
                            .where(incidents.Enrolment.incident_id == incident.incident_id)).all()
        return IncidentView(
            incident_id=incident.incident_id, revision=incident.revision, title=incident.title,
            content=incident.content, release_policy=incident.release_policy,
            channel_policy=incident.channel_policy, issued_keys=keys,
            agencies=[{"agency_id": a.agency_id, "name": a.name, "expected": e.expected,
                       "completed_at": e.completed_at} for a, e in rows],
        )

    # --- coordinator ----------------------------------------------------------------------------

    @admin.post("/incidents", status_code=201, response_model=IncidentView,
                summary="Create an incident with its notice content and expected agencies")
    async def create_incident(body: IncidentCreate, request: Request) -> IncidentView:
        def work() -> IncidentView:
            with session_scope(engine(request)) as session:
                incident = incidents.create_incident(
                    session, body.incident_id, body.title, body.content,
                    body.release_policy, body.channel_policy)
                if incident is None:
                    raise ApiError(409, "incident.exists", "An incident with this id exists.")
                keys = []
                for enrol in body.expected_agencies:
                    incidents.enrol_agency(session, incident, enrol.agency_id, enrol.name, enrol.expected)
                    row, key = issue_key(session, enrol.agency_id)
                    keys.append(IssuedKey(agency_id=enrol.agency_id, key_id=row.key_id, api_key=key))
                return incident_view(session, incident, keys)

        response = await run_db(work)
        request.app.state.runtime.relay.wake()
        return response

    @admin.get("/incidents/{incident_id}", response_model=IncidentView, summary="An incident")
    async def get_incident(incident_id: IdPath, request: Request) -> IncidentView:
        def work() -> IncidentView:
            with Session(engine(request)) as session:
                incident = session.get(Incident, incident_id)
                if incident is None:
                    raise ApiError(404, "incident.not_found", "No such incident.")
                return incident_view(session, incident, [])

        return await run_db(work)

    @admin.post("/incidents/{incident_id}/agencies", status_code=201, response_model=IssuedKey,
                summary="Enrol an agency in an incident and issue it an API key (shown once)")
    async def enrol(incident_id: IdPath, body: AgencyEnrol, request: Request) -> IssuedKey:
        def work() -> IssuedKey:
            with session_scope(engine(request)) as session:
                incident = session.get(Incident, incident_id)
                if incident is None:
                    raise ApiError(404, "incident.not_found", "No such incident.")
                incidents.enrol_agency(session, incident, body.agency_id, body.name, body.expected)
                row, key = issue_key(session, body.agency_id)
                return IssuedKey(agency_id=body.agency_id, key_id=row.key_id, api_key=key)

        issued = await run_db(work)
        request.app.state.runtime.relay.wake()
        return issued

    @admin.post("/agencies/{agency_id}/keys", status_code=201, response_model=IssuedKey,
                summary="Issue another API key to an agency (for rotation)")
    async def new_key(agency_id: IdPath, request: Request) -> IssuedKey:
        def work() -> IssuedKey:
            with session_scope(engine(request)) as session:
                if session.get(Agency, agency_id) is None:
                    raise ApiError(404, "agency.not_found", "No such agency.")
                row, key = issue_key(session, agency_id)
                return IssuedKey(agency_id=agency_id, key_id=row.key_id, api_key=key)

        return await run_db(work)

    @admin.delete("/agencies/{agency_id}/keys/{key_id}", status_code=204,
                  summary="Revoke an agency's API key")
    async def delete_key(agency_id: IdPath, key_id: IdPath, request: Request) -> Response:
        def work() -> bool:
            with session_scope(engine(request)) as session:
                return revoke_key(session, agency_id, key_id)

        if not await run_db(work):
            raise ApiError(404, "key.not_found", "No such key for this agency.")
        return Response(status_code=204)

    # --- agency ---------------------------------------------------------------------------------

    def require_enrolled(session: Session, incident_id: str, agency_id: str) -> None:
        if session.get(Incident, incident_id) is None:
            raise ApiError(404, "incident.not_found", "No such incident.")
        if not incidents.is_enrolled(session, incident_id, agency_id):
            raise ApiError(403, "incident.not_enrolled", "Your agency is not enrolled in this incident.")

    def own_feed(session: Session, incident_id: str, agency_id: str, feed_id: str) -> Feed:
        require_enrolled(session, incident_id, agency_id)
        feed = session.get(Feed, feed_id)
        if feed is None or feed.agency_id != agency_id or feed.incident_id != incident_id:
            raise ApiError(404, "feed.not_found", "No such feed.")
        return feed

    @agency.post(
        "/incidents/{incident_id}/feeds", status_code=202, response_model=FeedReceipt,
        summary="Submit affected records (NDJSON, CSV with a header row, or a JSON array)",
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        }}},
    )
    async def submit_feed(
        incident_id: IdPath,
        request: Request,
        agency_id: Annotated[str, Depends(current_agency)],
        idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
    ) -> FeedReceipt:
        idempotency_key = (idempotency_key or "").strip() or None  # a blank key is no key
        wait = limiter.wait_time(agency_id)
        if wait:
            raise ApiError(429, "rate.limited", "Too many feed requests; retry later.",
                           headers={"Retry-After": str(math.ceil(wait))})
        fmt = detect_format(request.headers.get("content-type"), None)
        if fmt is None:
            raise ApiError(415, "feed.unsupported_format",
                           "Send application/x-ndjson, text/csv or application/json.")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_request_bytes:
            raise ApiError(413, "feed.too_large",
                           f"A request may carry at most {settings.max_request_bytes} bytes.")

        def replay_or_check() -> FeedReceipt | None:
            with Session(engine(request)) as session:
                require_enrolled(session, incident_id, agency_id)
                if idempotency_key:
                    feed = session.exec(select(Feed).where(
                        Feed.agency_id == agency_id, Feed.idempotency_key == idempotency_key)).first()
                    if feed is not None:
                        if feed.incident_id != incident_id:
                            raise ApiError(409, "feed.idempotency_key_reused",
                                           "This Idempotency-Key was used for another incident.")
                        return _stored_receipt(session, feed)
            return None

        replay = await run_db(replay_or_check)
        if replay is not None:
            return replay

        # Spool the body (to disk past 8 MB) so memory stays flat, then parse it as a stream.
        body = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
        try:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > settings.max_request_bytes:
                    raise ApiError(413, "feed.too_large",
                                   f"A request may carry at most {settings.max_request_bytes} bytes.")
                body.write(chunk)
            body.seek(0)

            def work() -> FeedReceipt:
                try:
                    outcome = feeds.ingest_feed(
                        engine(request), request.app.state.runtime.sealer,
                        incident_id=incident_id, agency_id=agency_id, fmt=fmt,
                        items=iter_feed(body, fmt), idempotency_key=idempotency_key,
                        chunk_size=settings.store_chunk_records,
                        max_records=settings.max_records_per_request,
                        receipt_problem_limit=settings.receipt_problem_limit,
                    )
                except feeds.TooManyRecords:
                    raise ApiError(413, "feed.too_many_records",
                                   f"A request may carry at most {settings.max_records_per_request} "
                                   "records; split the feed.") from None
                except IntegrityError:
                    # A concurrent request with the same Idempotency-Key won: replay its receipt.
                    replay = replay_or_check()
                    if replay is None:
                        raise
                    return replay
                return _receipt(outcome.feed, outcome.problems)

            receipt = await run_db(work)
        finally:
            body.close()
        request.app.state.runtime.relay.wake()
        return receipt

    def _stored_receipt(session: Session, feed: Feed) -> FeedReceipt:
        problems = session.exec(select(FeedProblem).where(FeedProblem.feed_id == feed.feed_id)
                                .order_by(FeedProblem.id).limit(settings.receipt_problem_limit)).all()
        return _receipt(feed, list(problems))

    @agency.get("/incidents/{incident_id}/feeds/{feed_id}", response_model=FeedReceipt,
                summary="A feed's receipt")
    async def get_feed(incident_id: IdPath, feed_id: IdPath, request: Request,
                       agency_id: Annotated[str, Depends(current_agency)]) -> FeedReceipt:
        def work() -> FeedReceipt:
            with Session(engine(request)) as session:
                return _stored_receipt(session, own_feed(session, incident_id, agency_id, feed_id))

        return await run_db(work)

    @agency.get("/incidents/{incident_id}/feeds/{feed_id}/problems", response_model=ProblemPage,
                summary="All problems of a feed, by line")
    async def get_problems(incident_id: IdPath, feed_id: IdPath, request: Request,
                           agency_id: Annotated[str, Depends(current_agency)],
                           after_line: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                           limit: Annotated[int, Query(ge=1, le=10000)] = 1000
                           ) -> ProblemPage:
        def work() -> ProblemPage:
            with Session(engine(request)) as session:
                own_feed(session, incident_id, agency_id, feed_id)
                rows = session.exec(
                    select(FeedProblem)
                    .where(FeedProblem.feed_id == feed_id, FeedProblem.line > after_line)
                    .order_by(FeedProblem.line, FeedProblem.id).limit(limit + 1)).all()
            # Never split one line's problems across pages.
            page = list(rows[:limit])
            more = len(rows) > limit
            if more:
                last_line = page[-1].line
                page = [p for p in page if p.line < last_line] or page
            return ProblemPage(feed_id=feed_id, problems=[_problem_view(p) for p in page],
                               next_after_line=page[-1].line if more and page else None)

        return await run_db(work)

    @agency.post("/incidents/{incident_id}/completion", response_model=Completion,
                 summary="Mark your agency's contribution to the incident complete")
    async def complete(incident_id: IdPath, request: Request,
                       agency_id: Annotated[str, Depends(current_agency)]) -> Completion:
        def work() -> Completion:
            with session_scope(engine(request)) as session:
                require_enrolled(session, incident_id, agency_id)
                enrolment = incidents.mark_complete(session, incident_id, agency_id)
                return Completion(incident_id=incident_id, agency_id=agency_id,
                                  completed_at=enrolment.completed_at,
                                  record_count=enrolment.completed_record_count)

        done = await run_db(work)
        request.app.state.runtime.relay.wake()
        return done

    @agency.delete("/incidents/{incident_id}/records/{source_record_id}", response_model=Withdrawal,
                   summary="Withdraw a record sent by mistake (before its person's notice is released)")
    async def withdraw(incident_id: IdPath, source_record_id: Annotated[str, Path(max_length=128)],
                       request: Request,
                       agency_id: Annotated[str, Depends(current_agency)]) -> Withdrawal:
        def work() -> bool | None:
            with session_scope(engine(request)) as session:
                require_enrolled(session, incident_id, agency_id)
                return feeds.withdraw_record(session, incident_id, agency_id, source_record_id)

        outcome = await run_db(work)
        if outcome is None:
            raise ApiError(404, "record.not_found", "No such record from your agency.")
        request.app.state.runtime.relay.wake()
        return Withdrawal(incident_id=incident_id, source_record_id=source_record_id,
                          status="withdrawn" if outcome else "already-withdrawn")

    return [admin, agency]


IncidentCreate.model_rebuild()
