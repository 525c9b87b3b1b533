"""The gateways sign receipts with their own code (services/gateways/signing.py): a fixed
vector pins the scheme, and dispatch's verifier must accept what the gateways send, so a
drift on either side fails here (and in the end-to-end receipt tests)."""

import pytest

from services.dispatch.providers.receipts import InvalidSignature, verify_signature
from services.gateways.signing import SIGNATURE_HEADER, signature_header

BODY = b'{"id":"sms-1","reference":"n-1:sms","status":"delivered"}'
SECRET = "provider-secret"  # noqa: S105 - test-only
AT = 1_700_000_000


def test_the_signature_is_the_documented_hmac():
    # printf '%s' '1700000000.<BODY>' | openssl dgst -sha256 -hmac provider-secret
    assert signature_header(BODY, SECRET, at=AT) == (
        "t=1700000000,v1=8e755649b96dfab236d9ba01e886511feb1d113232689b2c21b22626e0316ad9")
    assert signature_header(BODY, SECRET.encode(), at=AT) == signature_header(BODY, SECRET, at=AT)


def test_dispatch_accepts_what_the_gateways_sign():
    headers = {SIGNATURE_HEADER: signature_header(BODY, SECRET, at=AT)}
    verify_signature(headers, BODY, SECRET, now=AT + 10)


@pytest.mark.parametrize(("body", "secret", "now"), [
    (BODY.replace(b"delivered", b"failed"), SECRET, AT),  # body changed after signing
    (BODY, "another-secret", AT),  # signed with another secret
    (BODY, SECRET, AT + 3600),  # replayed an hour later
])
def test_dispatch_refuses_what_does_not_match(body, secret, now):
    headers = {SIGNATURE_HEADER: signature_header(BODY, SECRET, at=AT)}
    with pytest.raises(InvalidSignature):
        verify_signature(headers, body, secret, now=now)
