"""Staff authentication, shared by the services that expose coordinator APIs.

- Named principals (services/common/principals.py): JWTs minted by `panui token issue`, or an
  identity provider's (PANUI_OIDC_*); checked against the store's revoked tokens.
- PANUI_COORDINATOR_TOKENS: bootstrap tokens from configuration, in clear for local development
  or as "sha256:<hex>" so deployments keep no usable secret in config. Whoever holds one is the
  principal "configured", coordinator of every incident (to issue the first named tokens).
Agency API keys are intake's business (services/intake/auth.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from services.common import audit, principals
from services.common.errors import ApiError

if TYPE_CHECKING:
    from services.common.db import Database
    from services.common.deps import Caller
    from services.common.settings import ServiceSettings

log = logging.getLogger(__name__)

CONFIGURED_PRINCIPAL = "configured"
JWKS_REFRESH_S = 3600.0


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "auth.missing", "Send an API key as 'Authorization: Bearer <key>'.",
                       headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class CoordinatorAuth:
    def __init__(self, configured_tokens: str):
        self._hashes = [
            t[len("sha256:"):] if t.startswith("sha256:") else sha256_hex(t)
            for t in (p.strip() for p in configured_tokens.split(",")) if t
        ]

    def is_coordinator(self, token: str) -> bool:
        digest = sha256_hex(token)
        return any(hmac.compare_digest(digest, h) for h in self._hashes)


def load_jwks(source: str) -> dict[str, dict]:
    """kid -> JWK from a JWKS file path or an http(s) URL (blocking: call off the event loop)."""
    if source.startswith(("https://", "http://")):
        with urllib.request.urlopen(source, timeout=10) as response:  # noqa: S310 - a setting
            document = json.loads(response.read(1024 * 1024))
    else:
        document = json.loads(Path(source).read_text())
    return principals.jwks_keys(document)


class StaffAuth:
    """Named staff principals: verify the token, then make sure it was not revoked."""

    def __init__(self, settings: ServiceSettings):
        key = settings.token_signing_key.get_secret_value()
        self._jwks_source = settings.oidc_jwks
        oidc = (principals.OidcConfig(settings.oidc_issuer, settings.oidc_audience)
                if settings.oidc_jwks and settings.oidc_issuer else None)
        self.verifier = principals.TokenVerifier(key.encode() if key else None, oidc)
        self._jwks_loaded_at = 0.0

    async def _refresh_jwks(self) -> None:
        oidc = self.verifier.oidc
        if oidc is None or time.monotonic() - self._jwks_loaded_at < JWKS_REFRESH_S and oidc.keys:
            return
        try:
            keys = await asyncio.to_thread(load_jwks, self._jwks_source)
        except (OSError, ValueError) as exc:
            log.warning("identity provider keys not loaded: %s", type(exc).__name__)
            return
        self.verifier.oidc = principals.OidcConfig(oidc.issuer, oidc.audience, keys)
        self._jwks_loaded_at = time.monotonic()

    async def authenticate(self, token: str, db: Database) -> Caller | None:
        from services.common.deps import Caller

        if not principals.looks_like_jwt(token):
            return None
        await self._refresh_jwks()
        try:
            principal = self.verifier.verify(token, time.time())
        except principals.TokenRefused:
            return None
        if principal.token_id and await db.run(audit.is_revoked, principal.token_id):
            return None
        if principal.agency_id is not None:  # an agency status ticket (principals.py)
            return Caller("agency", principal.agency_id, frozenset(), principal.incidents,
                          principal.token_id, ticket=True)
        return Caller("coordinator", principal.name, principal.roles, principal.incidents,
                      principal.token_id)
