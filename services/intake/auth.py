"""Agency API keys: `pk_<key id>.<secret>`. The key id finds the row; only the secret's
SHA-256 is stored (the secret is 32 random bytes, so a plain hash is enough).

Pure: minting and checking keys. The rows live in the store; `IntakeRuntime.authenticate`
puts the two together.
"""

import hmac
import secrets
from dataclasses import dataclass

from services.common.auth import sha256_hex

_PREFIX = "pk_"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly minted key: `api_key` is shown once, only `secret_sha256` is kept."""

    agency_id: str
    key_id: str
    secret_sha256: str
    api_key: str


@dataclass(frozen=True, slots=True)
class PresentedKey:
    key_id: str
    secret: str


def mint_key(agency_id: str) -> NewKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewKey(agency_id, key_id, sha256_hex(secret), f"{_PREFIX}{key_id}.{secret}")


def parse_key(token: str) -> PresentedKey | None:
    """The key id and secret of a bearer token shaped like an agency key, else None."""
    if not token.startswith(_PREFIX) or "." not in token:
        return None
    key_id, _, secret = token[len(_PREFIX):].partition(".")
    return PresentedKey(key_id, secret)


def secret_matches(presented: PresentedKey, secret_sha256: str) -> bool:
    return hmac.compare_digest(secret_sha256, sha256_hex(presented.secret))
