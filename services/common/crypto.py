"""Sealing personal fields: AES-256-GCM, one data key per incident and purpose, wrapped by the
purpose's key-encryption key (KEK), for storage and for Kafka payloads.

Two envelopes, both text:
- "v2.<data key id>.<base64url(nonce || ciphertext)>": sealed with an incident's data key
  (`Vault`). The data key lives, wrapped by its purpose's KEK, only in the key stores of the
  services that hold that KEK (services/common/keystore.py) and on the compacted
  incident-lifecycle topic; destroying it (the purge) makes every copy unreadable — rows,
  outbox, Kafka payloads, backups (docs/decisions.md, "Crypto-shredding").
- "v1.<KEK id>.<...>": sealed with a keyring directly (`Sealer`); what was written before data
  keys existed, read for as long as `panui keys reencrypt` has not rewritten it.

Purposes keep services apart: intake and dedupe hold the records KEK (affected records), dedupe
and dispatch the notices KEK (who a notice goes to). Dispatch cannot open an affected record.

The associated data binds a ciphertext to its context (say, the message type and record id) and
its data key id, so a sealed blob copied into another record does not decrypt there.
"""

import base64
import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_V1, _V2 = "v1", "v2"
RECORDS, NOTICES = "records", "notices"
PURPOSES = (RECORDS, NOTICES)


class SealError(ValueError):
    """A sealed value could not be opened (wrong key, tampered, or other context)."""


class KeyDestroyed(SealError):
    """The value's data key was destroyed (its incident was purged): it will never open."""


class KeyUnavailable(SealError):
    """The value's data key is not (yet) in this service's key store: it may still arrive on the
    incident-lifecycle topic. Carries the key id, never the value."""

    def __init__(self, key_id: str):
        super().__init__("data key not known here (yet)")
        self.key_id = key_id


def generate_key_spec(key_id: str = "k1") -> str:
    return f"{key_id}:{base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def envelope_key_id(sealed: str) -> tuple[str, str]:
    """(envelope version, key id) of a sealed value, without opening it."""
    version, key_id, _ = sealed.split(".", 2)
    return version, key_id


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


class Sealer:
    """A keyring ("kid:base64url(32 bytes)[,…]", the first encrypts, all decrypt): a purpose's
    KEKs. It wraps data keys, and seals/opens v1 values (the envelope before data keys)."""

    def __init__(self, key_spec: str):
        self._keys: dict[str, AESGCM] = {}
        self._raw: dict[str, bytes] = {}
        self._active: str | None = None
        for part in filter(None, (p.strip() for p in key_spec.split(","))):
            key_id, _, encoded = part.partition(":")
            raw = base64.urlsafe_b64decode(encoded.encode())
            if not key_id or len(raw) != 32 or "." in key_id:
                raise ValueError("each key must be 'id:base64url(32 bytes)' (no dot in the id)")
            self._keys[key_id] = AESGCM(raw)
            self._raw[key_id] = raw
            self._active = self._active or key_id
            if self._active == key_id:
                # Only for v1 values and tests; services fingerprint with the incident's data key.
                self._fingerprint_key = hmac.new(raw, b"panui-fingerprint", hashlib.sha256).digest()
        if self._active is None:
            raise ValueError("no data key configured (set the purpose's keyring)")

    @property
    def active_id(self) -> str:
        return self._active

    def has(self, key_id: str) -> bool:
        return key_id in self._keys

    def ensure(self, incident_id: str, purpose: str) -> None:
        """Nothing to make: a keyring seals directly (Vault.ensure makes a data key)."""

    def seal(self, value: dict, context: str, **_where: str) -> str:
        nonce = os.urandom(12)
        ciphertext = self._keys[self._active].encrypt(nonce, orjson.dumps(value), context.encode())
        return f"{_V1}.{self._active}.{_b64(nonce + ciphertext)}"

    def open(self, sealed: str, context: str) -> dict:
        try:
            version, key_id, payload = sealed.split(".", 2)
            if version != _V1 or key_id not in self._keys:
                raise SealError("unknown seal version or key id")
            blob = base64.urlsafe_b64decode(payload.encode())
            plain = self._keys[key_id].decrypt(blob[:12], blob[12:], context.encode())
        except SealError:
            raise
        except Exception as exc:  # never echo the payload: it is personal data
            raise SealError("sealed value could not be opened") from exc
        return orjson.loads(plain)

    def fingerprint(self, value: dict, **_where: str) -> str:
        return _fingerprint(self._fingerprint_key, value)

    def digest(self, data: str, *, label: str, key_id: str) -> str:
        """Keyed digest (see Vault.digest) under a v1 keyring key."""
        if key_id not in self._raw:
            raise SealError("unknown key id")
        return _digest(self._raw[key_id], label, data)

    def wrap(self, data_key: bytes, key_id: str) -> tuple[str, str]:
        """(KEK id, wrapped) of a data key, bound to its key id."""
        nonce = os.urandom(12)
        wrapped = self._keys[self._active].encrypt(nonce, data_key, f"data-key|{key_id}".encode())
        return self._active, _b64(nonce + wrapped)

    def unwrap(self, kek_id: str, wrapped: str, key_id: str) -> bytes:
        if kek_id not in self._keys:
            raise SealError("the data key's KEK is not in this keyring")
        try:
            blob = base64.urlsafe_b64decode(wrapped.encode())
            return self._keys[kek_id].decrypt(blob[:12], blob[12:], f"data-key|{key_id}".encode())
        except Exception as exc:
            raise SealError("data key could not be unwrapped") from exc


def _digest(raw: bytes, label: str, data: str) -> str:
    # A subkey per label, so a digest made for one purpose is never valid for another.
    subkey = hmac.new(raw, f"panui-digest|{label}".encode(), hashlib.sha256).digest()
    return hmac.new(subkey, data.encode("utf-8"), hashlib.sha256).hexdigest()


def _fingerprint(key: bytes, value: dict) -> str:
    return hmac.new(key, orjson.dumps(value, option=orjson.OPT_SORT_KEYS), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WrappedKey:
    """A data key as stored and as carried on the incident-lifecycle topic."""

    key_id: str
    incident_id: str
    purpose: str
    kek_id: str
    wrapped: str | None  # None: destroyed


def new_data_key(incident_id: str, purpose: str, kek: Sealer) -> tuple[WrappedKey, bytes]:
    raw = AESGCM.generate_key(bit_length=256)
    key_id = f"dk{secrets.token_hex(10)}"
    kek_id, wrapped = kek.wrap(raw, key_id)
    return WrappedKey(key_id, incident_id, purpose, kek_id, wrapped), raw


class KeySource:
    """What a Vault needs from a service's key store (services/common/keystore.py)."""

    load: Callable[[str], WrappedKey | None]  # by key id
    active: Callable[[str, str], WrappedKey | None]  # (incident, purpose) → its data key
    create: Callable[[WrappedKey], WrappedKey]  # stores (and announces) a new one; the winner back


class Vault:
    """A service's keys: the KEKs of the purposes it holds and its key store of data keys.

    `seal` uses the incident's data key for the purpose (made, wrapped, stored and announced on
    first use); `open` reads v2 values by their data key id and v1 values with the keyrings.
    Unwrapped data keys are cached in memory; `forget` drops an incident's (the purge)."""

    def __init__(self, keks: dict[str, Sealer], source: KeySource):
        self.keks = keks
        self.source = source
        self._lock = threading.Lock()
        self._by_id: dict[str, tuple[str, AESGCM, bytes]] = {}  # key id → (incident, aead, raw)
        self._active: dict[tuple[str, str], str] = {}  # (incident, purpose) → key id

    def _kek(self, purpose: str) -> Sealer:
        kek = self.keks.get(purpose)
        if kek is None:
            raise SealError(f"this service holds no {purpose} key")
        return kek

    def _remember(self, key: WrappedKey, raw: bytes) -> tuple[str, AESGCM, bytes]:
        entry = (key.incident_id, AESGCM(raw), raw)
        with self._lock:
            self._by_id[key.key_id] = entry
        return entry

    def _data_key(self, incident_id: str, purpose: str) -> tuple[str, AESGCM, bytes]:
        key_id = self._active.get((incident_id, purpose))
        if key_id and key_id in self._by_id:
            return key_id, *self._by_id[key_id][1:]
        kek = self._kek(purpose)
        key = self.source.active(incident_id, purpose)
        if key is None:
            fresh, _raw = new_data_key(incident_id, purpose, kek)
            key = self.source.create(fresh)  # a concurrent creator may have won: use its key
        if key.wrapped is None:
            raise KeyDestroyed("the incident's data key was destroyed (purged)")
        entry = self._remember(key, kek.unwrap(key.kek_id, key.wrapped, key.key_id))
        with self._lock:
            self._active[(incident_id, purpose)] = key.key_id
        return key.key_id, *entry[1:]

    def ensure(self, incident_id: str, purpose: str) -> None:
        """Make (or load) the incident's data key now, in a transaction of its own — before the
        unit of work that seals with it (on SQLite a nested writer would wait for the outer)."""
        self._data_key(incident_id, purpose)

    def seal(self, value: dict, context: str, *, incident_id: str, purpose: str) -> str:
        key_id, aead, _raw = self._data_key(incident_id, purpose)
        nonce = os.urandom(12)
        ciphertext = aead.encrypt(nonce, orjson.dumps(value), f"{key_id}|{context}".encode())
        return f"{_V2}.{key_id}.{_b64(nonce + ciphertext)}"

    def _open_key(self, key_id: str) -> AESGCM:
        entry = self._by_id.get(key_id)
        if entry is not None:
            return entry[1]
        key = self.source.load(key_id)
        if key is None:
            raise KeyUnavailable(key_id)
        if key.wrapped is None:
            raise KeyDestroyed("the value's data key was destroyed (purged)")
        raw = self._kek(key.purpose).unwrap(key.kek_id, key.wrapped, key.key_id)
        return self._remember(key, raw)[1]

    def open(self, sealed: str, context: str) -> dict:
        try:
            version, key_id, payload = sealed.split(".", 2)
        except ValueError as exc:
            raise SealError("not a sealed value") from exc
        if version == _V1:
            for kek in self.keks.values():
                if kek.has(key_id):
                    return kek.open(sealed, context)
            raise SealError("unknown key id")
        if version != _V2:
            raise SealError("unknown seal version")
        aead = self._open_key(key_id)
        try:
            blob = base64.urlsafe_b64decode(payload.encode())
            plain = aead.decrypt(blob[:12], blob[12:], f"{key_id}|{context}".encode())
        except Exception as exc:  # never echo the payload: it is personal data
            raise SealError("sealed value could not be opened") from exc
        return orjson.loads(plain)

    def fingerprint(self, value: dict, *, incident_id: str) -> str:
        """Keyed hash of a record, to tell "same content" without storing it in clear. Keyed by
        the incident's records data key: stable across KEK rotation (rotation re-wraps, never
        replaces, a data key), and shredded with the incident."""
        _key_id, _aead, raw = self._data_key(incident_id, RECORDS)
        return _fingerprint(hmac.new(raw, b"panui-fingerprint", hashlib.sha256).digest(), value)

    def digest(self, data: str, *, label: str, key_id: str) -> str:
        """HMAC-SHA256 of `data` under a subkey (per `label`) of the data key `key_id` (the key
        a notice was sealed with: services.common.crypto.envelope_key_id). What a notice's
        reference and date-of-birth checks are made of: useless without the key, and gone
        with it when the incident is purged. Raises KeyUnavailable / KeyDestroyed."""
        for kek in self.keks.values():  # a v1 value's keyring key
            if kek.has(key_id):
                return kek.digest(data, label=label, key_id=key_id)
        self._open_key(key_id)
        return _digest(self._by_id[key_id][2], label, data)

    def forget(self, incident_id: str) -> None:
        with self._lock:
            for key_id in [k for k, v in self._by_id.items() if v[0] == incident_id]:
                del self._by_id[key_id]
            for where in [w for w in self._active if w[0] == incident_id]:
                del self._active[where]
