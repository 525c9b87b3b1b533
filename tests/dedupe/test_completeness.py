"""Missing records (issue 10, item 5): an agency's completion counts its records (live and
withdrawn); dedupe holds the release until it has seen as many, surfaces the shortfall
(progress API, a metric, a log line of counts only) and, if they never come, releases at the
hold deadline with the reason recorded. Real broker and PostgreSQL."""

import asyncio
import logging
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from services.common.clock import utcnow
from testkit.factories import synthetic_person
from testkit.messages import completion, incident_message, record_message, withdrawal
from tests.conftest import COORDINATOR_TOKEN
from tests.dedupe.conftest import tally

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

AGENCIES = {"gp": "Test GP"}
COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}


def _records(dedupe, incident_id: str, numbers) -> list:  # noqa: ANN001
    return [record_message(dedupe.sealer, incident_id, "gp", f"gp-{i}", **synthetic_person(i))
            for i in numbers]


async def _wait_missing(dedupe, incident_id: str, count: int) -> dict:  # noqa: ANN001
    async with asyncio.timeout(20):
        while True:
            response = await dedupe.client.get(f"/v1/incidents/{incident_id}/progress",
                                               headers=COORDINATOR)
            if response.status_code == 200 and response.json()["records_missing"] == count:
                return response.json()
            await asyncio.sleep(0.1)


async def test_a_lost_record_holds_the_release_until_the_deadline(dedupe, caplog):
    deadline = utcnow() + timedelta(seconds=4)
    await dedupe.send_incident(incident_message("inc-lost", AGENCIES, ["gp"],
                                                hold_deadline=deadline))
    # The GP sent four records and withdrew one; the message of record 3 was lost.
    with caplog.at_level(logging.WARNING, logger="services.dedupe.pipeline"):
        await dedupe.send(*_records(dedupe, "inc-lost", [0, 1, 2, 4]),
                          withdrawal("inc-lost", "gp", "gp-4"),
                          completion("inc-lost", "gp", 4, withdrawn=1))
        progress = await _wait_missing(dedupe, "inc-lost", 1)
    assert progress["released_at"] is None
    assert [(a["complete"], a["missing"]) for a in progress["agencies"]] == [(True, 1)]
    assert REGISTRY.get_sample_value("panui_dedupe_records_missing") >= 1
    (line,) = [r for r in caplog.records if r.getMessage().startswith("records missing")]
    assert (line.incident_id, line.agency_id, line.count) == ("inc-lost", "gp", 1)
    await dedupe.no_more_notices(0, settle=1.0)

    notices = await dedupe.notices(3, timeout=20)  # at the deadline: released, reason kept
    assert all(n.created_at >= deadline for n in notices)
    progress = await dedupe.progress("inc-lost")
    assert (progress["release_reason"], progress["records_missing"]) == ("deadline-missing", 1)
    result = tally(dedupe.opener, await dedupe.no_more_notices(3, settle=1.0),
                   [synthetic_person(i)["email"] for i in range(3)])
    assert result.once == result.expected and not (result.twice or result.unexpected)


async def test_a_record_arriving_after_its_completion_completes_the_agency(dedupe):
    await dedupe.send_incident(incident_message("inc-late", AGENCIES, ["gp"]))
    await dedupe.send(*_records(dedupe, "inc-late", [0, 1]), completion("inc-late", "gp", 3))
    await _wait_missing(dedupe, "inc-late", 1)
    await dedupe.no_more_notices(0, settle=1.0)

    await dedupe.send(*_records(dedupe, "inc-late", [2]))  # published out of order, not lost
    await dedupe.notices(3)
    progress = await dedupe.progress("inc-late")
    assert (progress["release_reason"], progress["records_missing"]) == ("complete", 0)
    await dedupe.no_more_notices(3)
