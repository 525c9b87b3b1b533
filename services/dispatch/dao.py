"""Data access for deliveries. Every function runs inside the caller's transaction."""

from sqlmodel import Session, select

from services.common import outbox
from services.common.messages import DeliveryEventMessage, NoticeMessage, utcnow
from services.common.topics import DELIVERY_EVENTS
from services.dispatch.models import Delivery


def deliveries_for_notice(session: Session, notice_id: str) -> list[Delivery]:
    return list(session.exec(select(Delivery).where(Delivery.notice_id == notice_id)).all())


def create_delivery(session: Session, notice: NoticeMessage, channel: str, status: str) -> Delivery:
    delivery = Delivery(
        notice_id=notice.notice_id,
        incident_id=notice.incident_id,
        person_id=notice.person_id,
        notice_version=notice.version,
        channel=channel,
        status=status,
    )
    session.add(delivery)
    session.flush()
    publish_event(session, delivery)
    return delivery


def publish_event(session: Session, delivery: Delivery, reason_code: str | None = None) -> None:
    event = DeliveryEventMessage(
        notice_id=delivery.notice_id,
        incident_id=delivery.incident_id,
        person_id=delivery.person_id,
        channel=delivery.channel,
        status=delivery.status,
        attempt=delivery.attempts,
        provider=delivery.provider,
        reason_code=reason_code,
        occurred_at=utcnow(),
    )
    outbox.enqueue(session, DELIVERY_EVENTS, delivery.notice_id, event.to_bytes())
