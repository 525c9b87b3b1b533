"""Intake: the front door for agencies' affected-record feeds and the coordinator's setup."""

from fastapi import FastAPI

from services.common.runtime import ServiceRuntime, create_service_app
from services.common.topics import AFFECTED_RECORDS, INCIDENTS
from services.intake.api import build_routers
from services.intake.models import MODELS
from services.intake.settings import IntakeSettings


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    runtime = ServiceRuntime(settings, MODELS, [AFFECTED_RECORDS, INCIDENTS])
    return create_service_app(
        runtime,
        title="Pānui intake",
        description="Agencies submit affected-record feeds; the coordinator sets up incidents.",
        routers=build_routers(settings),
    )
