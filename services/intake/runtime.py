"""Intake's runtime: the shared service runtime, plus the agency request limits,
authentication that knows agency API keys as well as coordinator tokens, the consumer lag
monitor of every group of the deployment (intake is the front door ops read; docs/decisions.md),
and the purge loop (closed incidents whose purge is due: services/intake/retention.py)."""

import asyncio
import logging

import httpx

from services.common.clock import utcnow
from services.common.deps import Caller
from services.common.lag import LagMonitor
from services.common.lag.prometheus import LagCollector
from services.common.ratelimit import KeyedRateLimiter
from services.common.runtime import ServiceRuntime
from services.common.shared_buckets import Limit
from services.common.tasks import SupervisedLoop, finish
from services.common.topics import AFFECTED_RECORDS, INCIDENT_LIFECYCLE, INCIDENTS
from services.intake import auth, retention, store
from services.intake.models import MODELS
from services.intake.settings import IntakeSettings

log = logging.getLogger(__name__)


class IntakeRuntime(ServiceRuntime):
    settings: IntakeSettings

    def __init__(self, settings: IntakeSettings):
        super().__init__(settings, MODELS, [AFFECTED_RECORDS, INCIDENTS, INCIDENT_LIFECYCLE],
                         on_start=self._start_purge)
        # Feed requests per agency: a token bucket per agency shared by every replica, in the
        # database (services/common/shared_buckets.py), behind the same bucket in this process
        # as a first line (a flood from one agency is turned away without a round trip).
        self.limiter = KeyedRateLimiter(settings.agency_requests_per_minute)
        self.agency_limit = Limit("intake.agency", self.limiter.rate, self.limiter.burst)
        # Lag of every consumer group under the prefix, from Kafka's own offsets: served as
        # GET /v1/ops/lag and as kafka_consumergroup_lag* on /metrics.
        self.lag = LagMonitor.from_settings(settings)
        self.metric_collectors.append(LagCollector(self.lag))
        # The console reaches dedupe and dispatch through intake (console/api.py).
        self.upstreams = {
            name: httpx.AsyncClient(base_url=url, timeout=settings.console_timeout_s)
            for name, url in (("dedupe", settings.dedupe_url), ("dispatch", settings.dispatch_url))}
        self._stopping = False
        self.purge_loop = SupervisedLoop("purge", self._purge, service=settings.service_name,
                                         should_stop=lambda: self._stopping)

    async def start(self) -> None:
        await super().start()
        if self.settings.lag_monitor:
            await self.lag.start()  # Kafka away at start is not fatal: the loop retries

    async def _start_purge(self, _runtime: ServiceRuntime) -> None:
        self.purge_loop.start()

    async def _purge(self) -> None:
        while not self._stopping:
            with self.purge_loop.working():
                purged = await self.db.run(retention.purge_due, utcnow())
            for incident_id in purged:
                self.vault.forget(incident_id)
                log.info("incident purged", extra={"incident_id": incident_id})
            if purged:
                self.relay.wake()
                continue  # more may be due
            await asyncio.sleep(self.settings.purge_check_interval_s)

    async def stop(self) -> None:
        self._stopping = True
        await finish(self.purge_loop.task)
        await self.lag.stop()
        for client in self.upstreams.values():
            await client.aclose()
        await super().stop()

    def loops(self) -> list[SupervisedLoop]:
        return [*super().loops(), self.purge_loop]

    async def authenticate(self, token: str) -> Caller | None:
        """A coordinator, or the agency whose live API key this is (never from the body)."""
        caller = await super().authenticate(token)
        if caller is not None:
            return caller
        presented = auth.parse_key(token)
        if presented is None:
            return None
        row = await self.db.run(store.get_api_key, presented.key_id)
        if row is None or row.revoked_at is not None or not auth.secret_matches(presented, row.secret_sha256):
            return None
        return Caller("agency", row.agency_id)
