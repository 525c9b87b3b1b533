"""Issue 16 on the whole path (real broker, real PostgreSQL, the three services): the
reference and date-of-birth digests dedupe makes are the ones dispatch checks (the notices data
key travels between them on the key topic), and the Privacy Commissioner's report adds up
across the three services with no personal data in it — as CSV and as the PDF (read back with
pdftotext)."""

import csv
import io

import pytest

from services.common.clock import utcnow
from services.common.messages import decode_delivery_event, decode_notice
from services.common.report import ServiceReport, combine, report_csv
from services.common.report_pdf import render_report_pdf
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.gateways.smtp_server import SmtpGateway
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit.factories import affected_record, incident_body, ndjson, synthetic_nhi
from testkit.infra import topic_reader
from testkit.rendering import pdf_text
from tests.conftest import COORDINATOR_TOKEN, running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
INCIDENT = "inc-beyond"


def _count(report, measure, agency_id=None) -> int:
    return sum(c.value for c in report.counts if c.measure == measure and c.agency_id == agency_id)


async def test_the_check_confirms_a_real_notice_and_the_report_adds_up(
    service_env, pg_database, kafka_bootstrap, topic_prefix
):
    intake = create_intake(IntakeSettings(**service_env, database_url=pg_database("intake")))
    dedupe = create_dedupe(DedupeSettings(**service_env, database_url=pg_database("dedupe")))
    smtp = SmtpGateway()
    await smtp.start()
    dispatch = create_dispatch(DispatchSettings(
        **service_env, database_url=pg_database("dispatch"), smtp_port=smtp.port,
        quiet_hours_enabled=False, receipt_callback_base_url=""))
    records = [
        affected_record("r-1", nhi=synthetic_nhi(1), date_of_birth="1980-04-12",
                        email="one@example.nz", given_names="Aroha"),
        affected_record("r-2", nhi=synthetic_nhi(2), date_of_birth="1991-07-01",
                        email="two@example.nz", given_names="Mere", family_name="Testwhānau"),
        affected_record("r-3", nhi=synthetic_nhi(3), date_of_birth="1975-01-20",
                        email="three@example.nz", given_names="Hemi", family_name="Testhold",
                        hold={"reason": "health_prejudice"}),
        affected_record("r-4", hold={"reason": "whim"}),  # an unknown hold ground: rejected
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
            assert (fed.json()["accepted"], fed.json()["rejected"]) == (3, 1)
            done = await client.post(f"/v1/incidents/{INCIDENT}/completion", headers=key)
            assert done.status_code == 200, done.text

            async with topic_reader(kafka_bootstrap, f"{topic_prefix}delivery-events.v1") as events:
                await events.wait_for(lambda m: sum(
                    decode_delivery_event(e.value).status == "sent" for e in m) >= 2, timeout=90)
            async with topic_reader(kafka_bootstrap, f"{topic_prefix}notices.v1") as topic:
                notices = [decode_notice(m.value) for m in await topic.wait_for(lambda m: len(m) >= 2)]
            assert len(notices) == 2  # the held person has none
            aroha = next(n for n in notices
                         if any("one@example.nz" in m.rcpt_tos for m in smtp.messages)
                         and n.reference_code in next(
                             m.data.decode() for m in smtp.messages if "one@example.nz" in m.rcpt_tos))
            assert len(aroha.reference_code) == 18 and len(aroha.dob_checks) == 1
            confirmed = await dispatch_client.post("/v1/notice-checks", json={
                "reference": aroha.reference_code, "date_of_birth": "1980-04-12"})
            assert confirmed.json()["result"] == "confirmed", confirmed.text
            assert confirmed.json()["notice"]["agencies"][0]["name"] == "Kōwhai Medical Centre"
            wrong = await dispatch_client.post("/v1/notice-checks", json={
                "reference": aroha.reference_code, "date_of_birth": "1991-07-01"})
            assert wrong.json()["result"] == "not-confirmed"  # another person's date: no

            parts = []
            for name, http in (("intake", client), ("dedupe", dedupe_client),
                               ("dispatch", dispatch_client)):
                answer = await http.get(f"/v1/incidents/{INCIDENT}/report", headers=COORDINATOR)
                assert answer.status_code == 200, (name, answer.text)
                parts.append(ServiceReport.model_validate(answer.json()))
            missing = await dispatch_client.get("/v1/incidents/inc-nobody/report", headers=COORDINATOR)
            assert missing.status_code == 200 and missing.json()["counts"][0]["value"] == 0
    finally:
        await smtp.stop()

    report = combine(parts, utcnow())
    assert report.services == ["intake", "dedupe", "dispatch"]
    assert {c.service for c in report.counts} == {"intake", "dedupe", "dispatch"}
    agency = "gp-kowhai"
    assert _count(report, "records.received", agency) == 4
    assert _count(report, "records.accepted", agency) == 3
    assert _count(report, "records.rejected", agency) == 1
    assert _count(report, "rejected.hold.reason_unknown", agency) == 1
    assert _count(report, "persons.resolved") == 3
    assert _count(report, "persons.notified") >= 2  # dedupe's and dispatch's, each 2
    assert _count(report, "persons.held") == 1
    assert _count(report, "held.health_prejudice") == 1
    assert _count(report, "held.health_prejudice", agency) == 1
    assert _count(report, "deliveries.email.sent") == 2
    assert _count(report, "deliveries.email.sent", agency) == 2
    assert {m.milestone for m in report.milestones} >= {
        "incident.created", "feed.first", "contribution.complete", "release",
        "notices.first_made", "notices.first_received", "deliveries.first_sent"}

    text = report_csv(report)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["incident_id", "section", "agency_id", "measure", "value", "service"]
    assert ["inc-beyond", "count", agency, "records.received", "4", "intake"] in rows
    assert ["inc-beyond", "count", "", "persons.notified", "2", "dedupe"] in rows
    assert ["inc-beyond", "count", "", "persons.notified", "2", "dispatch"] in rows
    # The PDF to send, read back with poppler: the same numbers, and no personal data either.
    pdf = " ".join(pdf_text(render_report_pdf(report), layout=True).split())
    assert f"Incident {INCIDENT}" in pdf and "from: intake, dedupe, dispatch" in pdf
    whole, agency_part = pdf.split(f"Agency {agency}", 1)
    assert "persons.resolved dedupe 3" in whole and "held.health_prejudice dedupe 1" in whole
    assert "deliveries.email.sent dispatch 2" in whole
    assert "persons.notified dedupe 2" in whole and "persons.notified dispatch 2" in whole
    for row in ("records.received intake 4", "records.accepted intake 3", "records.rejected intake 1",
                "rejected.hold.reason_unknown intake 1", "held.health_prejudice dedupe 1"):
        assert row in agency_part.split("Milestones")[0], row
    assert "release" in agency_part.split("Milestones")[1]
    for personal in ("Aroha", "Mere", "Hemi", "Testperson", "Testwhānau", "Testhold", "@example.nz",
                     "1980-04-12", "+6421", synthetic_nhi(1), aroha.reference_code):
        assert personal not in text and personal not in report.model_dump_json(), personal
        assert personal not in pdf, personal
