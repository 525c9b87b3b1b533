"""Deterministic, opaque identifiers. Derived from ids only — never from personal data — so
they are stable across replays and safe as Kafka keys, log fields and metric-free references."""

import hashlib


def stable_id(prefix: str, *parts: object, length: int = 24) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}-{digest[:length]}"


def notice_id(incident_id: str, person_id: str, version: int) -> str:
    return stable_id("ntc", incident_id, person_id, version)
