"""Incident and notice messages are authenticated end to end (services/common/signing.py):
every field is covered, a changed field, a removed signature or an unknown key is refused."""

import orjson
import pytest

from services.common.deadletters import decode_failure_reason
from services.common.messages import DeadLetterReason, IncidentMessage, decode_incident
from services.common.signing import MessageSigner, Unauthenticated, generate_signing_key_spec, verifying
from testkit.messages import incident_message

KEYS = generate_signing_key_spec("s1")


def _signed() -> tuple[MessageSigner, bytes]:
    signer = MessageSigner(KEYS)
    return signer, signer.sign(incident_message("inc-sig", {"gp-1": "Test GP"}, ["gp-1"]).to_bytes())


def _tamper(value: bytes, change) -> bytes:  # noqa: ANN001
    fields = orjson.loads(value)
    change(fields)
    return orjson.dumps(fields)


def test_a_signed_message_verifies_and_decodes():
    signer, value = _signed()
    message = verifying(decode_incident, signer)(value)
    assert isinstance(message, IncidentMessage) and message.signature.startswith("v1.s1.")


@pytest.mark.parametrize("change", [
    lambda d: d["content"]["contact"].update(phone="0900 666 666"),  # the phishing case
    lambda d: d["content"].update(templates_mi={"email_body": "{{ 'click here' }}"}),
    lambda d: d.update(revision=d["revision"] + 1),
    lambda d: d["agencies"][0].update(name="Another GP"),
    lambda d: d.update(title=d["title"] + "!"),
    lambda d: d.pop("signature"),
    lambda d: d.update(signature=d["signature"].replace("v1.s1.", "v1.s9.")),
], ids=["phone", "template", "revision", "agency", "title", "unsigned", "unknown-key"])
def test_any_changed_field_is_refused_and_dead_lettered_as_unauthenticated(change):
    signer, value = _signed()
    tampered = _tamper(value, change)
    with pytest.raises(Unauthenticated) as caught:
        verifying(decode_incident, signer)(tampered)
    assert decode_failure_reason(tampered, caught.value) is DeadLetterReason.UNAUTHENTICATED


def test_rotation_old_key_still_verifies_and_the_new_one_signs():
    old, value = _signed()
    new_spec = generate_signing_key_spec("s2")
    rotated = MessageSigner(f"{new_spec},{KEYS}")
    rotated.verify(value)  # signed with s1 before the rotation
    assert orjson.loads(rotated.sign(value))["signature"].startswith("v1.s2.")
    with pytest.raises(Unauthenticated):
        MessageSigner(new_spec).verify(value)  # s1 retired


def test_without_a_keyring_nothing_is_signed_or_checked():
    signer = MessageSigner("")
    value = incident_message("inc-sig", {"gp-1": "Test GP"}, ["gp-1"]).to_bytes()
    assert signer.sign(value) == value
    signer.verify(value)


def test_a_bad_keyring_is_refused_without_echoing_it():
    with pytest.raises(ValueError) as caught:
        MessageSigner("s1:c2hvcnQ")
    assert "c2hvcnQ" not in str(caught.value)
