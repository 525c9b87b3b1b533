"""Issue 16's retractions through the real broker and PostgreSQL: records withdrawn after a
notice told the person about them open one retraction item for a coordinator instead of
disappearing silently. The lab withdraws Aroha's record after her notice named it (an agency
named wrongly); the GP withdraws Hemi's only record after his notice (sent in error); Mere's
record is withdrawn before the release (nothing to retract). The coordinator sends Aroha a
correction notice and takes no action for Hemi; a reviewer may not decide either; replays
open nothing more and make no second notice."""

import asyncio

import pytest

from testkit.messages import completion, incident_message, record_message, withdrawal
from testkit.staff import SIGNING_KEY, token
from tests.conftest import COORDINATOR_TOKEN
from tests.dedupe.conftest import AROHA, HEMI

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
MERE = {"nhi": "ZZZ0024", "given_names": "Mere", "family_name": "Tauira",
        "date_of_birth": "1990-07-21", "email": "mere.tauira@example.nz"}


async def _retractions(dedupe, incident_id: str, count: int, status: str = "open") -> list[dict]:
    async with asyncio.timeout(30):
        while True:
            response = await dedupe.client.get(f"/v1/incidents/{incident_id}/reviews",
                                               params={"status": status}, headers=COORDINATOR)
            assert response.status_code == 200, response.text
            found = [i for i in response.json() if i["kind"] == "retraction"]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.2)


@pytest.fixture
def service_env(service_env):  # noqa: ANN001, ANN201 - named staff tokens verify here too
    return {**service_env, "token_signing_key": SIGNING_KEY}


async def test_withdrawn_after_notice_asks_the_coordinator_once_and_corrects_on_decision(dedupe):
    inc = "inc-rt1"
    await dedupe.send_incident(incident_message(inc, {"gp": "Test GP", "lab": "Test Lab"},
                                                expected=["gp", "lab"]))
    await dedupe.send(
        record_message(dedupe.sealer, inc, "gp", "gp-1", **AROHA),
        record_message(dedupe.sealer, inc, "lab", "lab-1", categories=("lab_results",), **AROHA),
        record_message(dedupe.sealer, inc, "gp", "gp-2", **HEMI),
        record_message(dedupe.sealer, inc, "gp", "gp-3", **MERE),
        withdrawal(inc, "gp", "gp-3"),  # before any notice: nothing to retract
        completion(inc, "gp", 2, withdrawn=1), completion(inc, "lab", 1),
    )
    notices = await dedupe.notices(2)
    aroha = next(n for n in notices if dedupe.recipient(n).recipient.email == AROHA["email"])
    hemi = next(n for n in notices if n is not aroha)
    assert [a.agency_id for a in aroha.agencies] == ["gp", "lab"]
    await dedupe.send(withdrawal(inc, "lab", "lab-1"), withdrawal(inc, "gp", "gp-2"),
                      withdrawal(inc, "lab", "lab-1"))  # the last: a replay

    items = {i["reason"]: i for i in await _retractions(dedupe, inc, 2)}
    assert sorted(items) == ["agency_withdrawn", "all_withdrawn"]
    named, in_error = items["agency_withdrawn"], items["all_withdrawn"]
    assert named["evidence"]["notice_person_id"] == aroha.person_id
    assert (named["evidence"]["withdrawn_agencies"], named["evidence"]["standing_agencies"],
            named["evidence"]["correction"]) == (["lab"], ["gp"], "agency_not_involved")
    assert named["evidence"]["withdrawn_records"] == [{"agency_id": "lab",
                                                       "source_record_id": "lab-1"}]
    assert in_error["evidence"]["notice_person_id"] == hemi.person_id
    assert (in_error["evidence"]["withdrawn_agencies"], in_error["evidence"]["standing_agencies"],
            in_error["evidence"]["correction"]) == (["gp"], [], "sent_in_error")
    for value in (AROHA["email"], HEMI["mobile"], "Aroha", "Hemi", "Mere", MERE["nhi"]):
        assert value not in str(items)
    assert (await dedupe.progress(inc))["retractions"] == 2

    # A reviewer (and any role but coordinator) may not decide: refused, nothing recorded.
    reviewer = {"authorization": f"Bearer {token(['reviewer'], [inc], name='rita')[0]}"}
    refused = await dedupe.client.post(
        f"/v1/incidents/{inc}/reviews/{named['review_id']}/decision", headers=reviewer,
        json={"decision": "send_correction"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "auth.forbidden")
    ops = {"authorization": f"Bearer {token(['ops'], name='oscar')[0]}"}
    assert (await dedupe.client.post(
        f"/v1/incidents/{inc}/reviews/{named['review_id']}/decision", headers=ops,
        json={"decision": "no_action"})).json()["error"]["code"] == "auth.forbidden"
    wrong = await dedupe.client.post(
        f"/v1/incidents/{inc}/reviews/{named['review_id']}/decision", headers=COORDINATOR,
        json={"decision": "merge"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (
        422, "review.decision_not_applicable")

    decided = await dedupe.client.post(
        f"/v1/incidents/{inc}/reviews/{named['review_id']}/decision", headers=COORDINATOR,
        json={"decision": "send_correction"})
    assert decided.status_code == 200, decided.text
    none = await dedupe.client.post(
        f"/v1/incidents/{inc}/reviews/{in_error['review_id']}/decision", headers=COORDINATOR,
        json={"decision": "no_action"})
    assert none.status_code == 200, none.text
    (correction,) = (await dedupe.notices(3))[2:]
    assert (correction.person_id, correction.version) == (aroha.person_id, 2)
    assert correction.correction.kind == "agency_not_involved"
    assert [a.agency_id for a in correction.correction.agencies] == ["lab"]
    assert [a.data_categories for a in correction.correction.agencies] == [["lab_results"]]
    assert [a.agency_id for a in correction.agencies] == ["gp"]
    assert dedupe.recipient(correction).recipient.email == AROHA["email"]
    # Decided once: a correction cannot be unsent, so neither decision changes after.
    again = await dedupe.client.post(
        f"/v1/incidents/{inc}/reviews/{in_error['review_id']}/decision", headers=COORDINATOR,
        json={"decision": "send_correction"})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "review.already_decided")

    # Replays of every withdrawal open nothing more and send nothing more.
    await dedupe.send(withdrawal(inc, "lab", "lab-1"), withdrawal(inc, "gp", "gp-2"),
                      withdrawal(inc, "gp", "gp-3"))
    await dedupe.no_more_notices(3)
    every = await _retractions(dedupe, inc, 2, status="all")
    assert sorted((i["reason"], i["status"], i["correction_notice_id"]) for i in every) == [
        ("agency_withdrawn", "send_correction", correction.notice_id),
        ("all_withdrawn", "no_action", None)]
    assert (await dedupe.progress(inc))["retractions"] == 0

    audit = await dedupe.client.get("/v1/audit", headers=COORDINATOR)
    acts = [(e["actor"], e["action"], e["object_ids"]) for e in audit.json()["entries"]]
    assert acts == [("configured", "review.decide", [named["review_id"], "send_correction"]),
                    ("configured", "review.decide", [in_error["review_id"], "no_action"])]
    report = await dedupe.client.get(f"/v1/incidents/{inc}/report", headers=COORDINATOR)
    counts = {(c["agency_id"], c["measure"]): c["value"] for c in report.json()["counts"]}
    assert counts[(None, "retractions.send_correction")] == 1
    assert counts[(None, "retractions.no_action")] == 1
    assert counts[(None, "notices.corrections.agency_not_involved")] == 1
    assert counts[(None, "notices.first")] == 2
