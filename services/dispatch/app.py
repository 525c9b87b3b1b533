"""Dispatch: renders and sends each released notice; tracks every delivery."""

from fastapi import FastAPI

from services.common.kafka import ConsumerWorker
from services.common.runtime import ServiceRuntime, create_service_app
from services.common.topics import DELIVERY_EVENTS, NOTICES
from services.dispatch.models import MODELS
from services.dispatch.notices import NoticeHandler
from services.dispatch.settings import DispatchSettings


def create_app(settings: DispatchSettings | None = None) -> FastAPI:
    settings = settings or DispatchSettings()

    def workers(runtime: ServiceRuntime) -> list[ConsumerWorker]:
        handler = NoticeHandler(runtime.engine, runtime.relay)
        return [ConsumerWorker(settings, "dispatch.notices", [NOTICES], handler)]

    runtime = ServiceRuntime(settings, MODELS, [NOTICES, DELIVERY_EVENTS], workers=workers)
    return create_service_app(
        runtime,
        title="Pānui dispatch",
        description="Renders and delivers the one notice per person; tracks delivery.",
    )
