"""Poison messages on dedupe's inputs: each kind is set aside (dead-lettered, or skipped for a
tombstone on the compacted incidents topic) and the partition moves on — the valid records
before and after it are applied, the incident is released, and every person gets exactly one
notice. The dead letter names the reason and origin and holds no personal value in clear; the
logs hold none either. (On main each of these stalled the partition for ever.)"""

import asyncio

import orjson
import pytest
from prometheus_client import REGISTRY

from services.common.crypto import Sealer
from services.common.messages import decode_notice
from services.dedupe import store
from services.dedupe.app import create_app
from services.dedupe.settings import DedupeSettings
from testkit.deadletters import assert_no_clear_values, dead_letters, payload
from testkit.factories import synthetic_person
from testkit.infra import WAIT_S, TopicReader
from testkit.messages import completion, incident_message, publish, publish_raw, record_message
from tests.conftest import running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

INCIDENT = "inc-poison"
PERSONS = 12
# An address as intake on main sealed it: its domain lower-cased (İ → i + U+0307), which took it
# past the contract's 254 characters after intake had checked the length.
GROWN_EMAIL = "aroha.testperson@" + "İ".lower() * 200 + ".nz"


def _settings(service_env: dict, database_url: str) -> DedupeSettings:
    return DedupeSettings(**service_env, database_url=database_url, release_tick_s=0.2,
                          consumer_retry_backoff_s=0.02, consumer_retry_backoff_max_s=0.1)


def _valid(sealer: Sealer, i: int):  # noqa: ANN202
    return record_message(sealer, INCIDENT, "gp", f"gp-{i:03d}", **synthetic_person(i))


def _poison(kind: str, sealer: Sealer) -> bytes | None:
    good = orjson.loads(record_message(sealer, INCIDENT, "gp", "gp-poison",
                                       **synthetic_person(999)).to_bytes())
    if kind == "undecodable":
        return b"\x00\xff this is not JSON"
    if kind == "schema-invalid":
        return orjson.dumps({**good, "document_count": -1})
    if kind == "unknown-version":
        return orjson.dumps({**good, "schema_version": 2})
    if kind == "unexpected-tombstone":
        return None
    if kind == "apply-failed":  # decodes; dedupe's contract model rejects the sealed email
        return record_message(sealer, INCIDENT, "gp", "gp-poison",
                              **{**synthetic_person(999), "email": GROWN_EMAIL}).to_bytes()
    raise AssertionError(kind)


def _dead_lettered(settings: DedupeSettings, reason: str) -> float:
    return REGISTRY.get_sample_value("panui_dead_letters_total", {
        "service": "dedupe", "group": settings.consumer_group("dedupe.affected-records"),
        "topic": f"{settings.topic_prefix}affected-records.v1", "reason": reason}) or 0.0


async def _notified_persons(reader: TopicReader, count: int) -> list:
    await reader.wait_for(lambda m: len(m) >= count, timeout=60)
    await asyncio.sleep(1.5)  # anything extra would show up now
    return [decode_notice(m.value) for m in await reader.drain()]


@pytest.mark.parametrize("kind", ["undecodable", "schema-invalid", "unknown-version",
                                  "unexpected-tombstone", "apply-failed"])
async def test_a_poison_record_is_dead_lettered_and_the_partition_moves_on(
        kind, service_env, pg_database, kafka_bootstrap, capfd, caplog):
    settings = _settings(service_env, pg_database("dedupe"))
    sealer = Sealer(settings.data_keys.get_secret_value())
    records_topic = f"{settings.topic_prefix}affected-records.v1"
    poison = _poison(kind, sealer)
    async with running(create_app(settings)) as client:
        await publish(kafka_bootstrap, f"{settings.topic_prefix}incidents.v1",
                      [incident_message(INCIDENT, {"gp": "Test GP"}, ["gp"])])
        before = [_valid(sealer, i) for i in range(PERSONS // 2)]
        after = [_valid(sealer, i) for i in range(PERSONS // 2, PERSONS)]
        await publish(kafka_bootstrap, records_topic, before)
        [sent] = await publish_raw(kafka_bootstrap, records_topic, [(INCIDENT, poison)])
        # The completion comes after the poison: the release needs the partition to move on.
        await publish(kafka_bootstrap, records_topic, [*after, completion(INCIDENT, "gp", PERSONS)])

        reader = TopicReader(kafka_bootstrap, f"{settings.topic_prefix}notices.v1")
        await reader.start()
        try:
            notices = await _notified_persons(reader, PERSONS)
        finally:
            await reader.stop()
        ready = (await client.get("/readyz")).json()

    # Reconciled against what was sent: every valid record's person told once, the poison never.
    assert len(notices) == PERSONS == len({n.person_id for n in notices})
    assert all(n.version == 1 for n in notices)

    [letter] = await dead_letters(kafka_bootstrap, settings.topic_prefix, 1)
    assert letter["reason"] == kind
    assert letter["origin"] == {
        "service": "dedupe", "group": settings.consumer_group("dedupe.affected-records"),
        "topic": records_topic, "partition": sent.partition, "offset": sent.offset,
        "key": INCIDENT, "timestamp": letter["origin"]["timestamp"]}
    assert payload(letter) == poison  # the original bytes, to replay after a fix
    assert letter["attempts"] >= (3 if kind == "apply-failed" else 1)
    if kind == "apply-failed":
        assert letter["error_type"] == "ValidationError"
        assert {"loc": "email", "type": "string_too_long"} in letter["errors"]
    assert _dead_lettered(settings, kind) == 1
    assert ready["status"] == "ready" and ready["details"]["dead_letters"]["since_start"] == 1

    personal = [GROWN_EMAIL, "İ".lower() * 3, synthetic_person(999)["email"]]
    assert_no_clear_values(letter, personal)
    logs = capfd.readouterr().err + caplog.text
    assert not [v for v in personal if v in logs], "a personal value was logged"



async def _wait_for_revision(app, revision: int, timeout: float = WAIT_S) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        incident = await app.state.runtime.db.run(store.get_incident, INCIDENT)
        if incident is not None and incident.revision >= revision:
            return
        assert asyncio.get_running_loop().time() < deadline, f"revision {revision} never applied"
        await asyncio.sleep(0.1)


async def test_a_tombstone_on_the_incidents_topic_is_skipped_and_later_revisions_apply(
        service_env, pg_database, kafka_bootstrap):
    settings = _settings(service_env, pg_database("dedupe"))
    sealer = Sealer(settings.data_keys.get_secret_value())
    incidents_topic = f"{settings.topic_prefix}incidents.v1"
    app = create_app(settings)
    async with running(app):
        await publish(kafka_bootstrap, incidents_topic,
                      [incident_message(INCIDENT, {"gp": "Old name"}, ["gp"])])
        await publish_raw(kafka_bootstrap, incidents_topic, [(INCIDENT, None)])
        # A later revision on the same key (same partition) must still be applied.
        await publish(kafka_bootstrap, incidents_topic,
                      [incident_message(INCIDENT, {"gp": "Test GP"}, ["gp"], revision=2)])
        # The records come on another topic, read by another consumer: publish them once the
        # follower has applied revision 2, or a loaded machine may release with revision 1.
        await _wait_for_revision(app, 2)
        await publish(kafka_bootstrap, f"{settings.topic_prefix}affected-records.v1",
                      [*[_valid(sealer, i) for i in range(PERSONS)],
                       completion(INCIDENT, "gp", PERSONS)])
        reader = TopicReader(kafka_bootstrap, f"{settings.topic_prefix}notices.v1")
        await reader.start()
        try:
            notices = await _notified_persons(reader, PERSONS)
        finally:
            await reader.stop()

    assert len(notices) == PERSONS == len({n.person_id for n in notices})
    assert {a.name for n in notices for a in n.agencies} == {"Test GP"}  # revision 2 applied
    assert REGISTRY.get_sample_value("panui_tombstones_total", {
        "service": "dedupe", "group": f"follow:{incidents_topic}", "topic": incidents_topic}) == 1
    assert await dead_letters(kafka_bootstrap, settings.topic_prefix, 0) == []
