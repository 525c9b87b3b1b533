"""The services on a broker of their own whose only client listener is SASL_SSL (TLS with a
CA made by the test, SCRAM users created when its storage was formatted): intake publishes,
dedupe consumes and releases, dispatch sends — and a wrong password, a plaintext client, an
unknown CA or the wrong host name are refused. Never the shared broker (scripts/kafka.sh runs
a separate instance: own ports, own data directory)."""

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

from services.common.kafka_client import client_options
from services.common.messages import decode_delivery_event
from services.common.settings import ServiceSettings
from services.common.signing import generate_signing_key_spec
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.gateways.smtp_server import SmtpGateway
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit.factories import affected_record, incident_body, ndjson
from testkit.infra import topic_reader
from testkit.private_infra import PrivateKafka
from testkit.tls import TestCA
from tests.conftest import COORDINATOR_TOKEN, running

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):  # noqa: ANN201
    kafka = PrivateKafka(tmp_path_factory.mktemp("sasl"), sasl_ssl=True,
                         users=("panui-intake", "panui-dedupe", "panui-dispatch"))
    try:
        kafka.start()
        yield kafka
    finally:
        kafka.close()


async def _list_topics(**settings) -> list[str]:  # noqa: ANN003
    admin = AIOKafkaAdminClient(**client_options(ServiceSettings(**settings)), request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 30)
        return await admin.list_topics()
    finally:
        await admin.close()


async def test_the_right_user_gets_in_with_either_scram_mechanism(broker):
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
        assert isinstance(await _list_topics(**broker.client_settings(
            "panui-dedupe", mechanism=mechanism)), list)


async def test_a_wrong_password_is_refused(broker):
    with pytest.raises(KafkaError):
        await _list_topics(**broker.client_settings("panui-intake", password="not-the-password"))
    with pytest.raises(KafkaError):
        await _list_topics(**broker.client_settings("panui-intake", password=broker.users["panui-dedupe"]))


async def test_a_client_without_tls_is_refused(broker):
    with pytest.raises((KafkaError, TimeoutError)):
        await _list_topics(kafka_bootstrap_servers=broker.bootstrap)  # PLAINTEXT
    settings = broker.client_settings("panui-intake") | {"kafka_security_protocol": "SASL_PLAINTEXT",
                                                          "kafka_ssl_cafile": ""}
    with pytest.raises((KafkaError, TimeoutError)):
        await _list_topics(**settings)


async def test_a_broker_certificate_from_another_ca_or_for_another_host_is_refused(broker, tmp_path):
    stranger = TestCA(tmp_path / "other-ca")
    with pytest.raises(KafkaConnectionError):
        await _list_topics(**broker.client_settings("panui-intake") | {"kafka_ssl_cafile": str(stranger.cert)})
    # The broker's certificate names 127.0.0.1 and localhost, not 127.0.0.2.
    elsewhere = broker.client_settings("panui-intake") | {
        "kafka_bootstrap_servers": f"127.0.0.2:{broker.port}"}
    with pytest.raises((KafkaError, TimeoutError)):
        await _list_topics(**elsewhere)


async def test_intake_dedupe_and_dispatch_work_over_sasl_ssl(broker, pg_database, data_keys):
    prefix = "sasl."
    shared = {"topic_prefix": prefix, "data_keys": data_keys, "coordinator_tokens": COORDINATOR_TOKEN,
              "message_signing_keys": generate_signing_key_spec("s1"),
              "consumer_poll_timeout_ms": 200, "outbox_poll_interval_s": 0.05}
    intake = create_intake(IntakeSettings(**shared, **broker.client_settings("panui-intake"),
                                          database_url=pg_database("intake")))
    dedupe = create_dedupe(DedupeSettings(**shared, **broker.client_settings("panui-dedupe"),
                                          database_url=pg_database("dedupe")))
    smtp = SmtpGateway()
    await smtp.start()
    dispatch = create_dispatch(DispatchSettings(
        **shared, **broker.client_settings("panui-dispatch"), database_url=pg_database("dispatch"),
        smtp_port=smtp.port, quiet_hours_enabled=False, receipt_callback_base_url=""))
    try:
        async with running(intake) as client, running(dedupe), running(dispatch):
            created = await client.post("/v1/incidents", headers=COORDINATOR, json=incident_body(
                "inc-tls", [("gp-kowhai", "Kōwhai Medical Centre")]))
            assert created.status_code == 201, created.text
            key = {"authorization": f"Bearer {created.json()['issued_keys'][0]['api_key']}"}
            sent = await client.post("/v1/incidents/inc-tls/feeds", headers={
                **key, "content-type": "application/x-ndjson"},
                content=ndjson([affected_record("kowhai-0001")]))
            assert sent.status_code == 202, sent.text
            assert (await client.post("/v1/incidents/inc-tls/completion", headers=key)).status_code == 200
            admin = client_options(ServiceSettings(**broker.client_settings("admin")))
            async with topic_reader(broker.bootstrap, f"{prefix}delivery-events.v1", admin) as events:
                await events.wait_for(lambda m: any(
                    decode_delivery_event(e.value).status == "sent" for e in m), timeout=120)
        assert [m.rcpt_tos for m in smtp.messages] == [("aroha.testperson@example.nz",)]
    finally:
        await smtp.stop()
