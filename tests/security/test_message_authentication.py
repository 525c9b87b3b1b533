"""On the real broker: incident and notice messages that were changed after their service
signed them (or stripped of the signature) are dead-lettered as `unauthenticated` by every
consumer, and never stored, rendered or sent (issue 18, "incident and notice messages
authenticated end to end")."""

import orjson
import pytest

from services.common.messages import decode_dead_letters_topic, decode_delivery_event
from services.common.signing import generate_signing_key_spec
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.dispatch.store.incidents import load_incident
from services.gateways.smtp_server import SmtpGateway
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit.factories import affected_record, incident_body, ndjson
from testkit.infra import topic_reader
from testkit.messages import publish_raw
from tests.conftest import COORDINATOR_TOKEN, running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
PHISHING_PHONE = "0900 666 666"


def _tampered(value: bytes, change) -> bytes:  # noqa: ANN001
    fields = orjson.loads(value)
    change(fields)
    return orjson.dumps(fields)


async def test_tampered_incident_and_notice_messages_are_refused(
        service_env, pg_database, kafka_bootstrap, topic_prefix):
    env = {**service_env, "message_signing_keys": generate_signing_key_spec("s1")}
    intake = create_intake(IntakeSettings(**env, database_url=pg_database("intake")))
    dedupe = create_dedupe(DedupeSettings(**env, database_url=pg_database("dedupe")))
    smtp = SmtpGateway()
    await smtp.start()
    dispatch = create_dispatch(DispatchSettings(
        **env, database_url=pg_database("dispatch"), smtp_port=smtp.port,
        quiet_hours_enabled=False, receipt_callback_base_url=""))
    try:
        async with running(intake) as client, running(dedupe), running(dispatch):
            created = await client.post("/v1/incidents", headers=COORDINATOR, json=incident_body(
                "inc-sig", [("gp-kowhai", "Kōwhai Medical Centre")]))
            assert created.status_code == 201, created.text
            key = {"authorization": f"Bearer {created.json()['issued_keys'][0]['api_key']}"}
            sent = await client.post("/v1/incidents/inc-sig/feeds", headers={
                **key, "content-type": "application/x-ndjson"},
                content=ndjson([affected_record("kowhai-0001")]))
            assert sent.status_code == 202, sent.text
            assert (await client.post("/v1/incidents/inc-sig/completion", headers=key)).status_code == 200
            async with topic_reader(kafka_bootstrap, f"{topic_prefix}delivery-events.v1") as events:
                await events.wait_for(lambda m: any(
                    decode_delivery_event(e.value).status == "sent" for e in m), timeout=90)
            async with topic_reader(kafka_bootstrap, f"{topic_prefix}incidents.v1") as reader:
                incident = (await reader.drain())[-1]
            async with topic_reader(kafka_bootstrap, f"{topic_prefix}notices.v1") as reader:
                [notice] = await reader.wait_for(lambda m: len(m) >= 1)
            genuine = orjson.loads(incident.value)
            assert genuine["signature"].startswith("v1.s1.")
            assert orjson.loads(notice.value)["signature"].startswith("v1.s1.")

            # Someone with write access to the broker rewrites the notice content...
            forged_incident = _tampered(incident.value, lambda d: (
                d["content"]["contact"].update(phone=PHISHING_PHONE),
                d.update(revision=d["revision"] + 10)))
            unsigned_incident = _tampered(forged_incident, lambda d: (
                d.pop("signature"), d.update(revision=d["revision"] + 1)))
            # ...and re-sends a person's notice as an amendment naming another sender.
            forged_notice = _tampered(notice.value, lambda d: (
                d["agencies"][0].update(name="Refund Office"), d.update(version=2)))
            forged = await publish_raw(kafka_bootstrap, f"{topic_prefix}incidents.v1", [
                ("inc-sig", forged_incident), ("inc-sig", unsigned_incident)])
            forged += await publish_raw(kafka_bootstrap, f"{topic_prefix}notices.v1",
                                        [(notice.key.decode(), forged_notice)])
            forged_ids = {f"{m.topic}:{m.partition}:{m.offset}" for m in forged}

            expected = {  # (origin, group): dedupe follows incidents; dispatch reads both
                *((i, f"follow:{topic_prefix}incidents.v1") for i in forged_ids if "incidents" in i),
                *((i, f"{topic_prefix}dispatch.incidents") for i in forged_ids if "incidents" in i),
                *((i, f"{topic_prefix}dispatch.notices") for i in forged_ids if "notices" in i)}

            def letters(records: list) -> dict:
                out = {}
                for r in records:
                    m = decode_dead_letters_topic(r.value)
                    if m.type == "dead-letter":
                        out[(m.origin.id, m.origin.group)] = m.reason.value
                return out

            async with topic_reader(kafka_bootstrap, f"{topic_prefix}dead-letters.v1") as reader:
                records = await reader.wait_for(lambda m: expected <= set(letters(m)), timeout=90)
            assert {letters(records)[k] for k in expected} == {"unauthenticated"}

            # Dispatch still holds the genuine incident; no forged notice was sent.
            stored = await dispatch.state.runtime.db.run(load_incident, "inc-sig")
            assert stored.revision == genuine["revision"]
            assert stored.content.contact.phone == "0800 000 000"
            assert len(smtp.messages) == 1
            assert PHISHING_PHONE.encode() not in smtp.messages[0].data
            assert b"Refund Office" not in smtp.messages[0].data
    finally:
        await smtp.stop()
