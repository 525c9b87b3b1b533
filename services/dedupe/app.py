"""Dedupe: resolves patient identity across agencies' feeds and releases one notice per person.

The composition root: the runtime with its pipeline, the Kafka workers feeding it, the API."""

import logging

from fastapi import FastAPI

from services.common.kafka import ConsumerWorker, TopicFollower
from services.common.messages import (
    decode_affected_records_topic,
    decode_incident,
    decode_incident_lifecycle,
)
from services.common.runtime import ServiceRuntime, create_service_app
from services.common.signing import verifying
from services.common.topics import (
    AFFECTED_RECORDS,
    DEDUPE_AFFECTED_RECORDS,
    INCIDENT_LIFECYCLE,
    INCIDENTS,
    NOTICE_KEYS,
    NOTICES,
)
from services.dedupe import metrics, store
from services.dedupe.api import agency_router, router
from services.dedupe.consumer import AffectedRecordsHandler, IncidentsHandler, LifecycleHandler
from services.dedupe.models import MODELS
from services.dedupe.pipeline import DedupePipeline
from services.dedupe.settings import DedupeSettings

log = logging.getLogger(__name__)


class DedupeRuntime(ServiceRuntime):
    """The shared runtime plus the pipeline dedupe's consumers feed."""

    settings: DedupeSettings

    def __init__(self, settings: DedupeSettings):
        super().__init__(settings, MODELS, [AFFECTED_RECORDS, INCIDENTS, NOTICES,
                                   INCIDENT_LIFECYCLE, NOTICE_KEYS],
                         workers=_workers)
        self.pipeline = DedupePipeline(self.engine, self.sealer,
                                       review_sync_interval_s=settings.review_sync_interval_s,
                                       evict_after_s=settings.evict_finished_after_s,
                                       release_chunk=settings.release_chunk_persons)

    async def refresh_gauges(self) -> None:
        await super().refresh_gauges()
        try:
            metrics.REVIEW_ITEMS_OPEN.set(await self.db.run(store.open_review_count))
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail on it
            log.warning("metrics: open review items not counted (%s)", type(exc).__name__)


def _workers(runtime: DedupeRuntime) -> list:
    settings = runtime.settings
    records = AffectedRecordsHandler(runtime.pipeline, runtime.relay, settings.release_budget_s)
    # The handler's tick reads the worker's consumer positions (is a partition caught up?).
    records.worker = ConsumerWorker(settings, DEDUPE_AFFECTED_RECORDS.name,
                                    DEDUPE_AFFECTED_RECORDS.topics, records,
                                    decode=decode_affected_records_topic,
                                    dead_letters=runtime.dead_letters,
                                    on_revoked=records.revoked, on_tick=records.tick,
                                    tick_interval_s=settings.release_tick_s)
    return [
        # Incidents first: agency names and release policy before their records.
        TopicFollower(settings, INCIDENTS, IncidentsHandler(runtime.pipeline, runtime.vault),
                      decode=verifying(decode_incident, runtime.signer),
                      dead_letters=runtime.dead_letters),
        records.worker,
        # The records data keys from intake (a record whose key has not arrived waits for it)
        # and the purge of an incident.
        TopicFollower(settings, INCIDENT_LIFECYCLE,
                      LifecycleHandler(runtime.pipeline, runtime.db, tuple(runtime.keks),
                                       runtime.relay),
                      decode=verifying(decode_incident_lifecycle, runtime.signer),
                      dead_letters=runtime.dead_letters),
    ]


def create_app(settings: DedupeSettings | None = None) -> FastAPI:
    runtime = DedupeRuntime(settings or DedupeSettings())
    return create_service_app(
        runtime,
        title="Pānui dedupe",
        description="Resolves patient identity across feeds and releases one notice per person.",
        routers=[router, agency_router],
    )
