"""Lag from the real broker: offsets the test produced and committed, each status made true
with a clock the test moves, the Prometheus gauges and GET /v1/ops/lag."""

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry, generate_latest

from services.common.errors import install_error_handlers
from services.common.lag import LagMonitor, LagRules, LagSampler, Status, system_groups
from services.common.lag.api import lag_router
from services.common.lag.prometheus import LagCollector
from services.common.settings import ServiceSettings
from services.intake.runtime import IntakeRuntime
from services.intake.settings import IntakeSettings
from testkit.infra import free_port
from tests.common.lag_kafka import ManualClock, Member, create_topic, delete_records_before, produce

pytestmark = pytest.mark.kafka

RULES = LagRules(window=3, stop_after=timedelta(seconds=60))


def monitor_for(bootstrap: str, prefix: str, clock: ManualClock, expected=None, **kw) -> LagMonitor:  # noqa: ANN001
    return LagMonitor(LagSampler(bootstrap, prefix, expected or {}, clock=clock, **kw), RULES)


def by_group(report) -> dict:  # noqa: ANN001
    return {g.group: g for g in report.groups}


def partitions(group_status) -> dict:  # noqa: ANN001
    return {p.current.partition: p.current for p in group_status.partitions}


async def test_lag_is_produced_minus_committed_per_partition(kafka_bootstrap, topic_prefix):
    topic, group = f"{topic_prefix}records", f"{topic_prefix}g"
    await create_topic(kafka_bootstrap, topic, partitions=3)
    await produce(kafka_bootstrap, topic, {0: 10, 1: 7, 2: 4})
    monitor = monitor_for(kafka_bootstrap, topic_prefix, ManualClock())
    try:
        async with Member(kafka_bootstrap, group, topic) as member:
            committed = await member.consume_and_commit({0: 6, 1: 7})  # nothing committed on 2
            assert committed == {0: 6, 1: 7}
            g = by_group(await monitor.refresh())[group]
            rows = partitions(g)
            assert {p: (r.committed, r.log_end, r.lag) for p, r in rows.items()} == {
                0: (6, 10, 4), 1: (7, 7, 0), 2: (None, 4, 4)}
            assert rows[2].no_commit and not rows[0].no_commit
            assert g.total_lag == 8 and g.max_lag.current.partition in (0, 2)
            assert g.sample.members == 1 and g.sample.state == "Stable"
            assert rows[0].owner and rows[0].client_id  # assignment decoded from the member

            await produce(kafka_bootstrap, topic, {0: 5, 1: 2})
            await member.consume_and_commit({0: 9})
            rows = partitions(by_group(await monitor.refresh())[group])
            assert {p: r.lag for p, r in rows.items()} == {0: 15 - 9, 1: 9 - 7, 2: 4}
    finally:
        await monitor.stop()


async def test_partition_without_a_commit_counts_lag_from_the_log_start(kafka_bootstrap, topic_prefix):
    topic, group = f"{topic_prefix}records", f"{topic_prefix}g"
    await create_topic(kafka_bootstrap, topic, partitions=2)
    await produce(kafka_bootstrap, topic, {0: 3, 1: 9})
    await delete_records_before(kafka_bootstrap, topic, 1, 5)  # retention removed 0..4
    monitor = monitor_for(kafka_bootstrap, topic_prefix, ManualClock())
    try:
        async with Member(kafka_bootstrap, group, topic) as member:
            await member.consume_and_commit({0: 3})
            rows = partitions(by_group(await monitor.refresh())[group])
            assert (rows[1].log_start, rows[1].log_end, rows[1].committed) == (5, 9, None)
            assert rows[1].lag == 4 and rows[1].no_commit and rows[1].position == 5
            assert rows[0].lag == 0
    finally:
        await monitor.stop()


async def test_groups_are_discovered_by_prefix_and_expected_ones_reported_missing(kafka_bootstrap,
                                                                                   topic_prefix):
    topic = f"{topic_prefix}records"
    await create_topic(kafka_bootstrap, topic, partitions=2)
    await produce(kafka_bootstrap, topic, {0: 2, 1: 3})
    other = f"other-{uuid.uuid4().hex[:8]}.g"  # another deployment's group on the same topic
    async with Member(kafka_bootstrap, other, topic) as member:
        await member.consume_and_commit({0: 1})
    async with Member(kafka_bootstrap, f"{topic_prefix}seen", topic) as member:
        await member.consume_and_commit({0: 2, 1: 3})
    expected = {f"{topic_prefix}never": (topic,), f"{topic_prefix}seen": (topic,)}
    monitor = monitor_for(kafka_bootstrap, topic_prefix, ManualClock(), expected)
    try:
        groups = by_group(await monitor.refresh())
        assert set(groups) == {f"{topic_prefix}never", f"{topic_prefix}seen"}
        never = groups[f"{topic_prefix}never"]
        assert never.status is Status.ERR and not never.sample.known
        # What a missing group would have to read: the whole retained log, flagged.
        assert {p: (r.lag, r.no_commit) for p, r in partitions(never).items()} == {
            0: (2, True), 1: (3, True)}
        seen = groups[f"{topic_prefix}seen"]
        assert seen.status is Status.OK  # left the group, but nothing waits
        assert seen.sample.members == 0 and seen.sample.state == "Empty"
    finally:
        await monitor.stop()


async def test_system_groups_are_expected_under_the_deployment_prefix(kafka_bootstrap, topic_prefix):
    expected = system_groups(topic_prefix)
    assert expected[f"{topic_prefix}dedupe.affected-records"] == (f"{topic_prefix}affected-records.v1",)
    assert set(expected) == {f"{topic_prefix}{n}" for n in
                             ("dedupe.affected-records", "dispatch.notices", "dispatch.incidents")}
    monitor = LagMonitor.from_settings(ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap,
                                                       topic_prefix=topic_prefix))
    try:
        report = await monitor.refresh()
        assert {g.group: g.status for g in report.groups} == dict.fromkeys(expected, Status.ERR)
        assert monitor.rules.window == ServiceSettings().lag_window_samples
    finally:
        await monitor.stop()


async def test_ok_warn_stall_stop_as_their_conditions_become_true(kafka_bootstrap, topic_prefix):
    topic, group = f"{topic_prefix}records", f"{topic_prefix}g"
    await create_topic(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, {0: 10})
    clock = ManualClock()
    monitor = monitor_for(kafka_bootstrap, topic_prefix, clock)

    async def status_after(seconds: float) -> Status:
        clock.advance(seconds)
        return by_group(await monitor.refresh())[group]

    try:
        async with Member(kafka_bootstrap, group, topic) as member:
            await member.consume_and_commit({0: 10})
            for _ in range(3):  # caught up over a full window
                g = await status_after(10)
            assert (g.status, g.complete, g.total_lag) == (Status.OK, 1.0, 0)

            # WARN: the consumer commits, but records arrive faster than it keeps up.
            for n in (12, 14, 16):
                await produce(kafka_bootstrap, topic, {0: 5})
                await member.consume_and_commit({0: n})
                g = await status_after(10)
            assert g.status is Status.WARN, g.reason
            assert [p.status for p in g.partitions] == [Status.WARN]

            # STALL: lag > 0 and the committed offset frozen over the whole window.
            for _ in range(3):
                g = await status_after(10)
            assert g.status is Status.STALL, g.reason
            assert g.total_lag == 25 - 16

            # STOP: frozen for longer than stop_after (60 s since the first frozen sample).
            g = await status_after(31)
            assert g.status is Status.STOP, g.reason

            # A commit ends it; once lag is gone the group is OK again.
            await member.consume_and_commit({0: 25})
            g = await status_after(10)
            assert (g.status, g.total_lag) == (Status.OK, 0)

            await produce(kafka_bootstrap, topic, {0: 2})
            g = await status_after(10)
            assert g.status is Status.OK  # lag with a member: not judged yet
        # ERR: the member left while records wait.
        g = await status_after(10)
        assert (g.status, g.sample.members, g.total_lag) == (Status.ERR, 0, 2)
        assert "no consumer" in g.reason
    finally:
        await monitor.stop()


async def test_a_transaction_marker_counts_as_one_record_of_lag(kafka_bootstrap, topic_prefix):
    """Documents why the log end is the high-water mark and what that means with transactions
    (no Pānui producer is transactional today): the commit marker takes an offset, so a
    read_committed consumer that committed 'last record + 1' still shows lag 1."""
    topic, group = f"{topic_prefix}tx", f"{topic_prefix}g"
    await create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_prefix}tx")
    await producer.start()
    try:
        async with producer.transaction():
            for _ in range(3):
                await producer.send(topic, b"synthetic", partition=0)
    finally:
        await producer.stop()
    monitor = monitor_for(kafka_bootstrap, topic_prefix, ManualClock())
    try:
        async with Member(kafka_bootstrap, group, topic, isolation_level="read_committed") as member:
            assert await member.consume_and_commit({0: 3}) == {0: 3}
            row = partitions(by_group(await monitor.refresh())[group])[0]
            assert (row.committed, row.log_end, row.lag) == (3, 4, 1)
    finally:
        await monitor.stop()


async def test_prometheus_gauges_use_kafka_exporter_names(kafka_bootstrap, topic_prefix):
    topic, group = f"{topic_prefix}records", f"{topic_prefix}g"
    await create_topic(kafka_bootstrap, topic, partitions=2)
    await produce(kafka_bootstrap, topic, {0: 10, 1: 3})
    monitor = monitor_for(kafka_bootstrap, topic_prefix, ManualClock())
    registry = CollectorRegistry()
    registry.register(LagCollector(monitor))
    try:
        assert b"kafka_consumergroup_lag" not in generate_latest(registry)  # nothing sampled yet
        async with Member(kafka_bootstrap, group, topic) as member:
            await member.consume_and_commit({0: 4})
            await monitor.refresh()
        value = registry.get_sample_value
        labels = {"consumergroup": group, "topic": topic}
        assert value("kafka_consumergroup_lag", {**labels, "partition": "0"}) == 6
        assert value("kafka_consumergroup_lag", {**labels, "partition": "1"}) == 3  # no commit
        assert value("kafka_consumergroup_lag_sum", labels) == 9
        assert value("kafka_consumergroup_current_offset", {**labels, "partition": "0"}) == 4
        assert value("kafka_consumergroup_current_offset", {**labels, "partition": "1"}) is None
        assert value("kafka_topic_partition_current_offset", {"topic": topic, "partition": "0"}) == 10
        assert value("kafka_consumergroup_members", {"consumergroup": group}) == 1
        assert value("panui_consumergroup_uncommitted_partitions", labels) == 1
        assert value("panui_consumergroup_status", {"consumergroup": group, "status": "OK"}) == 1
        assert value("panui_consumergroup_status", {"consumergroup": group, "status": "ERR"}) == 0
        assert value("panui_consumergroup_lag_sampled_timestamp_seconds") == ManualClock().now.timestamp()
    finally:
        await monitor.stop()


def _app(monitor: LagMonitor, tmp_path, data_keys: str, **router_kw) -> FastAPI:  # noqa: ANN001
    app = FastAPI()
    install_error_handlers(app)
    settings = IntakeSettings(coordinator_tokens="coord-token", data_keys=data_keys,
                              database_url=f"sqlite:///{tmp_path}/x.db")
    # The front door's runtime, not started: it only authenticates here.
    app.state.runtime = IntakeRuntime(settings)
    app.include_router(lag_router(monitor, **router_kw))
    return app


async def test_ops_lag_route_returns_burrow_shaped_statuses(kafka_bootstrap, topic_prefix, tmp_path,
                                                            data_keys):
    topic, group = f"{topic_prefix}records", f"{topic_prefix}g"
    await create_topic(kafka_bootstrap, topic, partitions=2)
    await produce(kafka_bootstrap, topic, {0: 5, 1: 2})
    monitor = monitor_for(kafka_bootstrap, topic_prefix, ManualClock(), {f"{topic_prefix}never": (topic,)})
    transport = httpx.ASGITransport(app=_app(monitor, tmp_path, data_keys))
    try:
        async with Member(kafka_bootstrap, group, topic) as member:
            await member.consume_and_commit({0: 3})
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/v1/ops/lag")).json()["error"]["code"] == "auth.missing"
            denied = await client.get("/v1/ops/lag", headers={"authorization": "Bearer nope"})
            assert denied.status_code == 401
            auth = {"authorization": "Bearer coord-token"}
            response = await client.get("/v1/ops/lag", headers=auth)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["cluster"] == topic_prefix.rstrip(".") and body["status"] == "ERR"
            groups = {g["group"]: g for g in body["groups"]}
            g = groups[group]
            assert (g["cluster"], g["status"], g["totallag"], g["partition_count"]) == (
                body["cluster"], "ERR", 4, 2)  # no members while 4 wait
            parts = {p["partition"]: p for p in g["partitions"]}
            assert parts[0]["current_lag"] == 2 and parts[0]["end"]["offset"] == 3
            assert parts[0]["committed_offset"] == 3 and parts[0]["log_end_offset"] == 5
            assert (parts[1]["topic"], parts[1]["current_lag"], parts[1]["committed_offset"],
                    parts[1]["no_commit"], parts[1]["log_start_offset"]) == (topic, 2, None, True, 0)
            assert parts[1]["end"]["offset"] == 0  # position without a commit: the log start
            assert g["maxlag"]["current_lag"] == 2
            assert {"timestamp", "offset", "lag"} == set(parts[0]["start"])
            assert groups[f"{topic_prefix}never"]["status"] == "ERR"

            only = await client.get("/v1/ops/lag", params={"group": "g"}, headers=auth)
            assert [x["group"] for x in only.json()["groups"]] == [group]
    finally:
        await monitor.stop()


async def test_ops_lag_route_says_503_when_kafka_does_not_answer(tmp_path, data_keys):
    monitor = LagMonitor(LagSampler(f"127.0.0.1:{free_port()}", "panui.", {}, request_timeout_ms=2000))
    transport = httpx.ASGITransport(app=_app(monitor, tmp_path, data_keys, dependencies=[Depends(lambda: None)]))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/v1/ops/lag")
    await monitor.stop()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "kafka.unavailable"


async def test_background_monitor_samples_on_its_interval(kafka_bootstrap, topic_prefix):
    topic, group = f"{topic_prefix}records", f"{topic_prefix}g"
    await create_topic(kafka_bootstrap, topic)
    async with Member(kafka_bootstrap, group, topic):
        pass
    monitor = LagMonitor(LagSampler(kafka_bootstrap, topic_prefix, {}), RULES, interval_s=0.05)
    await monitor.start()
    try:
        for _ in range(200):
            report = monitor.latest()
            if report and group in by_group(report) and by_group(report)[group].complete == 1.0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the monitor did not fill a window: {monitor.last_error}")
        assert (await monitor.report()).groups  # fresh enough: no new sample needed
    finally:
        await monitor.stop()


async def test_report_reuses_a_fresh_sample_and_samples_again_when_stale(kafka_bootstrap, topic_prefix):
    clock = ManualClock()
    monitor = LagMonitor(LagSampler(kafka_bootstrap, topic_prefix, {f"{topic_prefix}never": ()}, clock=clock),
                         RULES, interval_s=15)
    try:
        first = await monitor.report()
        assert await monitor.report() is first
        clock.advance(16)
        second = await monitor.report()
        assert second is not first and second.at == clock.now
        assert second.groups[0].complete == pytest.approx(2 / 3)  # both samples are in the window
    finally:
        await monitor.stop()


async def test_background_monitor_survives_an_unreachable_broker():
    monitor = LagMonitor(LagSampler(f"127.0.0.1:{free_port()}", "panui.", {}, request_timeout_ms=1000),
                         interval_s=0.05)
    await monitor.start()
    try:
        for _ in range(100):
            if monitor.last_error:
                break
            await asyncio.sleep(0.05)
        assert monitor.last_error and "cannot reach Kafka" in monitor.last_error
        assert monitor.latest() is None
    finally:
        await monitor.stop()
