"""Dispatch's HTTP API: provider receipts, and the coordinator's progress and unreachable list."""

import csv
import io
import logging

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from services.common.auth import CoordinatorAuth
from services.common.crypto import SealError
from services.common.db import run_db
from services.common.errors import ApiError
from services.common.messages import Id, decode_notice, notice_sealing_context
from services.dispatch import metrics, store
from services.dispatch.content.models import derive_reference_code
from services.dispatch.providers.receipts import InvalidSignature, ReceiptError, parse_receipt
from services.dispatch.providers.sms_http import HttpSmsProvider
from services.dispatch.providers.smtp import RECEIPT_STATUS_MAP as EMAIL_RECEIPT_STATUS_MAP

log = logging.getLogger(__name__)

# Provider names the receipt endpoint accepts, and how each one's statuses map to ours.
RECEIPT_PROVIDERS = {
    "sms-primary": HttpSmsProvider.STATUS_MAP,
    "sms-secondary": HttpSmsProvider.STATUS_MAP,
    "smtp": EMAIL_RECEIPT_STATUS_MAP,
}

CSV_COLUMNS = [
    "reference_code", "notice_id", "list", "language", "addressee_name", "on_behalf_of",
    "address_line1", "address_line2", "suburb", "city", "postcode", "agencies",
]
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> str:
    """Neutralise spreadsheet formula injection (OWASP): a cell starting with = + - @ tab or
    CR is prefixed with a single quote so it is shown as text, never evaluated."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def router(runtime) -> APIRouter:  # noqa: ANN001 - DispatchRuntime
    api = APIRouter()
    coordinator = CoordinatorAuth(runtime.settings.coordinator_tokens.get_secret_value())

    @api.post(
        "/v1/receipts/{provider}", tags=["receipts"],
        summary="Delivery receipt callback from a provider (HMAC-signed)",
    )
    async def receipt(request: Request, provider: str = Path(max_length=64)) -> dict:
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
        outcome = await run_db(
            store.apply_receipt, runtime.engine, runtime.book, parsed.reference, parsed.status,
            provider, parsed.provider_reference, runtime.retry, runtime.quiet, runtime.clock(),
            f"receipt-{parsed.provider_status}"[:64],
        )
        metrics.RECEIPTS.labels(provider=provider, outcome=outcome).inc()
        if outcome == "unknown":
            raise ApiError(404, "receipt.reference_unknown", "No delivery has that reference.")
        if outcome == "updated":
            runtime.relay.wake()
            runtime.sender.wake()
        return {"outcome": outcome}

    @api.get(
        "/v1/incidents/{incident_id}/deliveries/summary", tags=["coordinator"],
        dependencies=[Depends(coordinator)],
        summary="Delivery progress: counts by channel and status",
    )
    async def deliveries_summary(incident_id: Id) -> dict:
        return await run_db(store.summary, runtime.engine, incident_id)

    @api.get(
        "/v1/incidents/{incident_id}/unreachable.csv", tags=["coordinator"],
        dependencies=[Depends(coordinator)], response_class=Response,
        summary="People to reach by post, or by the s 115 public notice (CSV)",
    )
    async def unreachable_csv(incident_id: Id) -> Response:
        rows = await run_db(store.unreachable, runtime.engine, incident_id)
        body = await run_db(_render_csv, runtime.sealer, rows)
        return Response(
            body, media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{incident_id}-unreachable.csv"',
                "Cache-Control": "no-store",
            },
        )

    return api


def _render_csv(sealer, rows: list[tuple[dict, bytes]]) -> str:  # noqa: ANN001
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for delivery, payload in rows:
        notice = decode_notice(payload)
        try:
            opened = sealer.open(notice.sealed, notice_sealing_context(notice.notice_id))
        except SealError:
            log.error("unreachable export: notice could not be opened",
                      extra={"notice_id": notice.notice_id})
            opened = {"recipient": {}}
        recipient = opened.get("recipient") or {}
        rep = opened.get("representative") or None
        person = " ".join(p for p in (recipient.get("given_names"), recipient.get("family_name")) if p)
        address = (recipient.get("address") or {}) if not rep else {}
        writer.writerow([csv_safe(v) for v in (
            derive_reference_code(notice.notice_id),
            notice.notice_id,
            "postal" if delivery["channel"] == "postal" else "public-notice",
            notice.preferred_language,
            (rep.get("name") if rep else person) or "",
            person if rep else "",
            address.get("line1"), address.get("line2"), address.get("suburb"),
            address.get("city"), address.get("postcode"),
            "; ".join(a.name for a in notice.agencies),
        )])
    return out.getvalue()
