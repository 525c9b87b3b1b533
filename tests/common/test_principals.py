"""Staff tokens (services/common/principals.py): Pānui's own (HS256) and an identity provider's
(RS256/ES256 from a JWKS), and everything a verifier must refuse."""

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from services.common import principals
from services.common.auth import load_jwks
from services.common.principals import OidcConfig, TokenRefused, TokenVerifier
from testkit.staff import IDP_AUDIENCE, IDP_ISSUER, LocalIdp

KEY = b"k" * 40
NOW = int(time.time())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def reshape(token: str, header: dict | None = None, **claims: object) -> str:
    """The token with its header or claims changed, the old signature kept."""
    head, body, sig = token.split(".")
    new_head = b64(json.dumps(header).encode()) if header is not None else head
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload.update(claims)
    return f"{new_head}.{b64(json.dumps(payload).encode())}.{sig}"


def test_a_minted_token_names_its_principal_roles_scope_and_id():
    token, claims = principals.mint(KEY, "alice", ["reviewer", "call-centre"], ["inc-1"], 600, NOW)
    found = TokenVerifier(KEY).verify(token, NOW + 1)
    assert found.name == "alice" and found.roles == {"reviewer", "call-centre"}
    assert found.incidents == {"inc-1"} and found.token_id == claims["jti"]
    assert found.may_see("inc-1") and not found.may_see("inc-2")
    every = TokenVerifier(KEY).verify(principals.mint(KEY, "ops", ["ops"], None, 60, NOW)[0], NOW)
    assert every.incidents is None and every.may_see("anything")


@pytest.mark.parametrize("bad", [
    {"roles": ["root"]}, {"roles": []}, {"ttl_s": 0}, {"ttl_s": principals.MAX_TTL_S + 1},
    {"incidents": []}, {"name": ""},
])
def test_minting_refuses_what_is_not_a_valid_token(bad):
    args = {"name": "a", "roles": ["ops"], "incidents": None, "ttl_s": 60} | bad
    with pytest.raises(ValueError):
        principals.mint(KEY, args["name"], args["roles"], args["incidents"], args["ttl_s"], NOW)


def test_verification_refuses_expired_forged_and_altered_tokens():
    token, _ = principals.mint(KEY, "alice", ["coordinator"], ["inc-1"], 600, NOW)
    verifier = TokenVerifier(KEY)
    refused = [
        (token, NOW + 600 + principals.LEEWAY_S + 1),  # expired
        (principals.mint(b"x" * 40, "alice", ["coordinator"], None, 600, NOW)[0], NOW),  # forged
        (reshape(token, incidents=["*"]), NOW),  # scope widened after signing
        (reshape(token, roles=["coordinator", "ops"]), NOW),
        (reshape(token, {"alg": "none", "typ": "JWT"}), NOW),  # alg none
        (reshape(token, {"alg": "RS256", "typ": "JWT"}), NOW),  # Pānui's tokens are HS256 only
        (reshape(token, iss="someone-else"), NOW),
        ("not.a.token", NOW), ("eyJ.eyJ.", NOW), ("", NOW),
    ]
    for candidate, at in refused:
        with pytest.raises(TokenRefused):
            verifier.verify(candidate, at)
    with pytest.raises(TokenRefused):  # a deployment without a signing key takes none of them
        TokenVerifier(None).verify(token, NOW)


def test_an_identity_providers_tokens_are_verified_with_its_keys(tmp_path):
    idp = LocalIdp(tmp_path)
    verifier = TokenVerifier(KEY, OidcConfig(IDP_ISSUER, IDP_AUDIENCE, load_jwks(str(idp.jwks_path))))
    found = verifier.verify(idp.token(["reviewer"], ["inc-9"]), time.time())
    assert found.name == "idp-user" and found.roles == {"reviewer"} and found.incidents == {"inc-9"}
    for bad in (idp.token(["reviewer"], audience="another"), idp.token(["reviewer"], kid="unknown"),
                idp.token(["reviewer"], ttl_s=-3600), idp.token(["nothing-of-ours"]),
                idp.token(["reviewer"], issuer="https://elsewhere.test")):
        with pytest.raises(TokenRefused):
            verifier.verify(bad, time.time())
    # Key confusion: an "HS256" token claiming the IdP, keyed with the public key's modulus.
    jwk = json.loads(idp.jwks_path.read_text())["keys"][0]
    forged_claims = {"iss": IDP_ISSUER, "aud": IDP_AUDIENCE, "sub": "x", "roles": ["coordinator"],
                     "incidents": ["*"], "exp": NOW + 600, "jti": "f"}
    signing_input = (f"{b64(json.dumps({'alg': 'HS256', 'kid': jwk['kid']}).encode())}."
                     f"{b64(json.dumps(forged_claims).encode())}")
    import hashlib
    import hmac
    mac = hmac.new(jwk["n"].encode(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(TokenRefused):
        verifier.verify(f"{signing_input}.{b64(mac)}", time.time())


def test_es256_identity_provider_keys():
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256",
           "x": b64(numbers.x.to_bytes(32)), "y": b64(numbers.y.to_bytes(32))}
    claims = {"iss": IDP_ISSUER, "aud": [IDP_AUDIENCE, "other"], "sub": "e", "roles": ["ops"],
              "incidents": ["*"], "exp": NOW + 600, "jti": "e-1"}
    signing_input = f"{b64(json.dumps({'alg': 'ES256', 'kid': 'ec-1'}).encode())}.{b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    token = f"{signing_input}.{b64(r.to_bytes(32) + s.to_bytes(32))}"
    verifier = TokenVerifier(None, OidcConfig(IDP_ISSUER, IDP_AUDIENCE, {"ec-1": jwk}))
    assert verifier.verify(token, NOW).roles == {"ops"}
    with pytest.raises(TokenRefused):
        verifier.verify(reshape(token, roles=["coordinator"]), NOW)


# --- agency status tickets (agency reconciliation, issue 16) -------------------------------------


def test_an_agency_ticket_names_its_agency_and_one_incident_and_no_role():
    ticket, claims = principals.mint_agency_ticket(KEY, "gp-1", "inc-1", NOW)
    found = TokenVerifier(KEY).verify(ticket, NOW + 1)
    assert found.agency_id == "gp-1" and found.name == "gp-1" and found.roles == frozenset()
    assert found.incidents == {"inc-1"} and found.token_id == claims["jti"]
    assert claims["exp"] - claims["iat"] == principals.AGENCY_TICKET_TTL_S
    # A staff token is never an agency's.
    staff, _ = principals.mint(KEY, "alice", ["coordinator"], None, 600, NOW)
    assert TokenVerifier(KEY).verify(staff, NOW).agency_id is None


@pytest.mark.parametrize("change", [
    {"roles": ["coordinator"]},  # a ticket that also claims a role
    {"incidents": ["*"]}, {"incidents": ["inc-1", "inc-2"]}, {"incidents": []},
    {"sub": "gp-2"}, {"agency": ""}, {"agency": 7},
    {"exp": NOW + 2 * principals.AGENCY_TICKET_TTL_S},  # lives too long
])
def test_a_ticket_out_of_shape_is_refused_even_when_signed(change):
    _, claims = principals.mint_agency_ticket(KEY, "gp-1", "inc-1", NOW)
    claims.update(change)
    # Re-signed with the right key: the shape alone must be refused.
    forged = principals.sign_claims(KEY, claims)
    with pytest.raises(TokenRefused):
        TokenVerifier(KEY).verify(forged, NOW + 1)


def test_a_ticket_expires_and_needs_this_deployments_key():
    ticket, claims = principals.mint_agency_ticket(KEY, "gp-1", "inc-1", NOW)
    with pytest.raises(TokenRefused):
        TokenVerifier(KEY).verify(ticket, claims["exp"] + principals.LEEWAY_S + 1)
    with pytest.raises(TokenRefused):
        TokenVerifier(b"another-key-" + b"x" * 30).verify(ticket, NOW)
    with pytest.raises(ValueError):
        principals.mint_agency_ticket(KEY, "gp-1", "inc-1", NOW, ttl_s=principals.AGENCY_TICKET_TTL_S + 1)


def test_an_identity_providers_token_can_never_be_an_agency_ticket(tmp_path):
    idp = LocalIdp(tmp_path)
    verifier = TokenVerifier(KEY, OidcConfig(IDP_ISSUER, IDP_AUDIENCE, load_jwks(str(idp.jwks_path))))
    header = {"alg": "RS256", "typ": "JWT", "kid": idp.kid}
    claims = {"iss": IDP_ISSUER, "aud": IDP_AUDIENCE, "sub": "gp-1", "agency": "gp-1",
              "incidents": ["inc-1"], "iat": NOW, "exp": NOW + 60, "jti": "idp-t"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    from cryptography.hazmat.primitives.asymmetric import padding

    signature = idp.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(TokenRefused, match="agency tickets"):
        verifier.verify(f"{signing_input}.{b64(signature)}", NOW)
