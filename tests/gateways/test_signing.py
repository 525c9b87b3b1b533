"""The gateways sign receipts with their own code (services/gateways/signing.py): a fixed
vector pins the scheme, and dispatch's verifier must accept what the gateways send, so a
drift on either side fails here (and in the end-to-end receipt tests)."""

import pytest

from services.dispatch.providers.receipts import InvalidSignature, verify_signature
from services.gateways.signing import SIGNATURE_HEADER, provider_of, signature_header

BODY = b'{"id":"sms-1","reference":"n-1:sms","status":"delivered"}'
SECRET = "provider-secret"  # noqa: S105 - test-only
AT = 1_700_000_000


NONCE = "nonce-0123456789abcdef"
PROVIDER = "sms-primary"


def test_the_signature_is_the_documented_hmac():
    # printf '%s' '1700000000.nonce-0123456789abcdef.sms-primary.<BODY>' \
    #   | openssl dgst -sha256 -hmac provider-secret
    assert signature_header(BODY, SECRET, PROVIDER, at=AT, nonce=NONCE) == (
        "t=1700000000,n=nonce-0123456789abcdef,"
        "v2=72cee7c882d4164958e56f4576bf32b7b0932d3f6882870f8f18f9696b27e2ae")
    assert signature_header(BODY, SECRET.encode(), PROVIDER, at=AT, nonce=NONCE) == \
        signature_header(BODY, SECRET, PROVIDER, at=AT, nonce=NONCE)


def test_every_signature_has_a_fresh_nonce():
    nonces = {signature_header(BODY, SECRET, PROVIDER, at=AT).split(",")[1] for _ in range(20)}
    assert len(nonces) == 20


def test_the_provider_is_the_callback_urls_last_segment():
    assert provider_of("https://panui.example.nz/v1/receipts/sms-secondary") == "sms-secondary"
    assert provider_of("http://127.0.0.1:8003/v1/receipts/smtp/") == "smtp"


def test_dispatch_accepts_what_the_gateways_sign():
    headers = {SIGNATURE_HEADER: signature_header(BODY, SECRET, PROVIDER, at=AT)}
    verify_signature(headers, BODY, SECRET, PROVIDER, now=AT + 10)


@pytest.mark.parametrize(("body", "secret", "provider", "now"), [
    (BODY.replace(b"delivered", b"failed"), SECRET, PROVIDER, AT),  # body changed after signing
    (BODY, "another-secret", PROVIDER, AT),  # signed with another secret
    (BODY, SECRET, "sms-secondary", AT),  # signed for another provider's endpoint
    (BODY, SECRET, PROVIDER, AT + 3600),  # replayed an hour later
])
def test_dispatch_refuses_what_does_not_match(body, secret, provider, now):
    headers = {SIGNATURE_HEADER: signature_header(BODY, SECRET, PROVIDER, at=AT)}
    with pytest.raises(InvalidSignature):
        verify_signature(headers, body, secret, provider, now=now)
