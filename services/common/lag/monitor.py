"""The lag monitor: samples every consumer group on an interval, keeps each group's window and
judges its status. Prometheus (LagCollector), `GET /v1/ops/lag` (lag_router) and `panui lag`
all read from one monitor, so they agree.

    monitor = LagMonitor.from_settings(settings)
    await monitor.start()          # background sampling every settings.lag_interval_s
    report = await monitor.report()  # the latest report, sampled now if none is fresh
    await monitor.stop()

Several uvicorn workers each run their own monitor; they all read the same broker, so each
reports the same lag (windows start when the worker does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.common.kafka_client import client_options
from services.common.lag.rules import GroupHistory, GroupStatus, LagRules, Status, worst
from services.common.lag.sampler import ExpectedGroups, LagSampler, LagUnavailable, system_groups
from services.common.settings import ServiceSettings
from services.common.tasks import finish

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LagReport:
    cluster: str
    at: datetime
    groups: tuple[GroupStatus, ...]

    @property
    def status(self) -> Status:
        return worst(g.status for g in self.groups)

    @property
    def ok(self) -> bool:
        return all(g.status is Status.OK for g in self.groups)


def cluster_name(prefix: str) -> str:
    """Burrow names the cluster; we name it after the deployment's prefix ("panui." → "panui")."""
    return prefix.rstrip(".-_") or "kafka"


class LagMonitor:
    def __init__(self, sampler: LagSampler, rules: LagRules | None = None, *,
                 interval_s: float = 15.0, cluster: str | None = None):
        self.sampler = sampler
        self.rules = rules or LagRules()
        self.interval_s = interval_s
        self.cluster = cluster or cluster_name(sampler.prefix)
        self._histories: dict[str, GroupHistory] = {}
        self._latest: LagReport | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.last_error: str | None = None  # why the latest background sample failed, if it did

    @classmethod
    def from_settings(cls, settings: ServiceSettings, *, expected: ExpectedGroups | None = None,
                      groups: Collection[str] | None = None) -> LagMonitor:
        """A monitor of the deployment's groups (prefix, broker, window from the settings)."""
        sampler = LagSampler(settings.kafka_bootstrap_servers, settings.topic_prefix,
                             system_groups(settings.topic_prefix) if expected is None else expected,
                             groups=groups, security=client_options(settings))
        rules = LagRules(window=settings.lag_window_samples,
                         stop_after=timedelta(seconds=settings.lag_stop_after_s))
        return cls(sampler, rules, interval_s=settings.lag_interval_s)

    async def start(self) -> None:
        """Sample in the background. Kafka being down at start is not fatal: the loop retries."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lag-monitor")

    async def stop(self) -> None:
        await finish(self._task, 0)
        self._task = None
        await self.sampler.close()

    def latest(self) -> LagReport | None:
        return self._latest

    async def report(self, max_age_s: float | None = None) -> LagReport:
        """The latest report if it is younger than `max_age_s` (default: the interval), else a
        fresh sample. Raises LagUnavailable when Kafka cannot be asked."""
        limit = self.interval_s if max_age_s is None else max_age_s
        if self._fresh(limit):
            return self._latest
        async with self._lock:  # a sample taken while we waited will do
            return self._latest if self._fresh(limit) else await self._refresh()

    async def refresh(self) -> LagReport:
        """Take one sample now and fold it into every group's window."""
        async with self._lock:
            return await self._refresh()

    def _fresh(self, max_age_s: float) -> bool:
        latest = self._latest
        return latest is not None and (self.sampler.clock() - latest.at).total_seconds() <= max_age_s

    async def _refresh(self) -> LagReport:
        samples = await self.sampler.sample()
        seen = set()
        statuses = []
        for sample in samples:
            seen.add(sample.group)
            history = self._histories.get(sample.group)
            if history is None:
                history = self._histories[sample.group] = GroupHistory(self.rules)
            statuses.append(history.add(sample))
        for gone in set(self._histories) - seen:  # deleted groups: forget their window
            del self._histories[gone]
        at = samples[0].at if samples else self.sampler.clock()
        self._latest = LagReport(self.cluster, at, tuple(statuses))
        return self._latest

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
                self.last_error = None
            except LagUnavailable as exc:
                if self.last_error is None:
                    log.warning("lag monitor: %s", exc)
                self.last_error = str(exc)
            except Exception:  # noqa: BLE001 - keep sampling; the next round may succeed
                log.exception("lag monitor: sample failed")
                self.last_error = "sample failed"
            await asyncio.sleep(self.interval_s)
