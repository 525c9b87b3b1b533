"""Issue 16's retractions on the whole path (real broker, real PostgreSQL, the three services,
the SMTP gateway): a record the GP withdraws after its person's notice went out opens one
retraction item; the coordinator's send_correction puts exactly one correction notice in that
person's mailbox (saying the earlier one was sent by mistake, with the reference and no link);
a second person's withdrawal decided no_action sends nothing; the report counts both."""

import asyncio
import email
from email import policy

import pytest

from services.common.messages import decode_delivery_event, decode_notice
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.gateways.smtp_server import SmtpGateway
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit.factories import affected_record, incident_body, ndjson, synthetic_nhi
from testkit.infra import topic_reader
from tests.conftest import COORDINATOR_TOKEN, running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
INCIDENT = "inc-retract"


def _mail_to(smtp, address: str) -> list:
    return [email.message_from_bytes(m.data, policy=policy.default)
            for m in smtp.messages if address in m.rcpt_tos]


def _text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


async def _until(predicate, timeout: float = 90):  # noqa: ANN001, ANN202
    async with asyncio.timeout(timeout):
        while not (found := await predicate()):
            await asyncio.sleep(0.2)
        return found


async def test_a_correction_reaches_the_gateway_once_and_no_action_sends_nothing(
    service_env, pg_database, kafka_bootstrap, topic_prefix
):
    env = {**service_env, "review_sync_interval_s": 0.2}
    intake = create_intake(IntakeSettings(**service_env, database_url=pg_database("intake")))
    dedupe = create_dedupe(DedupeSettings(**env, database_url=pg_database("dedupe"),
                                          release_tick_s=0.2))
    smtp = SmtpGateway()
    await smtp.start()
    dispatch = create_dispatch(DispatchSettings(
        **service_env, database_url=pg_database("dispatch"), smtp_port=smtp.port,
        quiet_hours_enabled=False, receipt_callback_base_url=""))
    records = [
        affected_record("r-1", nhi=synthetic_nhi(1), date_of_birth="1980-04-12",
                        email="one@example.nz", mobile=None, given_names="Aroha"),
        affected_record("r-2", nhi=synthetic_nhi(2), date_of_birth="1991-07-01",
                        email="two@example.nz", mobile=None, given_names="Mere",
                        family_name="Testwhānau"),
    ]
    try:
        async with running(intake) as client, running(dedupe) as dedupe_client, \
                running(dispatch) as dispatch_client:
            created = await client.post("/v1/incidents", headers=COORDINATOR, json=incident_body(
                INCIDENT, [("gp-kowhai", "Kōwhai Medical Centre")]))
            assert created.status_code == 201, created.text
            key = {"authorization": f"Bearer {created.json()['issued_keys'][0]['api_key']}"}
            fed = await client.post(f"/v1/incidents/{INCIDENT}/feeds", content=ndjson(records),
                                    headers=key | {"content-type": "application/x-ndjson"})
            assert fed.status_code == 202, fed.text
            assert (await client.post(f"/v1/incidents/{INCIDENT}/completion",
                                      headers=key)).status_code == 200

            async def both_sent():  # noqa: ANN202
                return len(_mail_to(smtp, "one@example.nz")) == 1 and \
                    len(_mail_to(smtp, "two@example.nz")) == 1
            await _until(both_sent)

            async def open_retractions(count: int):  # noqa: ANN202
                answer = await dedupe_client.get(f"/v1/incidents/{INCIDENT}/reviews",
                                                 headers=COORDINATOR)
                found = [i for i in answer.json() if i["kind"] == "retraction"]
                return found if len(found) == count else None

            # The GP withdraws Aroha's record: her notice was sent in error.
            gone = await client.delete(f"/v1/incidents/{INCIDENT}/records/r-1", headers=key)
            assert (gone.status_code, gone.json()["status"]) == (200, "withdrawn")
            (item,) = await _until(lambda: open_retractions(1))
            assert (item["reason"], item["evidence"]["withdrawn_agencies"]) == (
                "all_withdrawn", ["gp-kowhai"])
            decided = await dedupe_client.post(
                f"/v1/incidents/{INCIDENT}/reviews/{item['review_id']}/decision",
                headers=COORDINATOR, json={"decision": "send_correction"})
            assert decided.status_code == 200, decided.text

            async def corrected():  # noqa: ANN202
                return len(_mail_to(smtp, "one@example.nz")) >= 2
            await _until(corrected)
            first, correction = _mail_to(smtp, "one@example.nz")
            assert correction["subject"].startswith("Correction: ")
            body = _text(correction)
            assert "sent to you by mistake" in body and "Kōwhai Medical Centre" in body
            assert "Kia ora Aroha" in body and "http" not in body
            reference = first["subject"].rsplit("ref ", 1)[1].rstrip(")")
            assert reference not in body  # the correction carries its own reference
            async with topic_reader(kafka_bootstrap, f"{topic_prefix}notices.v1") as topic:
                notices = [decode_notice(m.value) for m in await topic.wait_for(
                    lambda m: len(m) >= 3)]
            made = next(n for n in notices if n.correction is not None)
            assert made.reference_code in body and made.version == 2
            async with topic_reader(kafka_bootstrap, f"{topic_prefix}delivery-events.v1") as events:
                await events.wait_for(lambda m: any(
                    (e := decode_delivery_event(x.value)).notice_id == made.notice_id
                    and e.status == "sent" for x in m), timeout=60)
            listed = await dedupe_client.get(f"/v1/incidents/{INCIDENT}/reviews",
                                             params={"status": "send_correction"},
                                             headers=COORDINATOR)
            assert [i["correction_notice_id"] for i in listed.json()] == [made.notice_id]

            # Mere's record too; decided no action: nothing more is sent.
            assert (await client.delete(f"/v1/incidents/{INCIDENT}/records/r-2",
                                        headers=key)).status_code == 200
            (other,) = await _until(lambda: open_retractions(1))
            assert other["review_id"] != item["review_id"]
            none = await dedupe_client.post(
                f"/v1/incidents/{INCIDENT}/reviews/{other['review_id']}/decision",
                headers=COORDINATOR, json={"decision": "no_action"})
            assert none.status_code == 200, none.text
            await asyncio.sleep(3)  # time for a (wrong) notice to come through
            assert len(_mail_to(smtp, "two@example.nz")) == 1
            assert len(_mail_to(smtp, "one@example.nz")) == 2

            report = await dispatch_client.get(f"/v1/incidents/{INCIDENT}/report",
                                               headers=COORDINATOR)
            counts = {c["measure"]: c["value"] for c in report.json()["counts"]
                      if c["agency_id"] is None}
            assert counts["notices.corrections.sent_in_error"] == 1
            assert counts["corrections.email.sent"] == 1
            assert counts["notices.first"] == 2
            dedupe_report = await dedupe_client.get(f"/v1/incidents/{INCIDENT}/report",
                                                    headers=COORDINATOR)
            counts = {c["measure"]: c["value"] for c in dedupe_report.json()["counts"]
                      if c["agency_id"] is None}
            assert (counts["retractions.send_correction"], counts["retractions.no_action"]) == (
                1, 1)
    finally:
        await smtp.stop()
