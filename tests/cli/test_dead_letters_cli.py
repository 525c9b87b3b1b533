"""`panui dead-letters list|replay` against the real broker and a real dedupe: a record sealed
with a data key dedupe does not have yet is dead-lettered; ops list it (table and JSON, no
personal values); the incident's release waits for the missing record; after the fix (dedupe
restarted with the key) a replay re-drives it and every person is notified once; a second replay
is a no-op."""

import asyncio
import json

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from services.common.crypto import Sealer, generate_key_spec
from services.common.messages import decode_notice
from services.dedupe.app import create_app
from services.dedupe.settings import DedupeSettings
from testkit.deadletters import dead_letters
from testkit.factories import synthetic_person
from testkit.infra import TopicReader
from testkit.messages import completion, incident_message, publish, record_message
from tests.conftest import running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

runner = CliRunner()
INCIDENT = "inc-cli"


async def panui(*args: str):  # noqa: ANN201
    """Run the command in a thread: it runs its own event loop, as from a shell."""
    return await asyncio.to_thread(runner.invoke, app, ["dead-letters", *args])


async def _notices(reader: TopicReader, count: int) -> list:
    await reader.wait_for(lambda m: len(m) >= count, timeout=60)
    await asyncio.sleep(1.5)
    return [decode_notice(m.value) for m in await reader.drain()]


async def test_list_then_replay_after_the_fix(service_env, pg_database, kafka_bootstrap, data_keys):
    new_key = generate_key_spec("rotated")  # intake got it first; dedupe not yet
    database_url = pg_database("dedupe")
    common = {**service_env, "database_url": database_url, "release_tick_s": 0.2,
              "consumer_retry_backoff_s": 0.02, "consumer_retry_backoff_max_s": 0.1}
    before_fix = DedupeSettings(**common)
    after_fix = DedupeSettings(**{**common, "data_keys": f"{data_keys},{new_key}"})
    prefix = before_fix.topic_prefix
    cli = ["--bootstrap", kafka_bootstrap, "--prefix", prefix]
    sealer, rotated = Sealer(data_keys), Sealer(new_key)
    person = synthetic_person(7)

    reader = TopicReader(kafka_bootstrap, f"{prefix}notices.v1")
    async with running(create_app(before_fix)):
        await publish(kafka_bootstrap, f"{prefix}incidents.v1",
                      [incident_message(INCIDENT, {"gp": "Test GP"}, ["gp"])])
        await publish(kafka_bootstrap, f"{prefix}affected-records.v1", [
            *[record_message(sealer, INCIDENT, "gp", f"gp-{i}", **synthetic_person(i))
              for i in range(5)],
            record_message(rotated, INCIDENT, "gp", "gp-rotated", **person),
            completion(INCIDENT, "gp", 6)])
        await reader.start()
        [letter] = await dead_letters(kafka_bootstrap, prefix, 1)
        # The completion counts 6 records and dedupe could read 5: the shortfall holds the
        # release (no deadline set) instead of notifying five and forgetting the sixth.
        await asyncio.sleep(3)
        assert await reader.drain() == []

    listed = await panui("list", *cli, "--json")
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.stdout)
    origin = letter["origin"]
    assert entry["id"] == f"{origin['topic']}:{origin['partition']}:{origin['offset']}"
    assert (entry["status"], entry["reason"], entry["error_type"]) == ("pending", "apply-failed",
                                                                       "SealError")
    assert entry["groups"] == [before_fix.consumer_group("dedupe.affected-records")]
    table = await panui("list", *cli, "--reason", "apply-failed")
    assert table.exit_code == 0 and entry["id"] in table.stdout and "apply-failed" in table.stdout
    assert json.loads((await panui("list", *cli, "--json", "--reason", "undecodable")).stdout) == []
    for output in (listed.stdout, table.stdout):
        assert not [v for v in person.values() if v in output], "a personal value is listed"

    try:
        async with running(create_app(after_fix)):
            dry = await panui("replay", *cli, "--all", "--dry-run", "--json")
            assert [r["outcome"] for r in json.loads(dry.stdout)] == ["would-replay"]
            replayed = await panui("replay", *cli, entry["id"], "--json")
            assert replayed.exit_code == 0, replayed.output
            assert [r["outcome"] for r in json.loads(replayed.stdout)] == ["replayed"]
            notices = await _notices(reader, 6)
            again = await panui("replay", *cli, "--all", "--json")
            assert again.exit_code == 0, again.output
            assert [r["outcome"] for r in json.loads(again.stdout)] == ["skipped"]
            await asyncio.sleep(1.5)
            notices = [decode_notice(m.value) for m in await reader.drain()]
    finally:
        await reader.stop()

    assert len(notices) == 6 == len({n.person_id for n in notices})  # the re-driven person, once
    [after] = json.loads((await panui("list", *cli, "--json")).stdout)
    assert after["status"] == "replayed" and after["replayed_to"]["partition"] == origin["partition"]
    missing = await panui("replay", *cli, "no-such:0:1")
    assert missing.exit_code == 2
    assert (await panui("replay", *cli)).exit_code == 2  # nothing selected
