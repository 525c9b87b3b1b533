"""Delivery receipt callbacks from the gateways: verify the signature, map the status.

Signature header (set by the gateway):
    X-Panui-Signature: t=<unix seconds>,n=<nonce>,v2=<hex HMAC-SHA256(secret,
                                                    f"{t}.{n}.{provider}.".encode() + body)>
Each provider has its own secret; the provider (the last segment of the callback URL) is signed,
so one provider's receipt cannot be passed off as another's; the timestamp is signed so a
captured callback cannot be replayed later, and the nonce (16-64 of [A-Za-z0-9_-], taken once:
store/receipts.py) so it cannot be replayed within the tolerance either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from services.common.messages import DeliveryStatus
from services.dispatch.providers.sms_http import HttpSmsProvider

SIGNATURE_HEADER = "X-Panui-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class ReceiptError(ValueError):
    """The callback is not a valid receipt. Safe to log: contains no personal data."""


class InvalidSignature(ReceiptError):
    pass


@dataclass(frozen=True)
class Receipt:
    provider_reference: str
    reference: str  # ours: f"{notice_id}:sms"
    status: DeliveryStatus
    provider_status: str
    occurred_at: datetime | None
    nonce: str = ""


@dataclass(frozen=True)
class SignedHeader:
    timestamp: int
    nonce: str
    mac: str


def sign(body: bytes, secret: bytes | str, provider: str, timestamp: int | None = None,
         nonce: str | None = None) -> str:
    """Header value for `body` sent to `provider`'s endpoint; used by tests."""
    t = int(time.time()) if timestamp is None else timestamp
    n = nonce or secrets.token_urlsafe(18)
    return f"t={t},n={n},v2={_mac(_key(secret), t, n, provider, body)}"


def signed_header(headers: Mapping[str, str], *, now: float | None = None,
                  tolerance: int = DEFAULT_TOLERANCE_SECONDS) -> SignedHeader:
    """The signature header's timestamp, nonce and MAC, checked for shape and freshness: what
    can be checked before the body is read. Raises InvalidSignature."""
    value = _header(headers, SIGNATURE_HEADER)
    if not value:
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
    parts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
    try:
        t = int(parts["t"])
        nonce = parts["n"]
        given = parts["v2"]
    except (KeyError, ValueError):
        raise InvalidSignature("malformed signature header") from None
    if not NONCE_RE.match(nonce):
        raise InvalidSignature("malformed signature nonce")
    if abs((time.time() if now is None else now) - t) > tolerance:
        raise InvalidSignature("signature timestamp outside tolerance")
    return SignedHeader(t, nonce, given)


def verify_signature(
    headers: Mapping[str, str],
    body: bytes,
    secret: bytes | str,
    provider: str,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> SignedHeader:
    signed = signed_header(headers, now=now, tolerance=tolerance)
    expected = _mac(_key(secret), signed.timestamp, signed.nonce, provider, body)
    if not hmac.compare_digest(expected, signed.mac):
        raise InvalidSignature("signature does not match")
    return signed


def parse_receipt(
    headers: Mapping[str, str],
    body: bytes,
    secret: bytes | str,
    provider: str,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    status_map: Mapping[str, DeliveryStatus] = HttpSmsProvider.STATUS_MAP,
) -> Receipt:
    """Verify and decode a receipt callback. Raises InvalidSignature / ReceiptError."""
    signed = verify_signature(headers, body, secret, provider, now=now, tolerance=tolerance)
    try:
        data = json.loads(body)
        provider_status = str(data["status"])
        provider_reference = str(data["id"])
        reference = str(data["reference"])
    except (ValueError, KeyError, TypeError):
        raise ReceiptError("receipt body is not the expected JSON shape") from None
    if provider_status not in status_map:
        raise ReceiptError(f"unknown provider receipt status {provider_status!r}")
    occurred_at = None
    if data.get("occurred_at"):
        try:
            occurred_at = datetime.fromisoformat(data["occurred_at"]).astimezone(UTC)
        except (TypeError, ValueError):
            raise ReceiptError("receipt occurred_at is not ISO 8601") from None
    return Receipt(provider_reference, reference, status_map[provider_status], provider_status,
                   occurred_at, signed.nonce)


def _key(secret: bytes | str) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _mac(key: bytes, t: int, nonce: str, provider: str, body: bytes) -> str:
    return hmac.new(key, f"{t}.{nonce}.{provider}.".encode() + body, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Frameworks differ in header casing; look it up case-insensitively.
    lower = name.lower()
    for k, v in headers.items():
        if k.lower() == lower:
            return v
    return None
