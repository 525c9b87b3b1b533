"""The Privacy Commissioner's whole report for the console: intake's own part and dedupe's and
dispatch's (their `GET /v1/incidents/{id}/report`, asked with the caller's own bearer token,
as the pass-through does), combined by the same function as `panui report`
(services/common/report.py) and answered as JSON, CSV or PDF (services/common/report_pdf.py).

Counts and dates only — no personal data — so the CSV and PDF are downloads like any other:
no audit entry (the per-service reports make none either). A service that does not answer is
a 502 `console.upstream_unavailable`; one that has not had the incident yet (it travels on
Kafka), a 409 `report.not_ready`; one that refuses otherwise, a 502 `report.upstream_refused`.
"""

import asyncio

from fastapi import APIRouter, Request, Response

from services.common.clock import utcnow
from services.common.deps import CoordinatorContext, IdPath
from services.common.errors import ErrorResponse
from services.common.report import Report, ServiceReport, combine, report_csv
from services.common.report_pdf import render_report_pdf
from services.intake.api import own_report
from services.intake.console.upstream import ask_part

# Tagged "console" like the pass-through: it needs dedupe and dispatch behind it (a fuzzer of
# intake alone would only see them down); the coordinator's token is still required.
router = APIRouter(prefix="/v1/incidents", tags=["console"],
                   responses={c: {"model": ErrorResponse} for c in (401, 404, 409, 502)})


async def _part(ctx: CoordinatorContext, request: Request, service: str, incident_id: str) -> ServiceReport:
    body = await ask_part(
        ctx.runtime.upstreams[service], service, "GET", f"/v1/incidents/{incident_id}/report",
        area="report", part="its part of the report", headers={
            "authorization": request.headers.get("authorization", ""),
            "x-request-id": getattr(request.state, "request_id", "")})
    return ServiceReport.model_validate_json(body)


async def _combined(ctx: CoordinatorContext, request: Request, incident_id: str) -> Report:
    mine = await own_report(ctx, incident_id)  # 404 here when intake has no such incident
    dedupe, dispatch = await asyncio.gather(_part(ctx, request, "dedupe", incident_id),
                                            _part(ctx, request, "dispatch", incident_id))
    return combine([mine, dedupe, dispatch], utcnow())


def _attachment(body: bytes | str, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


@router.get("/{incident_id}/commissioner-report", response_model=Report,
            summary="The Privacy Commissioner's report: intake's, dedupe's and dispatch's counts combined")
async def combined_report(incident_id: IdPath, request: Request, ctx: CoordinatorContext) -> Report:
    return await _combined(ctx, request, incident_id)


@router.get("/{incident_id}/commissioner-report.csv", response_class=Response,
            summary="The Privacy Commissioner's report as CSV (formula-safe)")
async def combined_report_csv(incident_id: IdPath, request: Request, ctx: CoordinatorContext) -> Response:
    report = await _combined(ctx, request, incident_id)
    return _attachment(report_csv(report), "text/csv; charset=utf-8",
                       f"{incident_id}-commissioner-report.csv")


@router.get("/{incident_id}/commissioner-report.pdf", response_class=Response,
            summary="The Privacy Commissioner's report as a PDF to send")
async def combined_report_pdf(incident_id: IdPath, request: Request, ctx: CoordinatorContext) -> Response:
    report = await _combined(ctx, request, incident_id)
    body = await asyncio.to_thread(render_report_pdf, report)
    return _attachment(body, "application/pdf", f"{incident_id}-commissioner-report.pdf")
