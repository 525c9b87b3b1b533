"""The whole path on the real broker and real PostgreSQL: one affected record POSTed to
intake reaches dedupe, becomes a notice, and dispatch publishes its delivery event."""

import pytest

from services.common.messages import decode_delivery_event, decode_notice
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.gateways.smtp_server import SmtpGateway
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit.factories import affected_record, incident_body, ndjson
from testkit.infra import topic_reader
from tests.conftest import COORDINATOR_TOKEN, running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}


async def test_one_record_flows_from_intake_to_a_delivery_event(
    service_env, pg_database, kafka_bootstrap, topic_prefix
):
    intake = create_intake(IntakeSettings(**service_env, database_url=pg_database("intake")))
    dedupe = create_dedupe(DedupeSettings(**service_env, database_url=pg_database("dedupe")))
    smtp = SmtpGateway()
    await smtp.start()
    dispatch = create_dispatch(DispatchSettings(
        **service_env, database_url=pg_database("dispatch"), smtp_port=smtp.port,
        quiet_hours_enabled=False, receipt_callback_base_url="",
    ))

    async with running(intake) as client, running(dedupe), running(dispatch):
        created = await client.post(
            "/v1/incidents", headers=COORDINATOR,
            json=incident_body("inc-flow", [("gp-kowhai", "Kōwhai Medical Centre")]),
        )
        assert created.status_code == 201, created.text
        api_key = created.json()["issued_keys"][0]["api_key"]

        response = await client.post(
            "/v1/incidents/inc-flow/feeds",
            content=ndjson([affected_record("kowhai-0001")]),
            headers={"authorization": f"Bearer {api_key}", "content-type": "application/x-ndjson"},
        )
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 1
        # The only expected agency is complete: the incident's notices are released.
        done = await client.post("/v1/incidents/inc-flow/completion",
                                 headers={"authorization": f"Bearer {api_key}"})
        assert done.status_code == 200, done.text
        assert done.json()["record_count"] == 1

        async with topic_reader(kafka_bootstrap, f"{topic_prefix}delivery-events.v1") as events:
            received = await events.wait_for(
                lambda m: any(decode_delivery_event(e.value).status == "sent" for e in m),
                timeout=60,
            )
        async with topic_reader(kafka_bootstrap, f"{topic_prefix}notices.v1") as notices:
            notice_messages = await notices.wait_for(lambda m: len(m) >= 1)

    notice = decode_notice(notice_messages[0].value)
    assert notice.incident_id == "inc-flow"
    assert [a.agency_id for a in notice.agencies] == ["gp-kowhai"]
    assert notice.channels == ["email", "sms"]
    # Kafka keys and clear fields carry no personal data; the recipient is sealed.
    assert b"Aroha" not in notice_messages[0].value
    assert notice_messages[0].key == notice.person_id.encode()

    await smtp.stop()
    events = [decode_delivery_event(r.value) for r in received]
    assert {e.notice_id for e in events} == {notice.notice_id}
    assert [(e.channel, e.status) for e in events] == [
        ("email", "queued"), ("email", "sending"), ("email", "sent")]
    # The one notice reached the (local) mail server once, addressed to the person.
    [mail] = smtp.messages
    assert mail.rcpt_tos == ("aroha.testperson@example.nz",)
    assert mail.message["X-Panui-Reference"] == f"{notice.notice_id}:email"
