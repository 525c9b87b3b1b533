"""Time. Everything stores and compares timezone-aware UTC datetimes; a `Clock` is injected
wherever a rule depends on the time, so tests can choose it."""

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)
