"""Coordinator authentication, shared by the services that expose coordinator APIs.

Coordinator tokens come from configuration (PANUI_COORDINATOR_TOKENS), either in clear for
local development or as "sha256:<hex>" so deployments keep no usable secret in config.
Agency API keys are intake's business (services/intake/auth.py).
"""

import hashlib
import hmac

from fastapi import Request

from services.common.errors import ApiError


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

    def __call__(self, request: Request) -> None:
        """FastAPI dependency: the caller must hold a coordinator token."""
        if not self.is_coordinator(bearer_token(request)):
            raise ApiError(401, "auth.invalid", "The coordinator token is not valid.",
                           headers={"WWW-Authenticate": "Bearer"})
