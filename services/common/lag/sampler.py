"""Sampling consumer lag from Kafka itself: committed offsets from the group coordinator, log
start/end offsets from the partition leaders — never the services' own counters.

Which groups: those the broker lists under the deployment's prefix, plus the expected ones (the
system's groups, `topics.CONSUMER_GROUPS`), so a group that never started is reported (ERR)
rather than silently absent. Which partitions of a group: every partition of the topics it is
expected to read, has committed on, or is assigned by its members — so a partition it has not
committed on yet still shows (lag from the log start, `no_commit`).

Log end = the high-water mark: offsets are read with isolation_level="read_uncommitted". The
services' consumers read read_committed, and no Pānui producer uses Kafka transactions today
(the outbox relay is idempotent, not transactional), so HW − committed is exact. If a producer
ever writes transactionally, each commit/abort leaves a control marker that takes an offset:
a caught-up consumer that commits "last record + 1" then shows lag 1 per trailing marker, and
records of an open transaction count as lag before anyone can read them (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import (
    DescribeGroupsRequest_v0,
    DescribeGroupsRequest_v1,
    DescribeGroupsRequest_v2,
)
from aiokafka.protocol.api import Request
from aiokafka.protocol.metadata import MetadataRequest

from services.common.clock import Clock, utcnow
from services.common.lag.rules import GroupSample, PartitionSample
from services.common.topics import CONSUMER_GROUPS

log = logging.getLogger(__name__)

ExpectedGroups = Mapping[str, Sequence[str]]  # full group id → full topic names it reads


class LagUnavailable(Exception):
    """Kafka could not be asked (unreachable, timed out). The message names no data."""


def system_groups(prefix: str) -> dict[str, tuple[str, ...]]:
    """The consumer groups the services use under `prefix`, with the topics each reads."""
    return {g.full_name(prefix): tuple(t.full_name(prefix) for t in g.topics) for g in CONSUMER_GROUPS}


def matches(group: str, wanted: Collection[str], prefix: str) -> bool:
    """`--group` style filters accept the full id or the name without the prefix."""
    return group in wanted or (group.startswith(prefix) and group[len(prefix):] in wanted)


_DescribeGroupsUpToV2 = DescribeGroupsRequest_v0 | DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2


class _DescribeGroups(Request[_DescribeGroupsUpToV2]):
    """DescribeGroups capped at v2. aiokafka 0.14 decodes v3 replies with the v2 schema, which
    lacks v3's per-group authorized_operations: a reply about two or more groups then fails to
    decode and the connection is dropped (admin.describe_consumer_groups, Kafka 3.9)."""

    API_KEY = 15

    def __init__(self, groups: list[str]):
        self.groups = groups

    def build(self, request_struct_class):  # noqa: ANN001, ANN201
        return request_struct_class(self.groups)


class LagSampler:
    """Takes samples of every group under `prefix` (and the `expected` ones). Holds one admin
    client and one group-less consumer (for log offsets) between samples."""

    def __init__(self, bootstrap_servers: str, prefix: str, expected: ExpectedGroups | None = None, *,
                 groups: Collection[str] | None = None, clock: Clock = utcnow,
                 request_timeout_ms: int = 10_000, security: dict | None = None):
        self.bootstrap_servers = bootstrap_servers
        # Transport security and SASL options (services/common/kafka_client.client_options).
        self.security = {k: v for k, v in (security or {}).items() if k != "bootstrap_servers"}
        self.prefix = prefix
        self.expected = dict(expected or {})
        self.only = set(groups) if groups else None  # report only these (full ids or names)
        if self.only:
            self.expected = {g: t for g, t in self.expected.items() if matches(g, self.only, prefix)}
            for name in self.only:  # a group asked for by name is expected, topics unknown
                full = name if name.startswith(prefix) else f"{prefix}{name}"
                self.expected.setdefault(full, ())
        self.clock = clock
        self.request_timeout_ms = request_timeout_ms
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._offset_topics: set[str] = set()

    async def __aenter__(self) -> LagSampler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, **self.security,
                                          request_timeout_ms=self.request_timeout_ms,
                                          client_id="panui-lag")
        try:
            await self._admin.start()
        except KafkaError as exc:
            await self.close()
            raise LagUnavailable(f"cannot reach Kafka at {self.bootstrap_servers}: "
                                 f"{type(exc).__name__}") from exc

    async def close(self) -> None:
        await self._close_offsets()
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def sample(self) -> list[GroupSample]:
        """One sample of every group, sorted by group id."""
        if self._admin is None:
            await self.start()
        try:
            return await asyncio.wait_for(self._sample(), self.request_timeout_ms / 1000 * 2)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise LagUnavailable(f"Kafka at {self.bootstrap_servers} did not answer: "
                                 f"{type(exc).__name__}") from exc

    async def _sample(self) -> list[GroupSample]:
        assert self._admin is not None
        listed = {g for g, _protocol in await self._admin.list_consumer_groups()
                  if g.startswith(self.prefix) and (self.only is None or matches(g, self.only, self.prefix))}
        names = sorted(listed | set(self.expected))
        described, committed = await asyncio.gather(
            self._describe(names), asyncio.gather(*(self._committed(g) for g in names)))
        topics: set[str] = set()
        wanted: dict[str, set[str]] = {}
        for group, offsets in zip(names, committed, strict=True):
            wanted[group] = set(self.expected.get(group, ())) | {tp.topic for tp in offsets} | {
                tp.topic for tp in described[group][2]}
            topics |= wanted[group]
        partitions = await self._partitions(sorted(topics))
        tps = [TopicPartition(t, p) for t in sorted(partitions) for p in partitions[t]]
        start, end = await self._log_offsets(tps)
        at = self.clock()
        samples = []
        for group, offsets in zip(names, committed, strict=True):
            state, members, owners = described[group]
            known = group in listed and state != "Dead"
            rows = tuple(
                PartitionSample(tp.topic, tp.partition, start[tp], end[tp],
                                offsets.get(tp), *owners.get(tp, ("", "")))
                for tp in tps if tp.topic in wanted[group])
            samples.append(GroupSample(group, at, known, state if known else "Dead", members, rows))
        return samples

    async def _committed(self, group: str) -> dict[TopicPartition, int]:
        assert self._admin is not None
        offsets = await self._admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def _describe(self, groups: list[str]) -> dict[str, tuple[str, int, dict]]:
        """group → (state, member count, {TopicPartition: (owner host, client id)})."""
        assert self._admin is not None
        if not groups:
            return {}
        by_node: dict[int, list[str]] = {}
        for group in groups:
            by_node.setdefault(await self._admin.find_coordinator(group), []).append(group)
        responses = await asyncio.gather(*(
            self._admin._client.send(node, _DescribeGroups(names)) for node, names in by_node.items()))
        result: dict[str, tuple[str, int, dict]] = {}
        for response in responses:
            for error_code, group, state, _ptype, _protocol, members, *_ in response.groups:
                owners: dict[TopicPartition, tuple[str, str]] = {}
                for _member_id, client_id, host, _metadata, assignment, *_ in members:
                    if not assignment:
                        continue  # a member between assignments
                    decoded = ConsumerProtocolMemberAssignment.decode(assignment)
                    for topic, parts in decoded.assignment:
                        for p in parts:
                            owners[TopicPartition(topic, p)] = (host.lstrip("/"), client_id)
                result[group] = (state if error_code == 0 else "Dead", len(members), owners)
        return result

    async def _partitions(self, topics: list[str]) -> dict[str, list[int]]:
        """Partitions of the topics that exist. Asked without auto-creation, so a monitor never
        creates a topic on a broker that has auto.create.topics.enable on."""
        if not topics:
            return {}
        assert self._admin is not None
        metadata = await self._admin._client.send(
            self._admin._client.get_random_node(), MetadataRequest(topics, allow_auto_topic_creation=False))
        found = {}
        for t in metadata.to_object()["topics"]:
            if t["error_code"] == 0 and t["partitions"]:
                found[t["topic"]] = sorted(p["partition"] for p in t["partitions"])
        return found

    async def _log_offsets(self, tps: list[TopicPartition]) -> tuple[dict, dict]:
        if not tps:
            return {}, {}
        topics = {tp.topic for tp in tps}
        if self._offsets is not None and not self._offset_topics <= topics:
            # A topic went away: a fresh consumer, so its metadata refreshes never ask for the
            # deleted topic again (which a broker with auto-creation on would recreate).
            await self._close_offsets()
        if self._offsets is None:
            self._offsets = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers, **self.security, group_id=None,
                enable_auto_commit=False,
                isolation_level="read_uncommitted", request_timeout_ms=self.request_timeout_ms,
                client_id="panui-lag-offsets")
            await self._offsets.start()
        self._offset_topics = topics
        start = await self._offsets.beginning_offsets(tps)
        end = await self._offsets.end_offsets(tps)
        return start, end

    async def _close_offsets(self) -> None:
        if self._offsets is not None:
            await self._offsets.stop()
            self._offsets = None
