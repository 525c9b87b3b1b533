"""Consumer lag status rules, after Burrow's evaluator — pure functions over samples, no Kafka.

A *sample* is what the broker said about one consumer group at one instant: for each partition
the group reads, the log start and end offsets and the group's committed offset. A group's
status is judged over a sliding window of its last `LagRules.window` samples:

- partition rules, first match wins:
  1. lag is 0 now                                                    → OK
  2. lag > 0 and the committed offset has not changed since at least
     `stop_after` ago (every sample since then had lag > 0)          → STOP
  3. window not full yet (fewer than `window` samples)               → OK (complete < 1)
  4. lag > 0 in every sample of the window and the committed offset
     is the same in all of them                                      → STALL
  5. lag never went down from one sample to the next over the window
     and ended higher than it began                                  → WARN
  6. otherwise                                                       → OK
- group rules: ERR when the broker does not know the group (expected but never seen, or
  Dead), or when the group has no members while lag > 0 (nobody will ever read it);
  otherwise the worst partition status, in the order OK < WARN < STALL < STOP < ERR.

We see commits only as changes of the committed offset (the OffsetFetch API carries no commit
time), so "no commits for a long time" (STOP) means "the committed offset did not move for
`stop_after` while there was something to read". STALL is the same condition over the short
window; STOP is its long form.

Lag is `log end − committed`, clamped at 0 (a committed offset past the log end happens when a
topic was recreated). A partition on which the group never committed has no committed offset;
its lag is counted from the log start offset, because the services' consumers start there
(auto_offset_reset="earliest"): every retained record is still to be read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    STALL = "STALL"
    STOP = "STOP"
    ERR = "ERR"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Status.OK: 0, Status.WARN: 1, Status.STALL: 2, Status.STOP: 3, Status.ERR: 4}

PartitionKey = tuple[str, int]  # (topic, partition)


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


@dataclass(frozen=True)
class LagRules:
    window: int = 10  # samples a WARN or STALL judgement looks at
    stop_after: timedelta = timedelta(minutes=10)  # committed offset frozen this long → STOP

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError("a lag window needs at least 2 samples")
        if self.stop_after <= timedelta(0):
            raise ValueError("stop_after must be positive")


@dataclass(frozen=True, slots=True)
class PartitionSample:
    topic: str
    partition: int
    log_start: int
    log_end: int  # high-water mark (read_uncommitted)
    committed: int | None  # None: the group never committed on this partition
    owner: str = ""  # host of the member the partition is assigned to, if any
    client_id: str = ""

    @property
    def key(self) -> PartitionKey:
        return (self.topic, self.partition)

    @property
    def no_commit(self) -> bool:
        return self.committed is None

    @property
    def position(self) -> int:
        """Where the group reads next: its committed offset, or the log start without one."""
        return self.log_start if self.committed is None else self.committed

    @property
    def lag(self) -> int:
        return max(0, self.log_end - self.position)


@dataclass(frozen=True, slots=True)
class GroupSample:
    group: str
    at: datetime
    known: bool  # the broker knows the group (listed and not Dead)
    state: str  # the broker's group state: Stable, Empty, PreparingRebalance, Dead, …
    members: int
    partitions: tuple[PartitionSample, ...] = ()

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True, slots=True)
class Point:
    """One partition in one sample of the window (Burrow's `start` / `end` objects)."""

    offset: int  # the group's position (committed, or log start without a commit)
    at: datetime
    lag: int


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    status: Status
    current: PartitionSample  # the latest sample
    start: Point  # first sample of the window
    end: Point  # latest sample
    complete: float  # how full the window is, 0..1
    stuck_since: datetime | None  # since when the committed offset is frozen with lag > 0

    @property
    def lag(self) -> int:
        return self.current.lag


@dataclass(frozen=True, slots=True)
class GroupStatus:
    group: str
    status: Status
    reason: str  # one line for people: why this status
    sample: GroupSample  # the latest
    partitions: tuple[PartitionStatus, ...]
    complete: float

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def max_lag(self) -> PartitionStatus | None:
        return max(self.partitions, key=lambda p: p.lag, default=None)


def next_stuck_since(previous: Mapping[PartitionKey, tuple[int | None, datetime]],
                     sample: GroupSample) -> dict[PartitionKey, tuple[int | None, datetime]]:
    """Per partition with lag > 0: (committed offset, time of the first sample of the current
    run in which that offset stayed put with lag > 0). A moving offset or lag 0 ends the run."""
    runs: dict[PartitionKey, tuple[int | None, datetime]] = {}
    for p in sample.partitions:
        if p.lag == 0:
            continue
        before = previous.get(p.key)
        runs[p.key] = before if before is not None and before[0] == p.committed else (p.committed,
                                                                                        sample.at)
    return runs


def partition_status(window: Sequence[tuple[datetime, PartitionSample]], stuck_since: datetime | None,
                     rules: LagRules) -> PartitionStatus:
    """The status of one partition, from its samples in the window (oldest first)."""
    (first_at, first), (last_at, last) = window[0], window[-1]
    complete = min(1.0, len(window) / rules.window)
    lags = [p.lag for _, p in window]
    if last.lag == 0:
        status = Status.OK
    elif stuck_since is not None and last_at - stuck_since >= rules.stop_after:
        status = Status.STOP
    elif complete < 1.0:
        status = Status.OK
    elif stuck_since is not None and stuck_since <= first_at:
        status = Status.STALL
    elif all(b >= a for a, b in zip(lags, lags[1:], strict=False)) and lags[-1] > lags[0]:
        status = Status.WARN
    else:
        status = Status.OK
    return PartitionStatus(
        status=status, current=last,
        start=Point(first.position, first_at, first.lag), end=Point(last.position, last_at, last.lag),
        complete=complete, stuck_since=stuck_since)


def group_status(window: Sequence[GroupSample],
                 stuck: Mapping[PartitionKey, tuple[int | None, datetime]],
                 rules: LagRules) -> GroupStatus:
    """The status of one group from its window of samples (oldest first, at least one)."""
    latest = window[-1]
    recent = window[-rules.window:]
    partitions = []
    for p in latest.partitions:
        series = [(s.at, q) for s in recent for q in s.partitions if q.key == p.key]
        run = stuck.get(p.key)
        partitions.append(partition_status(series, run[1] if run else None, rules))
    complete = min(1.0, len(recent) / rules.window)
    status, reason = _group_verdict(latest, partitions, rules)
    return GroupStatus(latest.group, status, reason, latest, tuple(partitions), complete)


def _group_verdict(latest: GroupSample, partitions: list[PartitionStatus],
                   rules: LagRules) -> tuple[Status, str]:
    lag = sum(p.lag for p in partitions)
    if not latest.known:
        return Status.ERR, "the broker does not know this consumer group"
    if latest.members == 0 and lag > 0:
        return Status.ERR, f"no consumer is running while {lag} records wait"
    status = worst(p.status for p in partitions)
    count = sum(1 for p in partitions if p.status is status)
    where = f"{count} partition{'s' if count != 1 else ''}"
    reasons = {
        Status.OK: f"lag {lag}",
        Status.WARN: f"lag grew over the last {rules.window} samples on {where}",
        Status.STALL: f"committed offset unchanged over the last {rules.window} samples "
                      f"while lag > 0 on {where}",
        Status.STOP: f"no commit for at least {_duration(rules.stop_after)} while lag > 0 on {where}",
    }
    return status, reasons[status]


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


@dataclass
class GroupHistory:
    """What the monitor remembers of one group: its last samples and the frozen-offset runs."""

    rules: LagRules
    samples: deque[GroupSample] = field(init=False)
    stuck: dict[PartitionKey, tuple[int | None, datetime]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.samples = deque(maxlen=self.rules.window)

    def add(self, sample: GroupSample) -> GroupStatus:
        self.samples.append(sample)
        self.stuck = next_stuck_since(self.stuck, sample)
        return group_status(list(self.samples), self.stuck, self.rules)
