"""How the local gateways sign the delivery receipts they POST back: the provider's side of the
callback contract, written here as an external provider writes its own. It is deliberately not
dispatch's code (services/dispatch/providers/receipts.py verifies), so when the two drift apart
the tests that send real receipts fail.

The scheme, as a provider would document it:
    X-Panui-Signature: t=<unix seconds>,n=<nonce>,v2=<lower-case hex HMAC-SHA256(secret,
                       "<t>.<n>.<provider>." + body)>
where <provider> is the last path segment of the callback URL and <nonce> is fresh random
text (16-64 of [A-Za-z0-9_-]). Signing the timestamp stops a captured callback from being
replayed later, the nonce from being replayed at all, the provider from being posted to
another provider's endpoint.
"""

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Panui-Signature"


def provider_of(callback_url: str) -> str:
    """The provider name a callback URL ends with (…/v1/receipts/<provider>)."""
    return urlsplit(callback_url).path.rstrip("/").rpartition("/")[2]


def signature_header(body: bytes, secret: str | bytes, provider: str, at: int | None = None,
                     nonce: str | None = None) -> str:
    """The header value for a receipt `body` posted to `provider`'s callback at unix time `at`
    (now by default), with a fresh nonce unless one is given."""
    timestamp = int(time.time()) if at is None else at
    nonce = nonce or secrets.token_urlsafe(18)
    key = secret.encode() if isinstance(secret, str) else secret
    signed = f"{timestamp}.{nonce}.{provider}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},n={nonce},v2={digest}"
