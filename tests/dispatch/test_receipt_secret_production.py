"""In production every provider signs with its own secret: the shared laptop fallback signs
for no one, and a provider without a secret can send nothing genuine."""

import time

import pytest

from services.dispatch.providers.receipts import InvalidSignature, verify_signature
from services.dispatch.settings import DEVELOPMENT_RECEIPT_SECRET, DispatchSettings
from services.gateways.signing import signature_header

OWN = "s" * 40


def test_production_uses_no_fallback_secret():
    settings = DispatchSettings(environment="production", receipt_secrets=f"smtp={OWN}")
    assert settings.receipt_secret_for("smtp") == OWN
    assert settings.receipt_secret_for("sms-primary") == ""


def test_development_falls_back_to_the_shared_secret():
    settings = DispatchSettings(receipt_secrets=f"smtp={OWN}")
    assert settings.receipt_secret_for("sms-primary") == DEVELOPMENT_RECEIPT_SECRET


@pytest.mark.parametrize("secret", ["", b""])
def test_an_empty_secret_verifies_nothing(secret):
    body = b'{"id": "x", "reference": "r", "status": "delivered"}'
    # Signed with the empty key, as an attacker could when no secret is configured.
    headers = {"X-Panui-Signature": signature_header(body, "", "sms-primary", at=int(time.time()))}
    with pytest.raises(InvalidSignature):
        verify_signature(headers, body, secret, "sms-primary")
