"""Building and publishing contract messages directly, for testing a consumer on its own."""

from datetime import datetime

from aiokafka import AIOKafkaProducer

from services.common.clock import utcnow
from services.common.crypto import Sealer
from services.common.messages import (
    AffectedRecordMessage,
    ContributionCompleteMessage,
    IncidentMessage,
    RecordWithdrawnMessage,
    record_sealing_context,
)
from testkit.factories import INCIDENT_CONTENT
from testkit.infra import _security


def record_message(sealer: Sealer, incident_id: str, agency_id: str, source_record_id: str,
                   version: int = 1, categories: tuple[str, ...] = ("clinical_notes",),
                   documents: int = 1, hold: dict | None = None, **personal) -> AffectedRecordMessage:
    fields = {"hold": hold, **personal}
    return AffectedRecordMessage(
        incident_id=incident_id, agency_id=agency_id, source_record_id=source_record_id,
        record_version=version, feed_id="feed-test", received_at=utcnow(),
        data_categories=list(categories), document_count=documents, on_hold=hold is not None,
        sealed=sealer.seal(fields, record_sealing_context(incident_id, agency_id,
                                                          source_record_id, version)),
    )


def withdrawal(incident_id: str, agency_id: str, source_record_id: str,
               version: int | None = 1) -> RecordWithdrawnMessage:
    """The withdrawal of `version` of the record (None: as messages before versioned
    withdrawals were, withdrawing whatever version the consumer holds)."""
    return RecordWithdrawnMessage(incident_id=incident_id, agency_id=agency_id,
                                  source_record_id=source_record_id, record_version=version,
                                  withdrawn_at=utcnow())


def completion(incident_id: str, agency_id: str, count: int,
               withdrawn: int = 0) -> ContributionCompleteMessage:
    return ContributionCompleteMessage(incident_id=incident_id, agency_id=agency_id,
                                       record_count=count, withdrawn_count=withdrawn,
                                       completed_at=utcnow())


def incident_message(incident_id: str, agencies: dict[str, str], expected: list[str],
                     revision: int = 1, hold_deadline: datetime | None = None,
                     settle_window_seconds: int = 0, amend_on: str = "new_agency_or_category",
                     ) -> IncidentMessage:
    return IncidentMessage(
        incident_id=incident_id, revision=revision, title="Test breach",
        content=INCIDENT_CONTENT,
        agencies=[{"agency_id": a, "name": n} for a, n in agencies.items()],
        expected_agency_ids=expected,
        release_policy={"hold_deadline": hold_deadline,
                        "settle_window_seconds": settle_window_seconds, "amend_on": amend_on},
        channel_policy={}, updated_at=utcnow(),
    )


async def publish(bootstrap: str, topic: str, messages: list, security: dict | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                **_security(security))
    await producer.start()
    try:
        for msg in messages:
            await producer.send(topic, msg.to_bytes(), key=msg.incident_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def publish_raw(bootstrap: str, topic: str, items: list[tuple[str | None, bytes | None]],
                      security: dict | None = None) -> list:
    """Publish (key, value) pairs as they are — poison included (a None value is a tombstone);
    returns each one's RecordMetadata (topic, partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                **_security(security))
    await producer.start()
    try:
        return [await producer.send_and_wait(topic, value, key=key.encode() if key else None)
                for key, value in items]
    finally:
        await producer.stop()
