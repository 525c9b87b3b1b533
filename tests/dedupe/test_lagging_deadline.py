"""Deadline while lagging (issue 10, item 4): dedupe starts late, behind a backlog of records
all accepted before the incident's hold deadline, and the deadline has passed on the wall
clock. The deadline is judged by the records' time, so the release happens once, after the
backlog is applied — every person's one notice names both agencies, no amendments — and
not on the first batch's partial data. Real broker and PostgreSQL."""

import asyncio
from datetime import timedelta

import pytest

from services.common.clock import utcnow
from services.common.crypto import Sealer
from services.common.messages import decode_notice
from services.dedupe.app import create_app
from services.dedupe.settings import DedupeSettings
from testkit.factories import synthetic_person
from testkit.infra import topic_reader
from testkit.keys import service_vault
from testkit.messages import incident_message, publish, record_message
from tests.conftest import running
from tests.dedupe.conftest import tally

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

PERSONS = 150
AGENCIES = {"gp": "Test GP", "lab": "Test Lab"}


async def test_a_late_consumer_releases_once_after_the_backlog(service_env, pg_database,
                                                               kafka_bootstrap, topic_prefix):
    settings = DedupeSettings(**service_env, database_url=pg_database("dedupe"),
                              release_tick_s=0.05, consumer_batch_max_records=10)
    sealer = Sealer(settings.data_keys.get_secret_value())
    async with running(create_app(settings)):  # creates the topics
        pass
    # The GP's records first, the lab's after them: a release on partial data would tell
    # people about the GP only, then amend.
    backlog = [record_message(sealer, "inc-late", "gp", f"gp-{i}", **synthetic_person(i))
               for i in range(PERSONS)]
    backlog += [record_message(sealer, "inc-late", "lab", f"lab-{i}", categories=("lab_results",),
                               **synthetic_person(i)) for i in range(PERSONS)]
    deadline = utcnow() + timedelta(seconds=1)  # after every record was accepted
    await publish(kafka_bootstrap, f"{topic_prefix}incidents.v1", [incident_message(
        "inc-late", AGENCIES, ["gp", "lab"], hold_deadline=deadline)])
    await publish(kafka_bootstrap, f"{topic_prefix}affected-records.v1", backlog)
    await asyncio.sleep(max((deadline - utcnow()).total_seconds(), 0) + 0.5)

    async with running(create_app(settings)):  # dedupe starts late, deadline past
        async with topic_reader(kafka_bootstrap, f"{topic_prefix}notices.v1") as reader:
            await reader.wait_for(lambda m: len(m) >= PERSONS, timeout=90)
            messages = await reader.drain(quiet_s=2.0)

    notices = [decode_notice(m.value) for m in messages]
    result = tally(service_vault(settings), notices, [synthetic_person(i)["email"] for i in range(PERSONS)])
    assert (result.never, result.twice, result.unexpected) == (set(), set(), set())
    assert {n.version for n in notices} == {1}, "amendments: released on partial data"
    assert {tuple(a.agency_id for a in n.agencies) for n in notices} == {("gp", "lab")}
