"""Dedupe: resolves patient identity across agencies' feeds and releases one notice per person."""

from fastapi import FastAPI

from services.common.kafka import ConsumerWorker
from services.common.runtime import ServiceRuntime, create_service_app
from services.common.topics import AFFECTED_RECORDS, NOTICES
from services.dedupe.consumer import AffectedRecordsHandler
from services.dedupe.models import MODELS
from services.dedupe.pipeline import DedupePipeline
from services.dedupe.settings import DedupeSettings


def create_app(settings: DedupeSettings | None = None) -> FastAPI:
    settings = settings or DedupeSettings()

    def workers(runtime: ServiceRuntime) -> list[ConsumerWorker]:
        pipeline = DedupePipeline(runtime.engine, runtime.sealer)
        handler = AffectedRecordsHandler(pipeline, runtime.relay)
        return [ConsumerWorker(settings, "dedupe.affected-records", [AFFECTED_RECORDS], handler)]

    runtime = ServiceRuntime(settings, MODELS, [AFFECTED_RECORDS, NOTICES], workers=workers)
    return create_service_app(
        runtime,
        title="Pānui dedupe",
        description="Resolves patient identity across feeds and releases one notice per person.",
    )
