"""`panui lag` against the real broker: the table, --json (Burrow shape), --watch and exit codes."""

import asyncio
import json

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from testkit.infra import free_port
from tests.common.lag_kafka import Member, create_topic, produce

pytestmark = pytest.mark.kafka

runner = CliRunner()


async def lag(kafka_bootstrap: str, prefix: str, *args: str):  # noqa: ANN201
    """Run the command in a thread: it runs its own event loop, as from a shell."""
    return await asyncio.to_thread(runner.invoke, app, ["lag", "--bootstrap", kafka_bootstrap,
                                                        "--prefix", prefix, *args])


@pytest.fixture
async def filled(kafka_bootstrap, topic_prefix):  # noqa: ANN201
    """A 2-partition topic with 8 + 3 records; group `g` committed 5 on partition 0 only."""
    topic, group = f"{topic_prefix}records", f"{topic_prefix}g"
    await create_topic(kafka_bootstrap, topic, partitions=2)
    await produce(kafka_bootstrap, topic, {0: 8, 1: 3})
    member = Member(kafka_bootstrap, group, topic)
    await member.__aenter__()
    await member.consume_and_commit({0: 5})
    yield topic, group, member
    await member.stop()


async def test_table_shows_lag_per_partition_and_exits_0_when_all_ok(kafka_bootstrap, topic_prefix, filled):
    topic, group, _member = filled
    result = await lag(kafka_bootstrap, topic_prefix, "--no-expected")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(group in line and "OK" in line for line in lines), result.stdout
    row0 = next(line for line in lines if topic in line and "│         0 │" in line)
    assert [cell.strip() for cell in row0.split("│")[1:7]] == [topic, "0", "5", "8", "3", "OK"]
    row1 = next(line for line in lines if topic in line and "│         1 │" in line)
    assert [cell.strip() for cell in row1.split("│")[1:8]] == [
        topic, "1", "-", "3", "3", "OK", "no commit: lag from log start 0"]
    assert "Stable, 1 members, total lag 6" in result.stdout


async def test_json_is_the_burrow_shape(kafka_bootstrap, topic_prefix, filled):
    topic, group, _member = filled
    result = await lag(kafka_bootstrap, topic_prefix, "--no-expected", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["status"] == "OK" and [g["group"] for g in body["groups"]] == [group]
    g = body["groups"][0]
    assert (g["status"], g["totallag"], g["members"], g["maxlag"]["current_lag"]) == ("OK", 6, 1, 3)
    parts = {p["partition"]: p for p in g["partitions"]}
    assert (parts[0]["current_lag"], parts[0]["end"]["offset"], parts[0]["no_commit"]) == (3, 5, False)
    assert (parts[1]["current_lag"], parts[1]["committed_offset"], parts[1]["no_commit"]) == (3, None, True)


async def test_exit_1_when_a_group_has_lag_and_no_consumer(kafka_bootstrap, topic_prefix, filled):
    _topic, group, member = filled
    await member.stop()
    result = await lag(kafka_bootstrap, topic_prefix, "--no-expected")
    assert result.exit_code == 1, result.output
    assert "no consumer is running while 6 records wait" in result.stdout


async def test_expected_system_groups_missing_are_err(kafka_bootstrap, topic_prefix, filled):
    result = await lag(kafka_bootstrap, topic_prefix, "--json")
    assert result.exit_code == 1, result.output
    statuses = {g["group"]: g["status"] for g in json.loads(result.stdout)["groups"]}
    assert statuses == {f"{topic_prefix}g": "OK", f"{topic_prefix}dedupe.affected-records": "ERR",
                        f"{topic_prefix}dispatch.notices": "ERR", f"{topic_prefix}dispatch.incidents": "ERR"}


async def test_group_filter_and_a_group_asked_for_that_does_not_exist(kafka_bootstrap, topic_prefix, filled):
    _topic, group, _member = filled
    only = await lag(kafka_bootstrap, topic_prefix, "--group", "g", "--json")
    assert only.exit_code == 0, only.output
    assert [g["group"] for g in json.loads(only.stdout)["groups"]] == [group]
    missing = await lag(kafka_bootstrap, topic_prefix, "--group", "nobody")
    assert missing.exit_code == 1
    assert f"{topic_prefix}nobody" in missing.stdout and "does not know" in missing.stdout


async def test_watch_judges_over_a_window_stall_exits_1(kafka_bootstrap, topic_prefix, filled):
    _topic, group, _member = filled  # member alive, lag 6, nothing committed any more
    result = await lag(kafka_bootstrap, topic_prefix, "--no-expected", "--watch", "0.1", "--count", "3",
                       "--window", "2", "--json")
    assert result.exit_code == 1, result.output
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["groups"][0]["status"] for r in reports] == ["OK", "STALL", "STALL"]
    assert reports[-1]["groups"][0]["complete"] == 1.0


async def test_watch_with_the_table_prints_each_sample(kafka_bootstrap, topic_prefix, filled):
    _topic, group, member = filled
    await member.consume_and_commit({0: 8, 1: 3})
    await produce(kafka_bootstrap, filled[0], {0: 1})
    result = await lag(kafka_bootstrap, topic_prefix, "--no-expected", "--watch", "0.1", "--count", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.count(f"{group}  OK") == 2


async def test_unreachable_broker_is_a_clear_error_and_exit_3(topic_prefix):
    result = await lag(f"127.0.0.1:{free_port()}", topic_prefix, "--timeout", "2")
    assert result.exit_code == 3
    assert "cannot reach Kafka at 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.output


def test_count_without_watch_is_a_usage_error():
    result = runner.invoke(app, ["lag", "--count", "3"])
    assert result.exit_code == 2
