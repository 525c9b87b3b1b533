"""The review queue: uncertain pairs are kept apart, listed with their evidence (levels and
weights, no values), and the coordinator's decision takes effect — before release it shapes
the first notice, after release it produces the right amendment."""

import asyncio

import pytest

from testkit.messages import completion, incident_message, record_message
from tests.conftest import COORDINATOR_TOKEN

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
J_TIPENE = {"given_names": "J", "family_name": "Tipene", "date_of_birth": "1988-08-08",
            "email": "j.tipene@example.nz"}
JOSEPH_TIPENE = {"given_names": "Joseph", "family_name": "Tipene", "date_of_birth": "1988-08-08",
                 "mobile": "+64219876543"}


async def _open_review(dedupe, incident_id: str) -> dict:
    async with asyncio.timeout(20):
        while True:
            response = await dedupe.client.get(f"/v1/incidents/{incident_id}/reviews",
                                               headers=COORDINATOR)
            assert response.status_code == 200, response.text
            if response.json():
                (item,) = response.json()
                return item
            await asyncio.sleep(0.2)


async def _send_pair(dedupe, incident_id: str) -> None:
    await dedupe.send_incident(incident_message(incident_id, {"gp": "Test GP", "lab": "Test Lab"},
                                                expected=["gp", "lab"]))
    await dedupe.send(
        record_message(dedupe.sealer, incident_id, "gp", "gp-1", **J_TIPENE),
        record_message(dedupe.sealer, incident_id, "lab", "lab-1", categories=("lab_results",),
                       **JOSEPH_TIPENE),
    )


async def _decide(dedupe, incident_id: str, review_id: str, decision: str) -> None:
    response = await dedupe.client.post(
        f"/v1/incidents/{incident_id}/reviews/{review_id}/decision", headers=COORDINATOR,
        json={"decision": decision})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == decision


async def test_uncertain_pair_is_listed_with_evidence_and_merged_before_release(dedupe):
    await _send_pair(dedupe, "inc-r1")
    item = await _open_review(dedupe, "inc-r1")
    assert item["reason"] == "uncertain"
    assert {c["field"] for c in item["evidence"]["comparisons"]} >= {"given", "family", "dob"}
    assert "Tipene" not in str(item) and "1988" not in str(item)
    assert (await dedupe.progress("inc-r1"))["persons"] == 2

    await _decide(dedupe, "inc-r1", item["review_id"], "merge")
    async with asyncio.timeout(20):
        while (await dedupe.progress("inc-r1"))["persons"] != 1:
            await asyncio.sleep(0.2)

    await dedupe.send(completion("inc-r1", "gp", 1), completion("inc-r1", "lab", 1))
    (notice,) = await dedupe.no_more_notices(1, settle=4)
    assert [a.agency_id for a in notice.agencies] == ["gp", "lab"]


async def test_keep_apart_gives_two_notices(dedupe):
    await _send_pair(dedupe, "inc-r2")
    item = await _open_review(dedupe, "inc-r2")
    await _decide(dedupe, "inc-r2", item["review_id"], "keep_apart")
    await dedupe.send(completion("inc-r2", "gp", 1), completion("inc-r2", "lab", 1))
    notices = await dedupe.notices(2)
    assert sorted(n.agencies[0].agency_id for n in notices) == ["gp", "lab"]
    await dedupe.no_more_notices(2)


async def test_merge_after_release_sends_one_amendment(dedupe):
    await _send_pair(dedupe, "inc-r3")
    item = await _open_review(dedupe, "inc-r3")
    await dedupe.send(completion("inc-r3", "gp", 1), completion("inc-r3", "lab", 1))
    first_two = await dedupe.notices(2)

    await _decide(dedupe, "inc-r3", item["review_id"], "merge")
    notices = await dedupe.notices(3)
    amendment = notices[2]
    assert amendment.version == 2
    assert amendment.person_id in {n.person_id for n in first_two}
    assert [a.agency_id for a in amendment.agencies] == ["gp", "lab"]
    await dedupe.no_more_notices(3)


def _metric(text: str, name: str, labels: str = "") -> float:
    import re

    found = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_open_reviews_and_released_notices_are_on_metrics(dedupe):
    before = (await dedupe.client.get("/metrics")).text
    await _send_pair(dedupe, "inc-r9")
    item = await _open_review(dedupe, "inc-r9")
    during = (await dedupe.client.get("/metrics")).text
    # Counted in the database at the scrape: this module's other incidents may hold some too.
    assert _metric(during, "panui_dedupe_review_items_open") >= 1
    await _decide(dedupe, "inc-r9", item["review_id"], "keep_apart")
    await dedupe.send(completion("inc-r9", "gp", 1), completion("inc-r9", "lab", 1))
    await dedupe.notices(2)
    after = (await dedupe.client.get("/metrics")).text
    first = '{kind="first"}'
    assert (_metric(after, "panui_dedupe_notices_released_total", first)
            - _metric(before, "panui_dedupe_notices_released_total", first)) >= 2
    assert _metric(after, "panui_dedupe_review_items_open") < _metric(during, "panui_dedupe_review_items_open")
