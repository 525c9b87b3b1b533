"""Identifiers: the one pattern every id in the system follows, and deterministic, opaque ids.

Derived ids come from ids only — never from personal data — so they are stable across replays
and safe as Kafka keys, log fields and references.
"""

import hashlib
import re
from typing import Annotated

from pydantic import Field

# incident, agency, feed and source-record ids: what agencies and coordinators may choose.
ID_PATTERN = r"^[A-Za-z0-9._:\-]+$"
ID_MAX_LENGTH = 128
ID_RE = re.compile(ID_PATTERN)

Id = Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


def is_id(value: str) -> bool:
    return 0 < len(value) <= ID_MAX_LENGTH and ID_RE.match(value) is not None


def stable_id(prefix: str, *parts: object, length: int = 24) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}-{digest[:length]}"


def notice_id(incident_id: str, person_id: str, version: int) -> str:
    return stable_id("ntc", incident_id, person_id, version)
