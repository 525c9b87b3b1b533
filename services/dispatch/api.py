"""Dispatch's HTTP API: provider receipts, and the coordinator's progress and unreachable list."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from services.common.deps import CoordinatorContext, IdPath, PublicContext
from services.common.errors import ApiError
from services.dispatch import export, metrics, tracking
from services.dispatch.delivery_state import ReceiptOutcome
from services.dispatch.providers.receipts import InvalidSignature, ReceiptError, parse_receipt
from services.dispatch.providers.sms_http import HttpSmsProvider
from services.dispatch.providers.smtp import RECEIPT_STATUS_MAP as EMAIL_RECEIPT_STATUS_MAP
from services.dispatch.schemas import DeliverySummary, ReceiptResult
from services.dispatch.store import reports

if TYPE_CHECKING:
    from services.dispatch.app import DispatchRuntime

# Provider names the receipt endpoint accepts, and how each one's statuses map to ours.
RECEIPT_PROVIDERS = {
    "sms-primary": HttpSmsProvider.STATUS_MAP,
    "sms-secondary": HttpSmsProvider.STATUS_MAP,
    "smtp": EMAIL_RECEIPT_STATUS_MAP,
}

router = APIRouter()


@router.post(
    "/v1/receipts/{provider}", tags=["receipts"],
    summary="Delivery receipt callback from a provider (HMAC-signed)",
)
async def receipt(request: Request, ctx: PublicContext,
                  provider: str = Path(max_length=64)) -> ReceiptResult:
    # Public: the caller is authenticated by the body's signature, not a bearer token.
    runtime: DispatchRuntime = ctx.runtime
    status_map = RECEIPT_PROVIDERS.get(provider)
    if status_map is None:
        raise ApiError(404, "receipt.provider_unknown", "No such provider.")
    body = await request.body()
    settings = runtime.settings
    try:
        parsed = parse_receipt(
            request.headers, body, settings.receipt_secret.get_secret_value(),
            tolerance=settings.receipt_tolerance_s, status_map=status_map,
        )
    except InvalidSignature as exc:
        metrics.RECEIPTS.labels(provider=provider, outcome="bad-signature").inc()
        raise ApiError(401, "receipt.signature_invalid", str(exc)) from None
    except ReceiptError as exc:
        metrics.RECEIPTS.labels(provider=provider, outcome="invalid").inc()
        raise ApiError(400, "receipt.invalid", str(exc)) from None
    outcome = await ctx.db.run(
        tracking.record_receipt, runtime.book, provider, parsed, runtime.retry, runtime.quiet,
        runtime.clock(), settings.email_deferral_timeout_s,
    )
    metrics.RECEIPTS.labels(provider=provider, outcome=outcome.value).inc()
    if outcome is ReceiptOutcome.UNKNOWN:
        raise ApiError(404, "receipt.reference_unknown", "No delivery has that reference.")
    if outcome is ReceiptOutcome.UPDATED:
        runtime.wake()  # publish the events; a fallback or resend may be due now
    return ReceiptResult(outcome=outcome.value)


@router.get(
    "/v1/incidents/{incident_id}/deliveries/summary", tags=["coordinator"],
    summary="Delivery progress: counts by channel and status",
)
async def deliveries_summary(incident_id: IdPath, ctx: CoordinatorContext) -> DeliverySummary:
    counts = await ctx.db.run(reports.summary, incident_id)
    return DeliverySummary(incident_id=counts.incident_id, notices=counts.notices,
                           awaiting_incident=counts.awaiting_incident, by_channel=counts.by_channel)


@router.get(
    "/v1/incidents/{incident_id}/unreachable.csv", tags=["coordinator"], response_class=Response,
    summary="People to reach by post, or by the s 115 public notice (CSV)",
)
async def unreachable_csv(incident_id: IdPath, ctx: CoordinatorContext) -> Response:
    rows = await ctx.db.run(reports.unreachable, incident_id)
    body = await asyncio.to_thread(export.unreachable_csv, ctx.runtime.sealer, rows)
    return Response(
        body, media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{incident_id}-unreachable.csv"',
            "Cache-Control": "no-store",
        },
    )
