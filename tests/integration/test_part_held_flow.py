"""Issue 16's partial hold on the whole path (real broker, real PostgreSQL, the three services,
the SMTP gateway): one person, records from two agencies, the GP's held back under s 116. The
coordinator releases the hold conflict, so the notice names the lab only; the call centre,
looking the notice up by its reference, is told the person is held (part of what they are owed
is held back) and the Commissioner's report counts them `persons.notified.part_held`. When the
GP lifts its hold (a new version without it), an amendment naming the GP reaches the person,
the call centre sees it under the same reference and the person no longer held, and the report
counts the amendment — in an incident that sends no amendments otherwise (`amend_on: never`):
s 116 delays an agency's part of the notice, it never excuses it."""

import asyncio
import email
from email import policy

import pytest

from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.gateways.smtp_server import SmtpGateway
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit.factories import affected_record, incident_body, ndjson, synthetic_nhi
from testkit.staff import SIGNING_KEY, token
from tests.conftest import COORDINATOR_TOKEN, running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
INCIDENT = "inc-part-held"
GP, LAB = ("gp-kowhai", "Kōwhai Medical Centre"), ("lab-rata", "Rātā Laboratories")
AROHA = {"nhi": synthetic_nhi(7), "date_of_birth": "1980-04-12", "given_names": "Aroha",
         "family_name": "Testhold", "email": "aroha.held@example.nz", "mobile": None}


def _mail(smtp) -> list:  # noqa: ANN001
    return [email.message_from_bytes(m.data, policy=policy.default) for m in smtp.messages
            if AROHA["email"] in m.rcpt_tos]


def _text(message) -> str:  # noqa: ANN001
    return message.get_body(preferencelist=("plain",)).get_content()


async def _until(predicate, what: str, timeout: float = 120):  # noqa: ANN001, ANN202
    try:
        async with asyncio.timeout(timeout):
            while not (found := await predicate()):
                await asyncio.sleep(0.2)
            return found
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def _counts(report) -> dict[str, int]:  # noqa: ANN001
    return {c["measure"]: c["value"] for c in report.json()["counts"] if c["agency_id"] is None}


async def test_a_partial_hold_is_shown_counted_and_its_lifting_amends_end_to_end(
    service_env, pg_database
):
    env = {**service_env, "token_signing_key": SIGNING_KEY}
    intake = create_intake(IntakeSettings(**env, database_url=pg_database("intake")))
    dedupe = create_dedupe(DedupeSettings(**env, review_sync_interval_s=0.2, release_tick_s=0.2,
                                          database_url=pg_database("dedupe")))
    smtp = SmtpGateway()
    await smtp.start()
    dispatch = create_dispatch(DispatchSettings(
        **env, database_url=pg_database("dispatch"), smtp_port=smtp.port,
        quiet_hours_enabled=False, receipt_callback_base_url=""))
    call_centre = {"authorization": f"Bearer {token(['call-centre'])[0]}"}
    held_gp = affected_record("gp-1", hold={"reason": "health_prejudice"}, **AROHA)
    lab = affected_record("lab-1", data_categories=["lab_results"], **AROHA)
    try:
        async with running(intake) as client, running(dedupe) as dedupe_client, \
                running(dispatch) as dispatch_client:
            created = await client.post("/v1/incidents", headers=COORDINATOR,
                                        json=incident_body(INCIDENT, [GP, LAB], release_policy={
                                            "settle_window_seconds": 0, "amend_on": "never"}))
            assert created.status_code == 201, created.text
            keys = {k["agency_id"]: {"authorization": f"Bearer {k['api_key']}"}
                    for k in created.json()["issued_keys"]}

            async def feed(agency: str, record: dict) -> None:
                fed = await client.post(f"/v1/incidents/{INCIDENT}/feeds", content=ndjson([record]),
                                        headers=keys[agency] | {"content-type": "application/x-ndjson"})
                assert fed.status_code == 202 and fed.json()["accepted"] == 1, fed.text

            await feed(GP[0], held_gp)
            await feed(LAB[0], lab)
            for agency in (GP[0], LAB[0]):
                done = await client.post(f"/v1/incidents/{INCIDENT}/completion",
                                         headers=keys[agency])
                assert done.status_code == 200, done.text

            # One agency's hold on a person another agency also names: the coordinator decides.
            async def hold_conflict():  # noqa: ANN202
                answer = await dedupe_client.get(f"/v1/incidents/{INCIDENT}/reviews",
                                                 headers=COORDINATOR)
                return next((i for i in answer.json() if i["kind"] == "hold_conflict"), None)
            item = await _until(hold_conflict, "the hold conflict")
            assert _mail(smtp) == []  # nothing sent while it is undecided
            decided = await dedupe_client.post(
                f"/v1/incidents/{INCIDENT}/reviews/{item['review_id']}/decision",
                headers=COORDINATOR, json={"decision": "release"})
            assert decided.status_code == 200, decided.text

            async def mails(n: int):  # noqa: ANN202
                found = _mail(smtp)
                return found if len(found) >= n else None
            (first,) = await _until(lambda: mails(1), "the first notice")
            body = _text(first)
            assert LAB[1] in body and GP[1] not in body  # the GP's part is held back
            reference = first["subject"].rsplit("ref ", 1)[1].rstrip(")")

            async def looked_up(held: bool):  # noqa: ANN202
                answer = await dispatch_client.post(
                    f"/v1/incidents/{INCIDENT}/notice-lookups", headers=call_centre,
                    json={"reference": reference, "date_of_birth": AROHA["date_of_birth"]})
                assert answer.status_code == 200, answer.text
                return answer.json() if answer.json()["held"] is held else None
            seen = await _until(lambda: looked_up(True), "the call centre told the person is held")
            assert seen["held_guidance"] and seen["version"] == 1
            assert [a["name"] for a in seen["agencies"]] == [LAB[1]]
            assert [v["version"] for v in seen["versions"]] == [1]
            dedupe_counts = _counts(await dedupe_client.get(f"/v1/incidents/{INCIDENT}/report",
                                                            headers=COORDINATOR))
            assert dedupe_counts["persons.notified.part_held"] == 1
            assert dedupe_counts["persons.notified"] == 1

            # The GP lifts its hold: the GP's part is owed now — an amendment naming the GP.
            await feed(GP[0], affected_record("gp-1", **AROHA))
            (_, amendment) = await _until(lambda: mails(2), "the amendment")
            text = _text(amendment)
            assert GP[1] in text
            seen = await _until(lambda: looked_up(False), "the call centre told the hold ended")
            assert seen["held_guidance"] is None
            assert [v["version"] for v in seen["versions"]] == [1, 2]
            assert len({v["reference"] for v in seen["versions"]}) == 2  # each its own reference
            assert seen["versions"][0]["reference"] == reference
            later = await dispatch_client.post(
                f"/v1/incidents/{INCIDENT}/notice-lookups", headers=call_centre,
                json={"reference": seen["versions"][1]["reference"],
                      "date_of_birth": AROHA["date_of_birth"]})
            assert later.status_code == 200, later.text
            assert sorted(a["name"] for a in later.json()["agencies"]) == sorted([GP[1], LAB[1]])
            assert later.json()["held"] is False
            assert [(s["channel"], GP[1] in s["text"]) for s in later.json()["sent"]] == [
                ("email", True)]

            async def amended_counted():  # noqa: ANN202
                counts = _counts(await dispatch_client.get(f"/v1/incidents/{INCIDENT}/report",
                                                           headers=COORDINATOR))
                return counts if counts.get("deliveries.email.sent", 0) >= 2 else None
            counts = await _until(amended_counted, "both emails counted")
            assert counts["notices.first"] == 1 and counts["notices.amendments"] == 1
            dedupe_counts = _counts(await dedupe_client.get(f"/v1/incidents/{INCIDENT}/report",
                                                            headers=COORDINATOR))
            assert dedupe_counts.get("persons.notified.part_held", 0) == 0
            assert dedupe_counts["persons.notified"] == 1
            await asyncio.sleep(2)  # time for a (wrong) third notice to come through
            assert len(_mail(smtp)) == 2
    finally:
        await smtp.stop()
