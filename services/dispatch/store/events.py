"""delivery-event.v1 messages into the outbox, in the same transaction as the change they
announce, so the delivery-events topic never disagrees with the delivery table."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Protocol

import orjson
from sqlmodel import Session

from services.common.db import insert_rows
from services.common.outbox import OutboxMessage
from services.common.topics import DELIVERY_EVENTS
from services.dispatch import metrics
from services.dispatch.models import DeliveryHistory

OT = OutboxMessage.__table__
HT = DeliveryHistory.__table__
_HISTORY = "history"  # the key of an event row's history entry (not an outbox column)


class DeliveryKey(Protocol):
    """What an event names: any row or dataclass with these attributes."""

    notice_id: str
    incident_id: str
    person_id: str
    channel: str


@functools.lru_cache(maxsize=256)
def _transition_counter(channel: str, status: str):  # noqa: ANN202 - a prometheus child
    """The labelled child, looked up once per (channel, status) instead of once per event."""
    return metrics.DELIVERY_TRANSITIONS.labels(channel=channel, status=status)


def event_row(
    d: DeliveryKey, status: str, attempt: int, now: datetime, provider: str | None = None,
    reason_code: str | None = None,
) -> dict:
    """An outbox row carrying a delivery-event.v1 (the shape DeliveryEventMessage emits, built
    directly: this runs several times per notice). Counted as a recorded transition."""
    event = {
        "schema_version": 1,
        "message_id": str(uuid.uuid4()),
        "type": "delivery-event",
        "notice_id": d.notice_id,
        "incident_id": d.incident_id,
        "person_id": d.person_id,
        "channel": d.channel,
        "status": str(status),
        "attempt": attempt,
        "occurred_at": now.isoformat().replace("+00:00", "Z"),
    }
    if provider:
        event["provider"] = provider[:64]
    if reason_code:
        event["reason_code"] = reason_code[:64]
    _transition_counter(d.channel, str(status)).inc()
    return {
        "topic": DELIVERY_EVENTS.name,
        "key": d.notice_id,
        "payload": orjson.dumps(event),
        "created_at": now,
        _HISTORY: {"notice_id": d.notice_id, "channel": d.channel, "status": str(status),
                   "attempt": attempt, "provider": event.get("provider"),
                   "reason_code": event.get("reason_code"), "at": now},
    }


def publish(session: Session, rows: list[dict]) -> None:
    """The events into the outbox, and each into the delivery history (kept: the outbox
    forgets an event once it is published)."""
    if rows:
        history = [row.pop(_HISTORY) for row in rows]
        insert_rows(session, OT, rows)
        insert_rows(session, HT, history)
