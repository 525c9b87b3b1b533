"""Retention on the real broker and real PostgreSQL: an incident runs to a sent notice, the
coordinator closes it, and after the (here zero) retention period all three services purge it.
Then no personal value of the input is in any column of any table of the three databases,
the old Kafka payloads (records and notices) read back from their topics no longer decrypt,
the key messages are tombstoned, and an audit trail without personal data remains."""

import asyncio
import base64
import re
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import MetaData, create_engine, select, text

from services.common.crypto import KeyDestroyed, Sealer, Vault, generate_key_spec
from services.common.keystore import DatabaseKeySource
from services.common.messages import (
    decode_affected_records_topic,
    decode_delivery_event,
    decode_incident_lifecycle,
    decode_notice,
    notice_sealing_context,
)
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.gateways.smtp_server import SmtpGateway
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit.factories import affected_record, incident_body, ndjson
from testkit.infra import topic_reader
from testkit.messages import publish_raw
from tests.conftest import COORDINATOR_TOKEN, running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
INCIDENT = "inc-purge"
RECORDS = [
    affected_record("kowhai-0001"),
    affected_record("kowhai-0002", nhi="ZZZ0024", given_names="Wiremu", family_name="Purgetest",
                    date_of_birth="1975-11-30", email="wiremu.purgetest@example.nz",
                    mobile="+64219876543",
                    address={"line1": "77 Shredding Lane", "suburb": "Ngaio",
                             "city": "Wellington", "postcode": "6035"}),
]
PERSONAL_VALUES = sorted({
    str(v) for r in RECORDS for k, v in r.items()
    if k in ("nhi", "given_names", "family_name", "date_of_birth", "email", "mobile")
} | {"77 Shredding Lane", "Ngaio", "+64 21 987 6543", "0219876543", "021 987 6543"})


_ENVELOPE = re.compile(r"v[12]\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_=-]+)")


def _raw_keys(spec: str) -> dict[str, bytes]:
    return {kid: base64.urlsafe_b64decode(b64) for kid, _, b64 in
            (part.partition(":") for part in spec.split(",") if part)}


def _insider_open(blob_b64: str, raw: bytes) -> str:
    """An AES-GCM value's plaintext without its context: GCM is CTR from counter 2 (a 12-byte
    nonce), so an insider holding the key reads it, tag unchecked, whatever the AAD."""
    blob = base64.urlsafe_b64decode(blob_b64)
    decryptor = Cipher(algorithms.AES(raw), modes.CTR(blob[:12] + b"\0\0\0\2")).decryptor()
    return (decryptor.update(blob[12:-16]) + decryptor.finalize()).decode("utf-8", "replace")


def _scan(url: str, keks: dict[str, str]) -> list[str]:
    """Every personal value found in any column of any table — in clear, or inside a sealed
    value that an insider holding every KEK of the deployment and this database could open
    (data keys unwrapped from its data_key table): "<table>.<column>: <value>"."""
    engine = create_engine(url)
    found = []
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        keys = {kid: raw for spec in keks.values() for kid, raw in _raw_keys(spec).items()}  # v1
        kek_by_purpose = {p: Sealer(spec) for p, spec in keks.items()}
        with engine.connect() as conn:
            for key_id, purpose, kek_id, wrapped in conn.execute(text(
                    "SELECT key_id, purpose, kek_id, wrapped FROM data_key"
                    " WHERE wrapped IS NOT NULL")):
                keys[key_id] = kek_by_purpose[purpose].unwrap(kek_id, wrapped, key_id)
            for table in metadata.sorted_tables:
                for row in conn.execute(select(table)).mappings():
                    for column, value in row.items():
                        if value is None:
                            continue
                        if isinstance(value, bytes | memoryview):
                            shown = bytes(value).decode("utf-8", "replace")
                        else:
                            shown = str(value)
                        shown += " ".join(_insider_open(m.group(2), keys[m.group(1)])
                                          for m in _ENVELOPE.finditer(shown) if m.group(1) in keys)
                        found += [f"{table.name}.{column}: {p}" for p in PERSONAL_VALUES
                                  if p.lower() in shown.lower()]
    finally:
        engine.dispose()
    return found


def _purged(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM retention_event WHERE incident_id = :i"
                                     " AND action = 'purged'"), {"i": INCIDENT}).scalar() == 1
    finally:
        engine.dispose()


def _events(url: str) -> list[tuple[str, str | None, dict]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT action, actor, detail FROM retention_event WHERE incident_id = :i"
                " ORDER BY id"), {"i": INCIDENT})]
    finally:
        engine.dispose()


async def _until(predicate, timeout: float = 90.0) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.3)


async def test_after_the_purge_nothing_personal_remains_and_old_payloads_do_not_decrypt(
    service_env, pg_database, kafka_bootstrap, topic_prefix
):
    records_keys, notices_keys = generate_key_spec("rec1"), generate_key_spec("not1")
    env = {**service_env, "data_keys": ""}  # each service only its purposes' KEKs
    urls = {s: pg_database(s) for s in ("intake", "dedupe", "dispatch")}
    both = {"records": records_keys, "notices": notices_keys}  # an insider with every KEK
    deployment_keys = {"intake": both, "dedupe": both, "dispatch": both}
    intake = create_intake(IntakeSettings(**env, database_url=urls["intake"],
                                          records_keys=records_keys, purge_after_s=0,
                                          purge_check_interval_s=0.2))
    dedupe = create_dedupe(DedupeSettings(**env, database_url=urls["dedupe"],
                                          records_keys=records_keys, notices_keys=notices_keys))
    smtp = SmtpGateway()
    await smtp.start()
    dispatch = create_dispatch(DispatchSettings(
        **env, database_url=urls["dispatch"], notices_keys=notices_keys, smtp_port=smtp.port,
        quiet_hours_enabled=False, receipt_callback_base_url=""))
    try:
        async with running(intake) as client, running(dedupe), running(dispatch):
            created = await client.post("/v1/incidents", headers=COORDINATOR, json=incident_body(
                INCIDENT, [("gp-kowhai", "Kōwhai Medical Centre")]))
            assert created.status_code == 201, created.text
            agency = {"authorization": f"Bearer {created.json()['issued_keys'][0]['api_key']}"}
            sent = await client.post(f"/v1/incidents/{INCIDENT}/feeds", content=ndjson(RECORDS),
                                     headers={**agency, "content-type": "application/x-ndjson"})
            assert sent.status_code == 202 and sent.json()["accepted"] == 2, sent.text
            done = await client.post(f"/v1/incidents/{INCIDENT}/completion", headers=agency)
            assert done.status_code == 200, done.text

            async with topic_reader(kafka_bootstrap, f"{topic_prefix}delivery-events.v1") as events:
                await events.wait_for(lambda m: sum(
                    decode_delivery_event(e.value).status == "sent" for e in m) >= 2, timeout=90)
            async with topic_reader(kafka_bootstrap, f"{topic_prefix}affected-records.v1") as r:
                raw_records = await r.wait_for(lambda m: len(m) >= 3)
                old_records = [decode_affected_records_topic(m.value) for m in raw_records]
            async with topic_reader(kafka_bootstrap, f"{topic_prefix}notices.v1") as n:
                old_notices = [decode_notice(m.value) for m in await n.wait_for(lambda m: len(m) >= 2)]
            old_records = [m for m in old_records if m.type == "affected-record"]
            assert all(m.sealed.startswith("v2.") for m in old_records + old_notices)
            assert not _purged(urls["intake"])  # open until closed, however old
            # The scan finds what each database holds while the incident is live.
            before = {s: _scan(u, deployment_keys[s]) for s, u in urls.items()}
            assert all(before.values()), before

            closed = await client.post(f"/v1/incidents/{INCIDENT}/close", headers=COORDINATOR)
            assert closed.status_code == 200, closed.text
            assert closed.json()["purge_after"] == closed.json()["closed_at"]
            await _until(lambda: all(_purged(u) for u in urls.values()))
            refused = await client.post(f"/v1/incidents/{INCIDENT}/feeds", content=ndjson(RECORDS[:1]),
                                        headers={**agency, "content-type": "application/x-ndjson"})
            assert refused.status_code == 409 and refused.json()["error"]["code"] == "incident.closed"

            lifecycle_keys = {f"{topic_prefix}incident-lifecycle.v1": 1,
                              f"{topic_prefix}notice-keys.v1": 1}
            tombstoned = {}
            for topic in lifecycle_keys:
                async with topic_reader(kafka_bootstrap, topic) as reader:
                    messages = await reader.wait_for(lambda m: any(x.value is None for x in m))
                    await reader.drain()
                keyed = {}
                for m in reader.messages:
                    keyed.setdefault(m.key, []).append(m.value)
                tombstoned[topic] = {k for k, values in keyed.items()
                                     if values[-1] is None and any(values[:-1])}
                kinds = [decode_incident_lifecycle(v).type for m in messages if (v := m.value)]
                assert "incident-key" in kinds
            assert all(len(keys) == 1 for keys in tombstoned.values()), tombstoned

            # An old record replayed after the purge is ignored (its key is destroyed): not
            # stored again, not dead-lettered.
            [replayed] = await publish_raw(kafka_bootstrap, f"{topic_prefix}affected-records.v1",
                                           [(INCIDENT, raw_records[0].value)])
            worker = dedupe.state.runtime.workers[1]
            tp = TopicPartition(replayed.topic, replayed.partition)

            async def consumed() -> bool:
                return ((await worker.consumer.committed(tp)) or 0) > replayed.offset

            deadline = asyncio.get_running_loop().time() + 60
            while not await consumed():
                assert asyncio.get_running_loop().time() < deadline, "replay not consumed"
                await asyncio.sleep(0.3)
            async with topic_reader(kafka_bootstrap, f"{topic_prefix}dead-letters.v1") as dead:
                assert await dead.drain() == []
    finally:
        await smtp.stop()

    # 1. No personal value of the input in any column of any table of the three databases.
    for service, url in urls.items():
        assert _scan(url, deployment_keys[service]) == [], service

    # 2. The old Kafka payloads no longer decrypt, with every KEK of the deployment at hand:
    # the data keys are destroyed in each store (and tombstoned on the compacted topics).
    for service, keks in (("dedupe", {"records": records_keys, "notices": notices_keys}),
                          ("intake", {"records": records_keys}),
                          ("dispatch", {"notices": notices_keys})):
        engine = create_engine(urls[service])
        vault = Vault({p: Sealer(s) for p, s in keks.items()}, DatabaseKeySource(engine))
        try:
            if "records" in keks:
                for m in old_records:
                    with pytest.raises(KeyDestroyed):
                        vault.open(m.sealed, m.sealing_context())
            if "notices" in keks:
                for m in old_notices:
                    with pytest.raises(KeyDestroyed):
                        vault.open(m.sealed, notice_sealing_context(m.notice_id))
        finally:
            engine.dispose()

    # 3. The audit trail: who closed it and when, what each service deleted, the notice ids and
    # their outcomes — and nothing personal (the scan above covered retention_event too).
    [(closed_action, actor, closed_detail), (purged_action, _, intake_counts)] = _events(urls["intake"])
    assert (closed_action, purged_action) == ("closed", "purged")
    assert actor.startswith("coordinator:")  # the principal who closed it (S3's principals)
    assert datetime.fromisoformat(closed_detail["purge_after"]) <= datetime.now(UTC)
    assert intake_counts["records"] == 2 and intake_counts["feeds_kept"] == 1
    assert intake_counts["data_keys_destroyed"] == 1
    [(_, _, dedupe_counts)] = _events(urls["dedupe"])
    notice_ids = sorted(m.notice_id for m in old_notices)
    assert dedupe_counts["notice_ids"] == notice_ids and dedupe_counts["records"] == 2
    [(_, _, dispatch_counts)] = _events(urls["dispatch"])
    assert sorted(dispatch_counts["outcomes"]) == notice_ids
    assert all(o["email"] in ("sent", "delivered") for o in dispatch_counts["outcomes"].values())
