"""The lag report in Burrow's JSON shape (its /v3/kafka/{cluster}/consumer/{group}/lag `status`
object), one per group, so tools written for Burrow read it unchanged.

As in Burrow, `start` and `end` are the group's position at the first and latest sample of the
window (`offset`, `timestamp` in ms since the epoch, `lag` then), `maxlag` is the partition
object with the largest lag (null when the group reads no partition), and `partitions` lists
every partition (Burrow's /lag lists all; its /status only the bad ones). Added to Burrow's
fields: per group `reason`, `state`, `members`; per partition `log_start_offset`,
`log_end_offset`, `committed_offset` (null without a commit) and `no_commit`. Without a commit
the position — `end.offset` — is the log start offset, so `current_lag == log_end_offset −
end.offset` always holds (clamped at 0).

The envelope is ours, not Burrow's (`{"error": false, …}` would clash with the project's error
body): `{"cluster", "status" (worst of all groups), "sampled_at", "groups": [status, …]}`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from pydantic import BaseModel, Field

from services.common.lag.monitor import LagReport
from services.common.lag.rules import GroupStatus, PartitionStatus, Point, Status, worst
from services.common.lag.sampler import matches


class BurrowOffset(BaseModel):
    offset: int = Field(description="The group's position: committed offset, or log start without one")
    timestamp: int = Field(description="When it was sampled, ms since the epoch")
    lag: int


class BurrowPartition(BaseModel):
    topic: str
    partition: int
    owner: str = Field(description="Host of the member the partition is assigned to, '' if none")
    client_id: str
    status: Status
    start: BurrowOffset = Field(description="First sample of the window")
    end: BurrowOffset = Field(description="Latest sample")
    current_lag: int = Field(description="log_end_offset − end.offset, at least 0")
    complete: float = Field(description="How full the window is, 0..1")
    log_start_offset: int
    log_end_offset: int = Field(description="High-water mark (read_uncommitted)")
    committed_offset: int | None = Field(description="null: the group never committed here")
    no_commit: bool = Field(description="true: lag counted from the log start offset")


class BurrowGroupStatus(BaseModel):
    cluster: str
    group: str
    status: Status
    reason: str
    state: str = Field(description="The broker's group state (Stable, Empty, Dead, …)")
    members: int
    complete: float
    partitions: list[BurrowPartition]
    partition_count: int
    maxlag: BurrowPartition | None
    totallag: int


class LagResponse(BaseModel):
    cluster: str
    status: Status = Field(description="The worst status of all groups")
    sampled_at: datetime
    groups: list[BurrowGroupStatus]


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _offset(point: Point) -> BurrowOffset:
    return BurrowOffset(offset=point.offset, timestamp=_ms(point.at), lag=point.lag)


def burrow_partition(p: PartitionStatus) -> BurrowPartition:
    c = p.current
    return BurrowPartition(
        topic=c.topic, partition=c.partition, owner=c.owner, client_id=c.client_id, status=p.status,
        start=_offset(p.start), end=_offset(p.end), current_lag=c.lag, complete=p.complete,
        log_start_offset=c.log_start, log_end_offset=c.log_end, committed_offset=c.committed,
        no_commit=c.no_commit)


def burrow_group(cluster: str, g: GroupStatus) -> BurrowGroupStatus:
    partitions = [burrow_partition(p) for p in g.partitions]
    top = g.max_lag
    return BurrowGroupStatus(
        cluster=cluster, group=g.group, status=g.status, reason=g.reason, state=g.sample.state,
        members=g.sample.members, complete=g.complete, partitions=partitions,
        partition_count=len(partitions), maxlag=burrow_partition(top) if top else None,
        totallag=g.total_lag)


def lag_response(report: LagReport, groups: Collection[str] | None = None,
                 prefix: str = "") -> LagResponse:
    """The report as the API body; `groups` keeps only those (full ids or names without prefix)."""
    chosen = [g for g in report.groups if not groups or matches(g.group, groups, prefix)]
    return LagResponse(cluster=report.cluster, status=worst(g.status for g in chosen), sampled_at=report.at,
                       groups=[burrow_group(report.cluster, g) for g in chosen])
