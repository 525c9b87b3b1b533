"""Dead letters: what a consumer does with a message it cannot decode or apply, so that its
partition moves on (docs/operations.md, "Dead letters").

The dead letter goes to `dead-letters.v1` (topics.DEAD_LETTERS) with the reason (a code and
the exception's class, never its text), the origin (service, group, topic, partition, offset,
key, timestamp) and the original bytes — personal fields in them are sealed exactly as on the
origin topic, so the dead-letter topic needs the same protection, and nothing else in the
message is a value from the input. `panui dead-letters list|replay` reads it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from services.common import metrics
from services.common.clock import utcnow
from services.common.logging import validation_errors
from services.common.messages import (
    SCHEMA_VERSIONS,
    DeadLetterError,
    DeadLetterMessage,
    DeadLetterReason,
    MessageOrigin,
)
from services.common.settings import ServiceSettings
from services.common.signing import Unauthenticated
from services.common.topics import DEAD_LETTERS

log = logging.getLogger(__name__)

# Errors saying the bytes are not a message of any type we know, rather than a bad one.
_NOT_A_MESSAGE = {"json_invalid", "json_type", "dict_type", "model_type", "model_attributes_type",
                  "union_tag_invalid", "union_tag_not_found"}


def decode_failure_reason(value: bytes, exc: Exception) -> DeadLetterReason:
    """Why `value` could not be decoded: deterministic, so it is dead-lettered at once."""
    if isinstance(exc, Unauthenticated):
        return DeadLetterReason.UNAUTHENTICATED
    if not isinstance(exc, ValidationError):
        return DeadLetterReason.UNDECODABLE
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError:
        return DeadLetterReason.UNDECODABLE
    if isinstance(raw, dict) and "schema_version" in raw and raw["schema_version"] not in SCHEMA_VERSIONS:
        return DeadLetterReason.UNKNOWN_VERSION
    if any(e["type"] in _NOT_A_MESSAGE and not e["loc"] for e in exc.errors(include_input=False)):
        return DeadLetterReason.UNDECODABLE
    return DeadLetterReason.SCHEMA_INVALID


def dead_letter(record: ConsumerRecord, *, service: str, group: str, reason: DeadLetterReason,
                exc: BaseException | None, attempts: int) -> DeadLetterMessage:
    value = record.value
    errors = ([DeadLetterError(loc=loc, type=kind) for loc, kind in validation_errors(exc)]
              if isinstance(exc, ValidationError) else [])
    return DeadLetterMessage(
        reason=reason,
        error_type=type(exc).__name__ if exc is not None else "Tombstone",
        errors=errors,
        attempts=attempts,
        origin=MessageOrigin(
            service=service, group=group, topic=record.topic, partition=record.partition,
            offset=record.offset, key=_key(record.key),
            timestamp=(datetime.fromtimestamp(record.timestamp / 1000, UTC)
                       if record.timestamp is not None and record.timestamp >= 0 else None),
        ),
        dead_lettered_at=utcnow(),
        payload=base64.b64encode(value).decode() if value is not None else None,
        payload_sha256=hashlib.sha256(value).hexdigest() if value is not None else None,
    )


def _key(key: bytes | None) -> str | None:
    if key is None:
        return None
    text = key.decode("utf-8", errors="replace")
    return text[:200]


@dataclass
class DeadLetterStats:
    """What this process dead-lettered since it started: the readiness detail."""

    count: int = 0
    last_at: datetime | None = None
    last: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out: dict = {"since_start": self.count}
        if self.last_at is not None:
            out["last_at"] = self.last_at.isoformat().replace("+00:00", "Z")
            out.update(self.last)
        return out


class DeadLetterPublisher:
    """Publishes dead letters with the service's (idempotent, acks=all) producer. A dead letter
    is on the broker before the consumer commits past its message: a crash in between
    dead-letters it again (`panui dead-letters list` shows each origin message once)."""

    def __init__(self, settings: ServiceSettings, producer):  # noqa: ANN001 - AIOKafkaProducer
        self.service = settings.service_name
        self.topic = DEAD_LETTERS.full_name(settings.topic_prefix)
        self.producer = producer
        self.stats = DeadLetterStats()

    async def publish(self, record: ConsumerRecord, *, group: str, reason: DeadLetterReason,
                      exc: BaseException | None, attempts: int) -> None:
        message = dead_letter(record, service=self.service, group=group, reason=reason, exc=exc,
                              attempts=attempts)
        await self.producer.send_and_wait(self.topic, message.to_bytes(), key=record.key)
        metrics.DEAD_LETTERS.labels(service=self.service, group=group, topic=record.topic,
                                    reason=reason.value).inc()
        self.stats.count += 1
        self.stats.last_at = message.dead_lettered_at
        self.stats.last = {"reason": reason.value, "error_type": message.error_type,
                           "origin": message.origin.id, "group": group}
        log.error("dead-lettered %s (%s, %s) after %d attempt(s)", message.origin.id, reason.value,
                  message.error_type, attempts,
                  extra={"service": self.service, "group": group, "topic": record.topic,
                         "partition": record.partition, "offset": record.offset,
                         "reason": reason.value})
