"""Sealing personal fields: AES-256-GCM with a keyring, for storage and for Kafka payloads.

A sealed value is text: "v1.<key id>.<base64url(nonce || ciphertext)>". The associated data
binds a ciphertext to its context (say, the message type and record id), so a sealed blob
copied into another record does not decrypt there.
"""

import base64
import hashlib
import hmac
import os

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "v1"


class SealError(ValueError):
    """A sealed value could not be opened (wrong key, tampered, or other context)."""


def generate_key_spec(key_id: str = "k1") -> str:
    return f"{key_id}:{base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


class Sealer:
    def __init__(self, key_spec: str):
        self._keys: dict[str, AESGCM] = {}
        self._active: str | None = None
        for part in filter(None, (p.strip() for p in key_spec.split(","))):
            key_id, _, encoded = part.partition(":")
            raw = base64.urlsafe_b64decode(encoded.encode())
            if not key_id or len(raw) != 32:
                raise ValueError("each data key must be 'id:base64url(32 bytes)'")
            self._keys[key_id] = AESGCM(raw)
            self._active = self._active or key_id
            if self._active == key_id:
                # A separate key for fingerprints, so they reveal nothing without the keyring.
                self._fingerprint_key = hmac.new(raw, b"panui-fingerprint", hashlib.sha256).digest()
        if self._active is None:
            raise ValueError("no data key configured (set PANUI_DATA_KEYS)")

    def seal(self, value: dict, context: str) -> str:
        nonce = os.urandom(12)
        ciphertext = self._keys[self._active].encrypt(nonce, orjson.dumps(value), context.encode())
        return f"{_PREFIX}.{self._active}.{base64.urlsafe_b64encode(nonce + ciphertext).decode()}"

    def open(self, sealed: str, context: str) -> dict:
        try:
            version, key_id, payload = sealed.split(".", 2)
            if version != _PREFIX or key_id not in self._keys:
                raise SealError("unknown seal version or key id")
            blob = base64.urlsafe_b64decode(payload.encode())
            plain = self._keys[key_id].decrypt(blob[:12], blob[12:], context.encode())
        except SealError:
            raise
        except Exception as exc:  # never echo the payload: it is personal data
            raise SealError("sealed value could not be opened") from exc
        return orjson.loads(plain)

    def fingerprint(self, value: dict) -> str:
        """Keyed hash of a value, to tell "same content" without storing it in clear."""
        return hmac.new(
            self._fingerprint_key, orjson.dumps(value, option=orjson.OPT_SORT_KEYS), hashlib.sha256
        ).hexdigest()
