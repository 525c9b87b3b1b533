"""Named coordinator principals: who a staff bearer token belongs to, with which roles, for which
incidents, until when. Pure (no FastAPI, no database): minting and verifying tokens.

Two kinds of token, both JWTs (compact JWS), told apart by their issuer:
- Pānui's own (`iss: "panui"`), minted by `panui token issue` and signed HS256 with
  PANUI_TOKEN_SIGNING_KEY, which every service shares. Claims: `sub` (the principal's name),
  `roles`, `incidents` (ids, or ["*"] for all), `exp`, `jti` (the token id revocation names).
- An identity provider's (OIDC), when a deployment has one: signed RS256 or ES256 by a key in
  the configured JWKS (a file or an https URL), `iss` and `aud` checked, roles and incidents
  read from the same claims.
A third kind, an *agency status ticket*, is Pānui's too: intake mints it for an agency that
showed its API key (`POST /v1/incidents/{id}/status-ticket`), for one incident, for at most
AGENCY_TICKET_TTL_S, with an `agency` claim and no roles, so dedupe and dispatch — which hold no
agency keys — can answer that agency's reconciliation routes and nothing else (docs/decisions.md,
"Agency reconciliation"). An identity provider's token can never be one.
The algorithm follows the issuer, never the token's header alone: a token claiming to be
Pānui's must be HS256 under the signing key, an IdP's must use a JWKS key of the declared alg
(no "alg: none", no HS256 with a public key as the secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

ROLES = ("coordinator", "reviewer", "call-centre", "ops")
ALL_INCIDENTS = "*"
PANUI_ISSUER = "panui"
MAX_TTL_S = 30 * 24 * 3600  # a Pānui token lives at most 30 days
LEEWAY_S = 30  # clock skew allowed on exp/nbf
AGENCY_TICKET_TTL_S = 15 * 60  # long enough to page through 100k records, short enough to lapse


class TokenRefused(ValueError):
    """Why a token is not accepted; safe to log (no claim values)."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    roles: frozenset[str]
    incidents: frozenset[str] | None  # None: every incident
    token_id: str | None  # jti; None for tokens from configuration
    expires_at: int | None = None
    agency_id: str | None = None  # an agency status ticket's agency (then no roles)

    def may_see(self, incident_id: str) -> bool:
        return self.incidents is None or incident_id in self.incidents


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    audience: str
    keys: Mapping[str, dict] = field(default_factory=dict)  # kid -> JWK


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or len(text) > 64 * 1024:
        raise TokenRefused("malformed token")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise TokenRefused("malformed token") from None


def _hs256(key: bytes, signing_input: bytes) -> bytes:
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def mint(signing_key: bytes, name: str, roles: Iterable[str], incidents: Iterable[str] | None,
         ttl_s: int, now: int, token_id: str | None = None) -> tuple[str, dict]:
    """A Pānui token and its claims. `incidents` None means every incident."""
    roles = sorted(set(roles))
    if not roles or any(r not in ROLES for r in roles):
        raise ValueError(f"roles must be among {', '.join(ROLES)}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"a token lives between 1 s and {MAX_TTL_S} s")
    if not name or len(name) > 128:
        raise ValueError("a principal needs a name of at most 128 characters")
    scope = [ALL_INCIDENTS] if incidents is None else sorted(set(incidents))
    if not scope:
        raise ValueError("a token covers at least one incident (or every incident)")
    claims = {"iss": PANUI_ISSUER, "sub": name, "roles": roles, "incidents": scope,
              "iat": now, "exp": now + ttl_s, "jti": token_id or secrets.token_hex(12)}
    return sign_claims(signing_key, claims), claims


def mint_agency_ticket(signing_key: bytes, agency_id: str, incident_id: str, now: int,
                       ttl_s: int = AGENCY_TICKET_TTL_S) -> tuple[str, dict]:
    """An agency status ticket: the agency's own reconciliation rows of one incident, briefly."""
    if not 0 < ttl_s <= AGENCY_TICKET_TTL_S:
        raise ValueError(f"a ticket lives between 1 s and {AGENCY_TICKET_TTL_S} s")
    if not agency_id or len(agency_id) > 128 or not incident_id or len(incident_id) > 128:
        raise ValueError("a ticket needs an agency and an incident")
    claims = {"iss": PANUI_ISSUER, "sub": agency_id, "agency": agency_id, "incidents": [incident_id],
              "iat": now, "exp": now + ttl_s, "jti": secrets.token_hex(12)}
    return sign_claims(signing_key, claims), claims


def sign_claims(signing_key: bytes, claims: dict) -> str:
    """A compact HS256 JWS of `claims` (what the verifier checks is their shape, after this)."""
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = (_b64(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64(json.dumps(claims, separators=(",", ":")).encode()))
    return signing_input + "." + _b64(_hs256(signing_key, signing_input.encode()))


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class TokenVerifier:
    """Verifies staff tokens: Pānui's (HS256 under `signing_key`) and, if configured, an IdP's."""

    def __init__(self, signing_key: bytes | None, oidc: OidcConfig | None = None):
        self._key = signing_key or None
        self.oidc = oidc

    def verify(self, token: str, now: float) -> Principal:
        """The principal of a valid, unexpired token; raises TokenRefused otherwise.
        (Revocation is the store's business: check `token_id` there.)"""
        try:
            head_b64, claims_b64, sig_b64 = token.split(".")
            header = json.loads(_unb64(head_b64))
            claims = json.loads(_unb64(claims_b64))
        except (ValueError, UnicodeDecodeError):
            raise TokenRefused("malformed token") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenRefused("malformed token")
        signing_input = f"{head_b64}.{claims_b64}".encode()
        signature = _unb64(sig_b64)
        issuer = claims.get("iss")
        if issuer == PANUI_ISSUER:
            if self._key is None or header.get("alg") != "HS256":
                raise TokenRefused("token not signed by this deployment")
            if not hmac.compare_digest(_hs256(self._key, signing_input), signature):
                raise TokenRefused("bad signature")
        elif self.oidc is not None and issuer == self.oidc.issuer:
            self._verify_oidc(header, signing_input, signature)
            audience = claims.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
            if self.oidc.audience not in audiences:
                raise TokenRefused("token not for this audience")
        else:
            raise TokenRefused("unknown issuer")
        if "agency" in claims:
            if issuer != PANUI_ISSUER:
                raise TokenRefused("only Pānui issues agency tickets")
            return _agency_principal(claims, now)
        return _principal(claims, now)

    def _verify_oidc(self, header: dict, signing_input: bytes, signature: bytes) -> None:
        jwk = self.oidc.keys.get(header.get("kid")) if isinstance(header.get("kid"), str) else None
        alg = header.get("alg")
        if jwk is None or alg not in ("RS256", "ES256") or jwk.get("alg", alg) != alg:
            raise TokenRefused("no matching identity-provider key")
        try:
            if alg == "RS256" and jwk.get("kty") == "RSA":
                public = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
                public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            elif alg == "ES256" and jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
                public = ec.EllipticCurvePublicNumbers(
                    _int(jwk["x"]), _int(jwk["y"]), ec.SECP256R1()).public_key()
                if len(signature) != 64:
                    raise TokenRefused("bad signature")
                der = encode_dss_signature(int.from_bytes(signature[:32]), int.from_bytes(signature[32:]))
                public.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
            else:
                raise TokenRefused("no matching identity-provider key")
        except (InvalidSignature, KeyError, ValueError):
            raise TokenRefused("bad signature") from None


def _int(b64: str) -> int:
    return int.from_bytes(_unb64(b64))


def _check_times(claims: dict, now: float) -> int:
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int) or not isinstance(nbf, int):
        raise TokenRefused("token without a valid expiry")
    if now > exp + LEEWAY_S:
        raise TokenRefused("token expired")
    if now + LEEWAY_S < nbf:
        raise TokenRefused("token not valid yet")
    return exp


def _agency_principal(claims: dict, now: float) -> Principal:
    """An agency ticket: no roles at all, one incident, a short life — or refused."""
    exp = _check_times(claims, now)
    agency, incidents, jti = claims.get("agency"), claims.get("incidents"), claims.get("jti")
    if not isinstance(agency, str) or not agency or claims.get("sub") != agency or len(agency) > 128:
        raise TokenRefused("ticket without an agency")
    if "roles" in claims:
        raise TokenRefused("a ticket carries no roles")
    if not isinstance(incidents, list) or len(incidents) != 1 or not isinstance(incidents[0], str) \
            or incidents[0] in ("", ALL_INCIDENTS):
        raise TokenRefused("ticket without its one incident")
    iat = claims.get("iat")
    if not isinstance(iat, int) or exp - iat > AGENCY_TICKET_TTL_S:
        raise TokenRefused("ticket lives too long")
    if not isinstance(jti, str) or not jti:
        raise TokenRefused("token without subject or id")
    return Principal(agency, frozenset(), frozenset(incidents), jti[:128], exp, agency_id=agency)


def _principal(claims: dict, now: float) -> Principal:
    exp = _check_times(claims, now)
    name, roles, incidents = claims.get("sub"), claims.get("roles"), claims.get("incidents")
    jti = claims.get("jti")
    if not isinstance(name, str) or not name or not isinstance(jti, str) or not jti:
        raise TokenRefused("token without subject or id")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenRefused("token without roles")
    known = frozenset(r for r in roles if r in ROLES)
    if not known:
        raise TokenRefused("token without a Pānui role")
    if not isinstance(incidents, list) or not incidents or not all(isinstance(i, str) for i in incidents):
        raise TokenRefused("token without an incident scope")
    scope = None if ALL_INCIDENTS in incidents else frozenset(incidents)
    return Principal(name[:128], known, scope, jti[:128], exp)


def jwks_keys(document: dict) -> dict[str, dict]:
    """kid -> JWK of a JWKS document's signing keys."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    return {k["kid"]: k for k in keys
            if isinstance(k, dict) and isinstance(k.get("kid"), str) and k.get("use", "sig") == "sig"}
