"""How the local gateways sign the delivery receipts they POST back: the provider's side of the
callback contract, written here as an external provider writes its own. It is deliberately not
dispatch's code (services/dispatch/providers/receipts.py verifies), so when the two drift apart
the tests that send real receipts fail.

The scheme, as a provider would document it:
    X-Panui-Signature: t=<unix seconds>,v1=<lower-case hex HMAC-SHA256(secret, "<t>." + body)>
Signing the timestamp with the body stops a captured callback from being replayed later.
"""

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Panui-Signature"


def signature_header(body: bytes, secret: str | bytes, at: int | None = None) -> str:
    """The header value for a receipt `body` sent at unix time `at` (now by default)."""
    timestamp = int(time.time()) if at is None else at
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
