"""Intake's HTTP API (/v1): the coordinator sets up incidents and agencies; agencies submit
feeds, read their receipts and problems, mark their contribution complete, and withdraw.

An agency sees only its own feeds, and only for incidents it is enrolled in:
wrong or missing key → 401; an incident it is not enrolled in → 404 exactly as for one that
does not exist, another agency's feed → 404 exactly as for no feed (no existence oracle).
"""

import dataclasses
import io
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from services.common import audit, principals, shared_buckets
from services.common.clock import utcnow
from services.common.deps import (
    AnyStaffContext,
    Context,
    CoordinatorContext,
    IdPath,
    PageAfter,
    PageLimit,
    context,
    page_response,
)
from services.common.errors import ApiError, ErrorResponse
from services.common.inbound import body_limit
from services.common.reconciliation import (
    IntakeRecordPage,
    IntakeRecordStatus,
    StatusTicket,
)
from services.common.report import ReportMilestone, ServiceReport, counts_of
from services.intake import feeds, incidents, retention, store
from services.intake.parsing import detect_format
from services.intake.runtime import IntakeRuntime
from services.intake.schemas import (
    AgencyEnrol,
    Completion,
    FeedReceipt,
    IncidentClosure,
    IncidentCreate,
    IncidentEdit,
    IncidentListItem,
    IncidentView,
    IssuedKey,
    ProblemPage,
    TemplatesApproval,
    Withdrawal,
)

AgencyContext = Annotated[Context[IntakeRuntime], Depends(context("agency"))]
ERRORS = {code: {"model": ErrorResponse} for code in (401, 404, 409, 413, 415, 422, 429)}

coordinator = APIRouter(prefix="/v1", tags=["coordinator"], responses=ERRORS)
agency = APIRouter(prefix="/v1", tags=["agency"], responses=ERRORS)


def _no_incident() -> ApiError:
    return ApiError(404, "incident.not_found", "No such incident.")


# --- coordinator --------------------------------------------------------------------------------


@coordinator.post("/incidents", status_code=201, response_model=IncidentView,
                  summary="Create an incident with its notice content and expected agencies")
async def create_incident(body: IncidentCreate, ctx: CoordinatorContext) -> IncidentView:
    created = await ctx.audited(
        lambda c: c and ctx.act("incident.create", body.incident_id,
                                *(f"{k.agency_id}/{k.key_id}" for k in c.issued_keys)),
        incidents.create_incident, body)
    if created is None:
        raise ApiError(409, "incident.exists", "An incident with this id exists.")
    ctx.runtime.relay.wake()
    return IncidentView.of(created.incident, created.agencies, created.issued_keys)


@coordinator.put("/incidents/{incident_id}/content", response_model=IncidentView,
                 summary="Edit an incident's title and notice content (a new revision)")
async def edit_content(incident_id: IdPath, body: IncidentEdit,
                       ctx: CoordinatorContext) -> IncidentView:
    try:
        edited = await ctx.audited(
            lambda e: e and ctx.act("incident.edit", incident_id, f"revision:{e.incident.revision}"),
            incidents.edit_content, incident_id, body)
    except incidents.RevisionConflict as exc:
        raise ApiError(409, "incident.revision_conflict",
                       f"The incident is at revision {exc.current} now: reload it and edit "
                       "again.") from None
    except incidents.IncidentClosed:
        raise ApiError(409, "incident.closed", "The incident is closed: its content is final.") from None
    if edited is None:
        raise _no_incident()
    ctx.runtime.relay.wake()
    return IncidentView.of(edited.incident, edited.agencies)


@coordinator.post("/incidents/{incident_id}/templates-mi/approval", response_model=IncidentView,
                  summary="Approve the te reo templates previewed (dispatch's notice-preview)")
async def approve_templates_mi(incident_id: IdPath, body: TemplatesApproval,
                               ctx: CoordinatorContext) -> IncidentView:
    try:
        incident = await ctx.db.run(incidents.approve_templates_mi, incident_id, body.fingerprint)
    except incidents.TemplatesChanged:
        raise ApiError(409, "templates_mi.changed", "The te reo templates are not the ones with "
                       "that fingerprint (or there are none): preview them again.") from None
    if incident is None:
        raise _no_incident()
    ctx.runtime.relay.wake()
    found = await ctx.db.run(incidents.snapshot, incident_id)
    return IncidentView.of(found.incident, found.agencies)


@coordinator.get("/incidents", response_model=list[IncidentListItem],
                 summary="Incidents, newest first, with their agencies' completion")
async def list_incidents(ctx: CoordinatorContext,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[IncidentListItem]:
    found = await ctx.db.run(store.list_incidents, limit)
    return [IncidentListItem.model_validate(dataclasses.asdict(i)) for i in found]


@coordinator.get("/incidents/{incident_id}", response_model=IncidentView, summary="An incident")
async def get_incident(incident_id: IdPath, ctx: AnyStaffContext) -> IncidentView:
    found = await ctx.db.run(incidents.snapshot, incident_id)
    if found is None:
        raise _no_incident()
    return IncidentView.of(found.incident, found.agencies)  # keys are never shown again


@coordinator.post("/incidents/{incident_id}/close", response_model=IncidentClosure,
                  summary="Close an incident: no more feeds; purged in every service after the "
                          "retention period")
async def close_incident(incident_id: IdPath, ctx: CoordinatorContext) -> IncidentClosure:
    now = utcnow()
    # In the audit log only when this call closed it (a second close changes nothing).
    closed = await ctx.audited(
        lambda c: ctx.act("incident.close", incident_id) if c and c.closed_at == now else None,
        retention.close, incident_id, now, ctx.runtime.settings.purge_after_s,
        f"{ctx.caller.kind}:{ctx.caller.principal}")
    if closed is None:
        raise _no_incident()
    ctx.runtime.relay.wake()
    return IncidentClosure(incident_id=incident_id, closed_at=closed.closed_at,
                           purge_after=closed.purge_after, purged_at=closed.purged_at)


@coordinator.post("/incidents/{incident_id}/agencies", status_code=201, response_model=IssuedKey,
                  summary="Enrol an agency in an incident and issue it an API key (shown once)")
async def enrol(incident_id: IdPath, body: AgencyEnrol, ctx: CoordinatorContext) -> IssuedKey:
    key = await ctx.audited(
        lambda k: k and ctx.act("agency.enrol", incident_id, body.agency_id, f"{k.agency_id}/{k.key_id}"),
        incidents.enrol_agency, incident_id, body.agency_id, body.name, body.expected)
    if key is None:
        raise _no_incident()
    ctx.runtime.relay.wake()
    return IssuedKey.of(key)


@coordinator.post("/agencies/{agency_id}/keys", status_code=201, response_model=IssuedKey,
                  summary="Issue another API key to an agency (for rotation)")
async def new_key(agency_id: IdPath, ctx: CoordinatorContext) -> IssuedKey:
    key = await ctx.audited(lambda k: k and ctx.act("key.issue", None, f"{k.agency_id}/{k.key_id}"),
                            incidents.issue_key, agency_id)
    if key is None:
        raise ApiError(404, "agency.not_found", "No such agency.")
    return IssuedKey.of(key)


@coordinator.delete("/agencies/{agency_id}/keys/{key_id}", status_code=204,
                    summary="Revoke an agency's API key")
async def delete_key(agency_id: IdPath, key_id: IdPath, ctx: CoordinatorContext) -> Response:
    revoked = await ctx.audited(
        lambda done: ctx.act("key.revoke", None, f"{agency_id}/{key_id}") if done else None,
        store.revoke_api_key, agency_id, key_id)
    if not revoked:
        raise ApiError(404, "key.not_found", "No such key for this agency.")
    return Response(status_code=204)


# --- agency -------------------------------------------------------------------------------------


async def _require_open(ctx: Context, incident_id: str) -> None:
    if await ctx.db.run(store.is_closed, incident_id):
        raise ApiError(409, "incident.closed", "The incident is closed: it takes no more records.")


async def _require_access(ctx: Context, incident_id: str, feed_id: str | None = None) -> None:
    """The caller's agency is enrolled in the incident (and owns the feed)."""
    access = await ctx.db.run(store.agency_access, incident_id, ctx.caller.agency_id, feed_id)
    if access is store.Access.NO_INCIDENT:
        raise _no_incident()
    if access is store.Access.NO_FEED:
        raise ApiError(404, "feed.not_found", "No such feed.")


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "feed.too_large", f"A request may carry at most {max_bytes} bytes.")


@asynccontextmanager
async def _body_in_memory(request: Request, max_bytes: int) -> AsyncIterator[BinaryIO]:
    """The request body, in memory: never spooled to disk, where it would be personal data in
    clear. The inbound guard has bounded it by `max_bytes` already (Content-Length and while
    streaming); the check here keeps the bound true for any other way the router is mounted."""
    body = io.BytesIO()
    try:
        async for chunk in request.stream():
            if body.tell() + len(chunk) > max_bytes:
                raise _too_large(max_bytes)
            body.write(chunk)
        body.seek(0)
        yield body
    finally:
        body.close()


@agency.post(
    "/incidents/{incident_id}/feeds", status_code=202, response_model=FeedReceipt,
    summary="Submit affected records (NDJSON, CSV with a header row, or a JSON array)",
    dependencies=[body_limit("max_request_bytes", "feed.too_large")],
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/x-ndjson": {"schema": {"type": "string"}},
        "text/csv": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    }}},
)
async def submit_feed(
    incident_id: IdPath,
    request: Request,
    ctx: AgencyContext,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> FeedReceipt:
    settings, agency_id = ctx.runtime.settings, ctx.caller.agency_id
    idempotency_key = (idempotency_key or "").strip() or None  # a blank key is no key
    wait = ctx.runtime.limiter.wait_time(agency_id)  # this process first, then every replica's
    if wait == 0:
        wait = await ctx.db.run(shared_buckets.take, ctx.runtime.agency_limit, agency_id)
    if wait > 0:
        raise ApiError(429, "rate.limited", "Too many feed requests; retry later.",
                       headers={"Retry-After": str(math.ceil(wait))})
    fmt = detect_format(request.headers.get("content-type"), None)
    if fmt is None:
        raise ApiError(415, "feed.unsupported_format",
                       "Send application/x-ndjson, text/csv or application/json.")
    await _require_access(ctx, incident_id)
    await _require_open(ctx, incident_id)
    try:
        outcome = None
        if idempotency_key:  # sent before: the original receipt, nothing stored again
            outcome = await ctx.db.run(feeds.replay, incident_id, agency_id, idempotency_key,
                                       settings.receipt_problem_limit)
        if outcome is None:
            async with _body_in_memory(request, settings.max_request_bytes) as body:
                outcome = await feeds.accept_feed(
                    ctx.db, ctx.runtime.sealer, settings, incident_id=incident_id,
                    agency_id=agency_id, fmt=fmt, body=body, idempotency_key=idempotency_key)
            ctx.runtime.relay.wake()
    except feeds.IdempotencyKeyReused:
        raise ApiError(409, "feed.idempotency_key_reused",
                       "This Idempotency-Key was used for another incident.") from None
    except feeds.CsvHeaderMissing:
        raise ApiError(422, "feed.csv_header_missing",
                       "The CSV's first row must be a header row naming the fields, with a "
                       "source_record_id column; nothing was stored.") from None
    except feeds.TooManyRecords:
        raise ApiError(413, "feed.too_many_records",
                       f"A request may carry at most {settings.max_records_per_request} records; "
                       "split the feed.") from None
    return FeedReceipt.of(outcome.feed, outcome.problems)


@agency.get("/incidents/{incident_id}/feeds/{feed_id}", response_model=FeedReceipt,
            summary="A feed's receipt")
async def get_feed(incident_id: IdPath, feed_id: IdPath, ctx: AgencyContext) -> FeedReceipt:
    await _require_access(ctx, incident_id, feed_id)
    outcome = await ctx.db.run(feeds.stored_outcome, feed_id, ctx.runtime.settings.receipt_problem_limit)
    return FeedReceipt.of(outcome.feed, outcome.problems)


@agency.get("/incidents/{incident_id}/feeds/{feed_id}/problems", response_model=ProblemPage,
            summary="All problems of a feed, by line")
async def get_problems(incident_id: IdPath, feed_id: IdPath, ctx: AgencyContext,
                       after_line: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                       limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> ProblemPage:
    await _require_access(ctx, incident_id, feed_id)
    return ProblemPage.of(feed_id, await ctx.db.run(store.problems_page, feed_id, after_line, limit))


@agency.post("/incidents/{incident_id}/completion", response_model=Completion,
             summary="Mark your agency's contribution to the incident complete")
async def complete(incident_id: IdPath, ctx: AgencyContext) -> Completion:
    await _require_access(ctx, incident_id)
    agency_id = ctx.caller.agency_id
    enrolment = await ctx.db.run(incidents.mark_complete, incident_id, agency_id)
    ctx.runtime.relay.wake()
    return Completion(incident_id=incident_id, agency_id=agency_id,
                      completed_at=enrolment.completed_at, record_count=enrolment.completed_record_count)


@agency.delete("/incidents/{incident_id}/records/{source_record_id}", response_model=Withdrawal,
               summary="Withdraw a record sent by mistake (after its person's notice, the "
                       "coordinator decides on a correction notice)")
async def withdraw(incident_id: IdPath, source_record_id: Annotated[str, Path(max_length=128)],
                   ctx: AgencyContext) -> Withdrawal:
    await _require_access(ctx, incident_id)
    await _require_open(ctx, incident_id)
    outcome = await ctx.db.run(feeds.withdraw_record, incident_id, ctx.caller.agency_id, source_record_id)
    if outcome is None:
        raise ApiError(404, "record.not_found", "No such record from your agency.")
    ctx.runtime.relay.wake()
    return Withdrawal(incident_id=incident_id, source_record_id=source_record_id,
                      status="withdrawn" if outcome else "already-withdrawn")


@coordinator.get("/incidents/{incident_id}/report", response_model=ServiceReport,
                 summary="Intake's part of the Privacy Commissioner's report (counts, no personal data)")
async def commissioner_report(incident_id: IdPath, ctx: CoordinatorContext) -> ServiceReport:
    return await own_report(ctx, incident_id)


async def own_report(ctx: Context, incident_id: str) -> ServiceReport:
    """Intake's part of the report (also what the console's combined report starts from)."""
    found = await ctx.db.run(store.commissioner_counts, incident_id)
    if found is None:
        raise _no_incident()
    return ServiceReport(
        service="intake", incident_id=incident_id, generated_at=utcnow(),
        counts=counts_of(found.incident, found.by_agency),
        milestones=[ReportMilestone(agency_id=a, milestone=m, at=at) for a, m, at in found.milestones])


# --- agency reconciliation (services/common/reconciliation.py) --------------------------------


@agency.get("/incidents/{incident_id}/reconciliation/records", response_model=IntakeRecordPage,
            summary="Intake's part of your reconciliation: each of your records accepted, "
            "withdrawn or rejected, by source_record_id")
async def reconciliation_records(
    incident_id: IdPath, ctx: AgencyContext,
    after: PageAfter = "",
    limit: PageLimit = 5000,
) -> Response:
    await _require_access(ctx, incident_id)
    agency_id = ctx.caller.agency_id
    outcomes, next_after = await ctx.db.run(store.record_outcomes, incident_id, agency_id, after, limit)
    return page_response(IntakeRecordPage(
        incident_id=incident_id, agency_id=agency_id, next_after=next_after,
        records=[IntakeRecordStatus(**o._asdict()) for o in outcomes]))


@agency.post("/incidents/{incident_id}/status-ticket", status_code=201, response_model=StatusTicket,
             summary="A short-lived ticket for your reconciliation rows at dedupe and dispatch")
async def status_ticket(incident_id: IdPath, ctx: AgencyContext) -> StatusTicket:
    """Dedupe and dispatch hold no agency keys: intake, which does, vouches for the agency for
    one incident and a few minutes (services/common/principals.py). Audited."""
    await _require_access(ctx, incident_id)
    agency_id = ctx.caller.agency_id
    ticket, claims = await issue_status_ticket(ctx, incident_id, agency_id, "status_ticket.issue")
    return StatusTicket(ticket=ticket, incident_id=incident_id, agency_id=agency_id,
                        expires_at=claims["exp"])


async def issue_status_ticket(ctx: Context, incident_id: str, agency_id: str, action: str,
                              *audited: str) -> tuple[str, dict]:
    """A status ticket for the agency's reconciliation rows of one incident, with an audit
    entry `action` naming the incident, the ticket's id and `audited` (the caller is in it):
    the agency's own, or the coordinator's console asking on the coordinator's behalf."""
    key = ctx.runtime.settings.token_signing_key.get_secret_value()
    if not key:
        raise ApiError(409, "token.no_signing_key",
                       "This deployment has no PANUI_TOKEN_SIGNING_KEY: it cannot issue tickets.")
    ticket, claims = principals.mint_agency_ticket(key.encode(), agency_id, incident_id, int(time.time()))

    def record(session) -> None:  # noqa: ANN001 - the audit entry alone is the transaction
        audit.record(session, ctx.act(action, incident_id, claims["jti"], *audited))

    await ctx.db.run(record)
    return ticket, claims


routers = [coordinator, agency]
