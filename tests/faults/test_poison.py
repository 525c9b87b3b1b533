"""Poison messages: a message no consumer can decode or apply must not stall its partition —
every other person on it still gets their notice — and must not put personal values in the
logs. Each kind is put on the topic in the middle of a small incident's stream; plus the
record intake accepted but dedupe's contract model refused (an email that outgrows its length
limit when lower-cased: 'İ' becomes two characters). They share one running system
(`shared_system`), each with incidents of its own: a poison message of one scenario left on a
topic must not stall the next one either."""

import json

import pytest
from aiokafka import AIOKafkaProducer

from services.common.crypto import Sealer
from testkit.groundtruth import ground_truth
from testkit.messages import record_message

from .conftest import driver_for, settle_and_reconcile

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


def _poison(kind: str, incident: str, data_keys: str) -> bytes:
    if kind == "undecodable":
        return b"\xff\xfe\x00 not json at all"
    if kind == "schema-invalid":
        return json.dumps({"schema_version": 1, "type": "affected-record", "incident_id": incident,
                           "agency_id": "ag-0", "record_version": "one"}).encode()
    if kind == "unknown-version":  # a well-formed record from a newer producer
        message = json.loads(record_message(Sealer(data_keys), incident, "ag-0", "from-the-future",
                                            given_names="Future", family_name="Version").to_bytes())
        return json.dumps({**message, "schema_version": 99}).encode()
    raise ValueError(kind)


async def _publish(system, topic: str, key: str, value: bytes | None) -> None:  # noqa: ANN001
    producer = AIOKafkaProducer(**system.kafka_options(), enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(f"{system.topic_prefix}{topic}", value, key=key.encode())
    finally:
        await producer.stop()


@pytest.mark.parametrize("kind", ["undecodable", "schema-invalid", "unknown-version", "incident-tombstone"])
async def test_a_poison_message_does_not_stall_its_partition(shared_system, kind):
    truth = ground_truth(300, agencies=2, seed=61, incident_prefix=f"inc-poison-{kind}")
    [incident] = truth.incidents
    system = shared_system
    driver = driver_for(system, truth)
    if kind == "incident-tombstone":  # before the incident: its definition comes after it
        await _publish(system, "incidents.v1", incident, None)
        await driver.create_incidents()
        await driver.upload_all()
    else:
        await driver.create_incidents()
        first = {k: v[: len(v) // 2] for k, v in truth.feeds.items()}
        for (i, a), records in first.items():
            await driver.upload(i, a, records, tag="a")
        await _publish(system, "affected-records.v1", incident, _poison(kind, incident, system.keyrings["records"]))
        for (i, a), records in truth.feeds.items():
            await driver.upload(i, a, records[len(records) // 2:], tag="b")
    await driver.complete_all()
    result = await settle_and_reconcile(system, truth, timeout=45)
    result.assert_clean()
    for proc in system.services.values():
        assert proc.alive


async def test_a_record_intake_accepts_is_one_dedupe_can_read(shared_system):
    truth = ground_truth(300, agencies=2, seed=62, incident_prefix="inc-poison-accepted")
    [incident] = truth.incidents
    system = shared_system
    driver = driver_for(system, truth)
    await driver.create_incidents()
    await driver.upload_all()
    local = "poison" + "x" * 54
    email = local + "@" + ".".join(["İ" * 8] * 12) + ".nz"  # 171 characters; 267 lower-cased
    poison = {"source_record_id": "poison-1", "nhi": "ZZZ0016", "given_names": "Poison",
              "family_name": "Record", "email": email, "data_categories": ["clinical_notes"]}
    [receipt] = await driver.upload(incident, "ag-0", [poison], tag="poison")
    await driver.complete_all()
    result = await settle_and_reconcile(system, truth, timeout=45)
    result.assert_clean()
    # What intake accepts, dedupe can read: the address that outgrows its limit when normalised
    # is dropped up front with a warning (the record is kept, as for any bad optional field).
    assert (receipt["accepted"], receipt["rejected"]) == (1, 0), receipt
    assert [(p["field"], p["code"]) for p in receipt["problems"]] == [("email", "email.invalid")]
    for proc in system.services.values():
        assert local not in proc.log_text(), f"{proc.name} logged the personal value"
