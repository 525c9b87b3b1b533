"""Staff credentials for tests: Pānui tokens for each role, and a local identity provider (an
RSA key and its JWKS file) whose tokens the services verify like a real IdP's."""

import base64
import json
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from services.common import principals

SIGNING_KEY = "test-token-signing-key-" + "s" * 20  # noqa: S105 - test-only
IDP_ISSUER = "https://idp.panui.test"
IDP_AUDIENCE = "panui"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(roles: list[str], incidents: list[str] | None = None, ttl_s: int = 600,
          now: int | None = None, name: str = "test-staff", key: str = SIGNING_KEY) -> tuple[str, str]:
    """(token, token id) of a Pānui staff token."""
    minted, claims = principals.mint(key.encode(), name, roles, incidents, ttl_s,
                                     int(time.time()) if now is None else now)
    return minted, claims["jti"]


class LocalIdp:
    """An identity provider on disk: its JWKS file, and tokens it signs (RS256)."""

    def __init__(self, directory: Path, kid: str = "idp-key-1"):
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.key.public_key().public_numbers()
        jwk = {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
               "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8)),
               "e": _b64(numbers.e.to_bytes(3))}
        self.jwks_path = directory / "jwks.json"
        self.jwks_path.write_text(json.dumps({"keys": [jwk]}))

    def token(self, roles: list[str], incidents: list[str] | None = None, ttl_s: int = 600,
              audience: str = IDP_AUDIENCE, issuer: str = IDP_ISSUER, alg: str = "RS256",
              kid: str | None = None) -> str:
        now = int(time.time())
        header = {"alg": alg, "typ": "JWT", "kid": kid or self.kid}
        claims = {"iss": issuer, "aud": audience, "sub": "idp-user", "roles": roles,
                  "incidents": incidents or ["*"], "iat": now, "exp": now + ttl_s, "jti": f"idp-{now}"}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def settings(self) -> dict:
        return {"oidc_jwks": str(self.jwks_path), "oidc_issuer": IDP_ISSUER,
                "oidc_audience": IDP_AUDIENCE}
