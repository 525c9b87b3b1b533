"""Issue 18 through the real broker and PostgreSQL: agencies that contradict each other about
one person go to a coordinator instead of last-writer-wins. Two agencies give Aroha different
mobiles: her notice goes by email (uncontested) and a contact_conflict item says why (ids,
agencies, field — no values); the coordinator confirms the lab's mobile and an amendment goes
to it. One agency holds Hemi (s 116), the other does not: he is held, a hold_conflict item
shows it, and the coordinator's release sends the notice about the other agency's records."""

import asyncio

import pytest

from testkit.messages import completion, incident_message, record_message
from tests.conftest import COORDINATOR_TOKEN
from tests.dedupe.conftest import AROHA, HEMI

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
LAB_MOBILE = "+64229998888"


async def _open_items(dedupe, incident_id: str, count: int) -> list[dict]:
    async with asyncio.timeout(30):
        while True:
            response = await dedupe.client.get(f"/v1/incidents/{incident_id}/reviews",
                                               headers=COORDINATOR)
            assert response.status_code == 200, response.text
            if len(response.json()) >= count:
                return response.json()
            await asyncio.sleep(0.2)


async def test_contested_mobile_goes_by_email_until_confirmed_and_a_one_sided_hold_is_shown(dedupe):
    inc = "inc-cc1"
    await dedupe.send_incident(incident_message(inc, {"gp": "Test GP", "lab": "Test Lab"},
                                                expected=["gp", "lab"]))
    await dedupe.send(
        record_message(dedupe.sealer, inc, "gp", "gp-1", **AROHA),
        record_message(dedupe.sealer, inc, "lab", "lab-1", categories=("lab_results",),
                       **{**AROHA, "mobile": LAB_MOBILE}),
        record_message(dedupe.sealer, inc, "gp", "gp-2", hold={"reason": "health_prejudice"},
                       **HEMI),
        record_message(dedupe.sealer, inc, "lab", "lab-2", categories=("lab_results",), **HEMI),
        completion(inc, "gp", 2), completion(inc, "lab", 2),
    )
    (first,) = await dedupe.notices(1)
    assert first.version == 1 and first.channels == ["email"]
    recipient = dedupe.recipient(first).recipient
    assert recipient.email == AROHA["email"] and recipient.mobile is None

    items = {i["kind"]: i for i in await _open_items(dedupe, inc, 2)}
    contact, hold = items["contact_conflict"], items["hold_conflict"]
    assert contact["reason"] == "mobile_differs" and contact["status"] == "open"
    assert contact["evidence"]["agencies"] == ["gp", "lab"]
    assert contact["evidence"]["fallback"] == ["email"]
    assert sorted((r["agency_id"], r["source_record_id"], r["group"])
                  for r in contact["evidence"]["records"]) == [("gp", "gp-1", 1),
                                                               ("lab", "lab-1", 2)]
    assert hold["reason"] == "hold_not_shared"
    assert hold["evidence"]["holding_agencies"] == ["gp"]
    assert hold["evidence"]["other_agencies"] == ["lab"]
    for value in (AROHA["mobile"], LAB_MOBILE, AROHA["email"], HEMI["mobile"], "Aroha", "Hemi"):
        assert value not in str(items)
    progress = await dedupe.progress(inc)
    assert (progress["contact_conflicts"], progress["hold_conflicts"], progress["on_hold"],
            progress["held_for_contact"], progress["notified"]) == (1, 1, 1, 0, 1)

    # A decision that does not fit the item is refused, and changes nothing.
    wrong = await dedupe.client.post(
        f"/v1/incidents/{inc}/reviews/{contact['review_id']}/decision", headers=COORDINATOR,
        json={"decision": "merge"})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == \
        "review.decision_not_applicable"

    confirmed = await dedupe.client.post(
        f"/v1/incidents/{inc}/reviews/{contact['review_id']}/decision", headers=COORDINATOR,
        json={"decision": "use_contact", "record": ["lab", "lab-1"]})
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["status"], confirmed.json()["chosen"]) == ("use_contact",
                                                                         ["lab", "lab-1"])
    notices = await dedupe.notices(2)
    amendment = notices[1]
    assert (amendment.person_id, amendment.version) == (first.person_id, 2)
    assert amendment.channels == ["email", "sms"]
    assert dedupe.recipient(amendment).recipient.mobile == LAB_MOBILE

    released = await dedupe.client.post(
        f"/v1/incidents/{inc}/reviews/{hold['review_id']}/decision", headers=COORDINATOR,
        json={"decision": "release"})
    assert released.status_code == 200, released.text
    notices = await dedupe.notices(3)
    hemi = notices[2]
    assert hemi.version == 1 and [a.agency_id for a in hemi.agencies] == ["lab"]
    assert [a.data_categories for a in hemi.agencies] == [["lab_results"]]
    await dedupe.no_more_notices(3)

    audit = await dedupe.client.get("/v1/audit", headers=COORDINATOR)
    assert audit.status_code == 200, audit.text
    acts = [(e["action"], e["object_ids"]) for e in audit.json()["entries"]]
    assert ("review.decide", [contact["review_id"], "use_contact", "lab", "lab-1"]) in acts
    assert ("review.decide", [hold["review_id"], "release"]) in acts


async def test_a_released_hold_conflict_is_announced_and_its_lifting_amends_with_the_agency(
        dedupe):
    """The GP holds Hemi's record (s 116), the lab does not; the coordinator releases the
    lab's part. On notices.v1: the notice naming the lab only, then a notice-hold (held: the
    call centre must not say that was everything). The GP lifts its hold (a new version
    without it): an amendment naming the GP — in an incident that sends no amendments
    otherwise (amend_on "never"): s 116 delayed the GP's notice, it did not excuse it — and
    the hold's end, so the call centre sees him no longer held."""
    from services.common.messages import NoticeHoldMessage, NoticeMessage

    inc = "inc-cc2"
    await dedupe.send_incident(incident_message(inc, {"gp": "Test GP", "lab": "Test Lab"},
                                                expected=["gp", "lab"], amend_on="never"))
    await dedupe.send(
        record_message(dedupe.sealer, inc, "gp", "gp-2", hold={"reason": "health_prejudice"},
                       **HEMI),
        record_message(dedupe.sealer, inc, "lab", "lab-2", categories=("lab_results",), **HEMI),
        completion(inc, "gp", 1), completion(inc, "lab", 1),
    )
    (hold,) = [i for i in await _open_items(dedupe, inc, 1) if i["kind"] == "hold_conflict"]
    released = await dedupe.client.post(
        f"/v1/incidents/{inc}/reviews/{hold['review_id']}/decision", headers=COORDINATOR,
        json={"decision": "release"})
    assert released.status_code == 200, released.text
    first, held = await dedupe.topic(2)
    assert isinstance(first, NoticeMessage) and first.version == 1
    assert [a.agency_id for a in first.agencies] == ["lab"]
    assert isinstance(held, NoticeHoldMessage)
    assert (held.person_id, held.held) == (first.person_id, True)
    assert "ground" not in held.model_dump() and "health" not in held.model_dump_json()
    progress = await dedupe.progress(inc)
    assert (progress["notified"], progress["on_hold"]) == (1, 0)

    await dedupe.send(record_message(dedupe.sealer, inc, "gp", "gp-2", version=2, **HEMI))
    messages = await dedupe.topic(4)
    amendment, lifted = messages[2:4]
    assert isinstance(amendment, NoticeMessage)
    assert (amendment.person_id, amendment.version) == (first.person_id, 2)
    assert [a.agency_id for a in amendment.agencies] == ["gp", "lab"]
    assert isinstance(lifted, NoticeHoldMessage)
    assert (lifted.person_id, lifted.held) == (first.person_id, False)
    await dedupe.no_more_notices(2)
    progress = await dedupe.progress(inc)
    assert (progress["notified"], progress["on_hold"], progress["hold_conflicts"]) == (1, 0, 0)
