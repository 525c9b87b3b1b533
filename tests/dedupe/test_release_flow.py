"""Coordinated release through the real broker and PostgreSQL: one notice per person, held
until every expected agency is complete (or the deadline, or by hand), amendments only when
something new is added, holds, withdrawals."""

from datetime import timedelta

import pytest

from services.common.clock import utcnow
from testkit.messages import completion, incident_message, record_message, withdrawal
from tests.conftest import COORDINATOR_TOKEN
from tests.dedupe.conftest import AROHA, HEMI

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

AGENCIES = {"gp": "Kōwhai Medical Centre", "lab": "Test Community Lab", "hosp": "Test Hospital"}
COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}


async def test_one_notice_per_person_released_when_every_agency_is_complete(dedupe):
    await dedupe.send_incident(incident_message("inc-a", AGENCIES, expected=["gp", "lab"]))
    await dedupe.send(
        record_message(dedupe.sealer, "inc-a", "gp", "gp-1", **AROHA),
        record_message(dedupe.sealer, "inc-a", "gp", "gp-2", **HEMI),
        record_message(dedupe.sealer, "inc-a", "lab", "lab-9", categories=("lab_results",),
                       documents=3, **AROHA),
        completion("inc-a", "gp", 2),
    )
    await dedupe.wait_applied("inc-a", 3)
    progress = await dedupe.progress("inc-a")
    assert progress["released_at"] is None
    assert progress["persons"] == 2 and progress["notified"] == 0
    await dedupe.no_more_notices(0, settle=1.0)

    await dedupe.send(completion("inc-a", "lab", 1))
    notices = await dedupe.notices(2)
    await dedupe.no_more_notices(2)
    by_agencies = {tuple(a.agency_id for a in n.agencies): n for n in notices}
    aroha = by_agencies[("gp", "lab")]
    assert {a.agency_id: a.data_categories for a in aroha.agencies} == {
        "gp": ["clinical_notes"], "lab": ["lab_results"]}
    assert [a.name for a in aroha.agencies] == [AGENCIES["gp"], AGENCIES["lab"]]
    assert dedupe.recipient(aroha).recipient.given_names == "Aroha"
    hemi = by_agencies[("gp",)]
    assert dedupe.recipient(hemi).recipient.given_names == "Hemi"
    assert (await dedupe.progress("inc-a"))["release_reason"] == "complete"


async def test_deadline_releases_without_completion(dedupe):
    deadline = utcnow() + timedelta(seconds=2)
    await dedupe.send_incident(incident_message("inc-d", AGENCIES, expected=["gp", "lab"],
                                                hold_deadline=deadline))
    await dedupe.send(record_message(dedupe.sealer, "inc-d", "gp", "gp-1", **AROHA))
    notices = await dedupe.notices(1, timeout=20)
    assert notices[0].created_at >= deadline
    assert (await dedupe.progress("inc-d"))["release_reason"] == "deadline"


async def test_coordinator_can_release_by_hand(dedupe):
    await dedupe.send_incident(incident_message("inc-m", AGENCIES, expected=["gp", "lab"]))
    await dedupe.send(record_message(dedupe.sealer, "inc-m", "gp", "gp-1", **AROHA))
    await dedupe.wait_applied("inc-m", 1)
    response = await dedupe.client.post("/v1/incidents/inc-m/release", headers=COORDINATOR)
    assert response.status_code == 200, response.text
    await dedupe.notices(1)
    assert (await dedupe.progress("inc-m"))["release_reason"] == "manual"


async def test_amendment_only_when_a_record_adds_an_agency_or_category(dedupe):
    await dedupe.send_incident(incident_message("inc-x", AGENCIES, expected=["gp"]))
    await dedupe.send(record_message(dedupe.sealer, "inc-x", "gp", "gp-1", **AROHA),
                      completion("inc-x", "gp", 1))
    first = (await dedupe.notices(1))[0]
    assert first.version == 1

    # Same agency, same category, another document: nothing new to tell.
    await dedupe.send(record_message(dedupe.sealer, "inc-x", "gp", "gp-1b", **AROHA))
    await dedupe.wait_applied("inc-x", 2)
    await dedupe.no_more_notices(1)

    # A new agency: an amendment naming both, to the same person id.
    await dedupe.send(record_message(dedupe.sealer, "inc-x", "hosp", "h-7",
                                     categories=("discharge_summaries",), **AROHA))
    notices = await dedupe.notices(2)
    amendment = notices[1]
    assert (amendment.version, amendment.person_id) == (2, first.person_id)
    assert [a.agency_id for a in amendment.agencies] == ["gp", "hosp"]
    await dedupe.no_more_notices(2)


async def test_a_held_person_gets_nothing_until_the_hold_is_lifted(dedupe):
    await dedupe.send_incident(incident_message("inc-h", AGENCIES, expected=["gp"]))
    hold = {"reason": "health_prejudice", "note": None, "representative": None}
    await dedupe.send(
        record_message(dedupe.sealer, "inc-h", "gp", "gp-1", hold=hold, **AROHA),
        record_message(dedupe.sealer, "inc-h", "gp", "gp-2", **HEMI),
        completion("inc-h", "gp", 2),
    )
    notices = await dedupe.notices(1)
    assert dedupe.recipient(notices[0]).recipient.given_names == "Hemi"
    await dedupe.no_more_notices(1)
    assert (await dedupe.progress("inc-h"))["on_hold"] == 1

    await dedupe.send(record_message(dedupe.sealer, "inc-h", "gp", "gp-1", version=2, **AROHA))
    notices = await dedupe.notices(2)
    assert dedupe.recipient(notices[1]).recipient.given_names == "Aroha"


async def test_withdrawn_records_before_release(dedupe):
    await dedupe.send_incident(incident_message("inc-w", AGENCIES, expected=["gp", "lab"]))
    await dedupe.send(
        record_message(dedupe.sealer, "inc-w", "gp", "gp-1", **AROHA),
        record_message(dedupe.sealer, "inc-w", "lab", "lab-1", **AROHA),
        record_message(dedupe.sealer, "inc-w", "gp", "gp-2", **HEMI),
        withdrawal("inc-w", "lab", "lab-1"),   # Aroha keeps only the GP's record
        withdrawal("inc-w", "gp", "gp-2"),     # Hemi has nothing left: no notice
        completion("inc-w", "gp", 1),
        completion("inc-w", "lab", 0),
    )
    notices = await dedupe.notices(1)
    await dedupe.no_more_notices(1)
    assert [a.agency_id for a in notices[0].agencies] == ["gp"]
    assert dedupe.recipient(notices[0]).recipient.given_names == "Aroha"
