"""End-to-end authentication of incident and notice messages (incidents.v1, notices.v1).

Their clear fields are what every notice says (the text, the phone number people are told to
call, templates, holds, which agencies) — anyone able to write to the broker could otherwise
turn every notice into a phishing message. So the producing service signs each message and
every consumer verifies it before anything is stored, rendered or sent:

- signature = HMAC-SHA256 over a canonical encoding of ALL the message's fields except
  `signature` itself (the JSON object with sorted keys, compact, UTF-8), prefixed with a
  domain-separation label; written into the message as "v1.<key id>.<base64url(mac)>".
  The sealed recipient is inside the signed bytes too (its own AEAD binds it to the notice id).
- Keyring PANUI_MESSAGE_SIGNING_KEYS = "kid:base64url(32 bytes)[,…]": the first key signs,
  all verify (rotation: add the new key second, roll out, move it first, retire the old).
- The outbox relay signs at publish time (the producing service's own process); consumers
  wrap their decoder with `verifying`. A message without a valid signature raises
  Unauthenticated, which the consumer dead-letters (reason `unauthenticated`) — never applied.
- With no keyring (a laptop), nothing is signed and nothing is checked; production mode
  refuses to start without one (settings.production_problems).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable, Collection
from typing import Any

import orjson

_VERSION = "v1"
_LABEL = b"panui-message-signature-v1\n"
FIELD = "signature"


class Unauthenticated(ValueError):  # noqa: N818 - what the message is
    """A message that must be signed is unsigned, signed with an unknown key, or tampered."""


def generate_signing_key_spec(key_id: str = "s1") -> str:
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


def canonical(fields: dict) -> bytes:
    """The bytes a signature covers: every field but the signature, sorted keys, compact."""
    return _LABEL + orjson.dumps({k: v for k, v in fields.items() if k != FIELD},
                                 option=orjson.OPT_SORT_KEYS)


class MessageSigner:
    def __init__(self, key_spec: str):
        self._keys: dict[str, bytes] = {}
        self._active: str | None = None
        for part in filter(None, (p.strip() for p in key_spec.split(","))):
            key_id, _, encoded = part.partition(":")
            try:
                raw = base64.urlsafe_b64decode(encoded.encode())
            except ValueError:
                raw = b""
            if not key_id or "." in key_id or len(raw) < 32:
                raise ValueError("each message signing key must be 'id:base64url(>= 32 bytes)' "
                                 "(PANUI_MESSAGE_SIGNING_KEYS)")
            self._keys[key_id] = raw
            self._active = self._active or key_id

    @property
    def enabled(self) -> bool:
        return self._active is not None

    def _mac(self, key_id: str, fields: dict) -> str:
        mac = hmac.new(self._keys[key_id], canonical(fields), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def sign(self, payload: bytes) -> bytes:
        """The message JSON with its signature (replacing any earlier one)."""
        if not self.enabled:
            return payload
        fields = orjson.loads(payload)
        fields[FIELD] = f"{_VERSION}.{self._active}.{self._mac(self._active, fields)}"
        return orjson.dumps(fields)

    def verify(self, payload: bytes) -> None:
        """Raise Unauthenticated unless `payload` carries a valid signature (no-op when no
        keyring is configured)."""
        if not self.enabled:
            return
        try:
            fields = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return  # not a message at all: the decoder says undecodable
        if not isinstance(fields, dict):
            return
        signature = fields.get(FIELD)
        if not isinstance(signature, str):
            raise Unauthenticated("the message is not signed")
        version, _, rest = signature.partition(".")
        key_id, _, mac = rest.partition(".")
        if version != _VERSION or key_id not in self._keys:
            raise Unauthenticated("unknown signature version or key id")
        if not hmac.compare_digest(mac, self._mac(key_id, fields)):
            raise Unauthenticated("the signature does not match the message")


def verifying(decode: Callable[[bytes], Any], signer: MessageSigner) -> Callable[[bytes], Any]:
    """A decoder that checks the signature first, then decodes as `decode` does."""

    def decode_verified(value: bytes) -> Any:  # noqa: ANN401 - whatever `decode` returns
        signer.verify(value)
        return decode(value)

    return decode_verified


def signed_topics() -> Collection[str]:
    """The topics (names without the prefix) whose messages are signed."""
    from services.common.topics import INCIDENT_LIFECYCLE, INCIDENTS, NOTICE_KEYS, NOTICES

    # The lifecycle topics too: a forged incident-purged would purge an incident everywhere.
    return (INCIDENTS.name, NOTICES.name, INCIDENT_LIFECYCLE.name, NOTICE_KEYS.name)
