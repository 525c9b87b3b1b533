"""Dedupe: resolves patient identity across agencies' feeds and releases one notice per person."""

from fastapi import FastAPI

from services.common.kafka import ConsumerWorker, TopicFollower
from services.common.runtime import ServiceRuntime, create_service_app
from services.common.topics import AFFECTED_RECORDS, INCIDENTS, NOTICES
from services.dedupe.api import build_router
from services.dedupe.consumer import AffectedRecordsHandler, IncidentsHandler
from services.dedupe.models import MODELS
from services.dedupe.pipeline import DedupePipeline
from services.dedupe.settings import DedupeSettings


def create_app(settings: DedupeSettings | None = None) -> FastAPI:
    settings = settings or DedupeSettings()

    def workers(runtime: ServiceRuntime) -> list:
        runtime.pipeline = DedupePipeline(runtime.engine, runtime.sealer,
                                          review_sync_interval_s=settings.review_sync_interval_s)
        records = AffectedRecordsHandler(runtime.pipeline, runtime.relay)
        return [
            # Incidents first: agency names and release policy before their records.
            TopicFollower(settings, INCIDENTS, IncidentsHandler(runtime.pipeline)),
            ConsumerWorker(settings, "dedupe.affected-records", [AFFECTED_RECORDS], records,
                           on_revoked=records.revoked, on_tick=records.tick,
                           tick_interval_s=settings.release_tick_s),
        ]

    runtime = ServiceRuntime(settings, MODELS, [AFFECTED_RECORDS, INCIDENTS, NOTICES],
                             workers=workers)
    return create_service_app(
        runtime,
        title="Pānui dedupe",
        description="Resolves patient identity across feeds and releases one notice per person.",
        routers=[build_router(settings)],
    )
