"""Withdraw, re-send, replay (issue 10, item 2): an agency withdraws a record and sends it
again; dedupe then replays the partition from offset 0 (a rewound group, as after a crash,
a rebalance or an outbox republish). The withdrawal must not be applied again over the
re-sent version: the person is notified exactly once, with the re-sent data.

Through the real intake (its own withdrawal and versions), broker and PostgreSQL."""

import pytest

from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit.factories import affected_record, incident_body, ndjson, synthetic_person
from testkit.infra import WAIT_S, topic_reader
from tests.conftest import COORDINATOR_TOKEN, running
from tests.dedupe.conftest import rewind_group, tally, wait_caught_up

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
PERSONS = 6  # each with one GP record; persons 0-2 are withdrawn and re-sent


def _record(i: int, email: str | None = None) -> dict:
    person = synthetic_person(i)
    return affected_record(f"gp-{i}", **{**person, "email": email or person["email"]})


async def test_a_replay_from_offset_0_keeps_the_resent_version(
        service_env, pg_database, kafka_bootstrap, topic_prefix):
    dedupe_settings = DedupeSettings(**service_env, database_url=pg_database("dedupe"),
                                     release_tick_s=0.2)
    intake = create_intake(IntakeSettings(**service_env, database_url=pg_database("intake")))
    records_topic = f"{topic_prefix}affected-records.v1"
    partitions = dedupe_settings.topic_partitions
    # The re-sent versions carry a new email: the notice must go there.
    resent = {i: f"resent{i}@example.nz" for i in range(3)}

    async with running(intake) as client:
        created = await client.post("/v1/incidents", headers=COORDINATOR,
                                    json=incident_body("inc-wr", [("gp", "Test GP")]))
        assert created.status_code == 201, created.text
        agency = {"authorization": f"Bearer {created.json()['issued_keys'][0]['api_key']}"}
        feed = {**agency, "content-type": "application/x-ndjson"}

        async with running(create_dedupe(dedupe_settings)) as dedupe:
            response = await client.post("/v1/incidents/inc-wr/feeds", headers=feed,
                                         content=ndjson([_record(i) for i in range(PERSONS)]))
            assert response.status_code == 202, response.text
            for i in resent:
                gone = await client.delete(f"/v1/incidents/inc-wr/records/gp-{i}", headers=agency)
                assert gone.status_code == 200, gone.text
            response = await client.post("/v1/incidents/inc-wr/feeds", headers=feed, content=ndjson(
                [_record(i, email) for i, email in resent.items()]))
            assert response.json()["accepted"] == 3, response.text
            worker = dedupe._transport.app.state.runtime.workers[1]
            await wait_caught_up(worker, records_topic, partitions)

        # Replay everything from offset 0 into the same database, then complete: release.
        await rewind_group(kafka_bootstrap, dedupe_settings.consumer_group(
            "dedupe.affected-records"), records_topic, partitions)
        async with running(create_dedupe(dedupe_settings)) as dedupe:
            worker = dedupe._transport.app.state.runtime.workers[1]
            await wait_caught_up(worker, records_topic, partitions)
            done = await client.post("/v1/incidents/inc-wr/completion", headers=agency)
            assert done.json()["record_count"] == PERSONS, done.text
            async with topic_reader(kafka_bootstrap, f"{topic_prefix}notices.v1") as reader:
                await reader.wait_for(lambda m: len(m) >= PERSONS, timeout=WAIT_S)
                messages = await reader.drain(quiet_s=2.0)

    from services.common.messages import decode_notice
    from testkit.keys import service_vault
    sealer = service_vault(dedupe_settings)  # the notices are sealed with the incident's data key
    expected = [resent.get(i, synthetic_person(i)["email"]) for i in range(PERSONS)]
    result = tally(sealer, [decode_notice(m.value) for m in messages], expected)
    assert (result.never, result.twice, result.unexpected) == (set(), set(), set())
    assert result.once == set(expected)
