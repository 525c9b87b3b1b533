"""Dispatch's HTTP API: provider receipts, and the coordinator's progress and unreachable list."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from services.common.clock import utcnow
from services.common.deps import AnyStaffContext, CoordinatorContext, IdPath, PublicContext, staff
from services.common.errors import ApiError, ErrorResponse
from services.common.inbound import body_limit
from services.common.report import ReportMilestone, ServiceReport, counts_of
from services.dispatch import export, metrics
from services.dispatch.delivery_state import ReceiptOutcome
from services.dispatch.providers.receipts import (
    InvalidSignature,
    ReceiptError,
    parse_receipt,
    signed_header,
)
from services.dispatch.providers.sms_http import HttpSmsProvider
from services.dispatch.providers.smtp import RECEIPT_STATUS_MAP as EMAIL_RECEIPT_STATUS_MAP
from services.dispatch.receipt_batches import CallerGone, ReceiptsBusy
from services.dispatch.schemas import DeliverySummary, ReceiptResult
from services.dispatch.store import reports

if TYPE_CHECKING:
    from services.dispatch.app import DispatchRuntime

# Provider names the receipt endpoint accepts (settings.RECEIPT_PROVIDERS), and how each one's
# statuses map to ours.
RECEIPT_PROVIDERS = {
    "sms-primary": HttpSmsProvider.STATUS_MAP,
    "sms-secondary": HttpSmsProvider.STATUS_MAP,
    "smtp": EMAIL_RECEIPT_STATUS_MAP,
}

router = APIRouter()
UnreachableReader = staff("coordinator", "call-centre")

_REFUSED = {
    ReceiptOutcome.UNKNOWN: (404, "receipt.reference_unknown", "No delivery has that reference."),
    ReceiptOutcome.WRONG_PROVIDER: (409, "receipt.provider_mismatch",
                                    "That delivery was not sent through this provider."),
    ReceiptOutcome.REPLAYED: (409, "receipt.replayed", "This receipt was received already."),
}


@router.post(
    "/v1/receipts/{provider}", tags=["receipts"],
    summary="Delivery receipt callback from a provider (HMAC-signed with the provider's secret)",
    dependencies=[body_limit("receipt_max_bytes", "receipt.too_large")],
    responses={code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 503)},
)
async def receipt(request: Request, ctx: PublicContext,
                  provider: str = Path(max_length=64)) -> ReceiptResult:
    # Public: the caller is authenticated by the body's signature, not a bearer token.
    runtime: DispatchRuntime = ctx.runtime
    status_map = RECEIPT_PROVIDERS.get(provider)
    if status_map is None:
        raise ApiError(404, "receipt.provider_unknown", "No such provider.")
    settings = runtime.settings
    try:
        # Shape and freshness of the signature before a byte of the body is read (whose size
        # the inbound guard bounds by receipt_max_bytes).
        signed_header(request.headers, tolerance=settings.receipt_tolerance_s)
        body = await request.body()
        parsed = parse_receipt(
            request.headers, body, settings.receipt_secret_for(provider), provider,
            tolerance=settings.receipt_tolerance_s, status_map=status_map,
        )
    except InvalidSignature as exc:
        metrics.RECEIPTS.labels(provider=provider, outcome="bad-signature").inc()
        raise ApiError(401, "receipt.signature_invalid", str(exc)) from None
    except ReceiptError as exc:
        metrics.RECEIPTS.labels(provider=provider, outcome="invalid").inc()
        raise ApiError(400, "receipt.invalid", str(exc)) from None
    # Hears the caller hang up while the receipt waits for its batch. (Request.is_disconnected
    # cannot: through the BaseHTTPMiddleware layers its non-blocking receive loses the message.)
    hung_up = asyncio.ensure_future(request.receive())
    hung_up.add_done_callback(lambda f: f.cancelled() or f.exception())
    try:
        # Group-committed with the receipts arriving with it; answered after the commit.
        outcome = await runtime.receipts.record(provider, parsed, lambda: _disconnected(hung_up))
    except ReceiptsBusy as busy:
        raise ApiError(503, "receipt.busy", "Receipts are queued too long here; try again later.",
                       headers={"Retry-After": str(busy.retry_after_s)}) from None
    except CallerGone:
        # Nobody reads this answer: the caller hung up and nothing was recorded.
        raise ApiError(499, "receipt.caller_gone", "The caller closed the request.") from None
    finally:
        hung_up.cancel()
    metrics.RECEIPTS.labels(provider=provider, outcome=outcome.value).inc()
    if outcome in _REFUSED:
        raise ApiError(*_REFUSED[outcome])
    if outcome is ReceiptOutcome.UPDATED:
        runtime.wake()  # publish the events; a fallback or resend may be due now
    return ReceiptResult(outcome=outcome.value)


def _disconnected(receiving: asyncio.Future) -> bool:
    # Once the body is read, the next ASGI message is the disconnect (or nothing yet).
    return (receiving.done() and not receiving.cancelled() and receiving.exception() is None
            and receiving.result().get("type") == "http.disconnect")


@router.get(
    "/v1/incidents/{incident_id}/deliveries/summary", tags=["coordinator"],
    summary="Delivery progress: counts by channel and status",
)
async def deliveries_summary(incident_id: IdPath, ctx: AnyStaffContext) -> DeliverySummary:
    counts = await ctx.db.run(reports.summary, incident_id)
    return DeliverySummary(incident_id=counts.incident_id, notices=counts.notices,
                           awaiting_incident=counts.awaiting_incident, by_channel=counts.by_channel)


@router.get(
    "/v1/incidents/{incident_id}/unreachable.csv", tags=["coordinator"], response_class=Response,
    summary="People to reach by post, or by the s 115 public notice (CSV)",
)
async def unreachable_csv(incident_id: IdPath, ctx: UnreachableReader) -> Response:
    # Names and addresses: recorded in the audit log with the count, in the same transaction.
    rows = await ctx.audited(lambda r: ctx.act("unreachable.download", incident_id, f"rows:{len(r)}"),
                             reports.unreachable, incident_id)
    body = await asyncio.to_thread(export.unreachable_csv, ctx.runtime.sealer, rows)
    return Response(
        body, media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{incident_id}-unreachable.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/v1/incidents/{incident_id}/report", tags=["coordinator"],
    summary="Dispatch's part of the Privacy Commissioner's report (counts, no personal data)",
)
async def commissioner_report(incident_id: IdPath, ctx: CoordinatorContext) -> ServiceReport:
    found = await ctx.db.run(reports.commissioner_counts, incident_id)
    return ServiceReport(
        service="dispatch", incident_id=incident_id, generated_at=utcnow(),
        counts=counts_of(found.incident, found.by_agency),
        milestones=[ReportMilestone(agency_id=None, milestone=m, at=at)
                    for m, at in sorted(found.milestones.items(), key=lambda kv: kv[1])])
