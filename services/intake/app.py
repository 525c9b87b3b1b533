"""Intake: the front door for agencies' affected-record feeds and the coordinator's setup.

The composition root: builds the runtime and mounts the routers."""

from fastapi import FastAPI

from services.common.runtime import create_service_app
from services.intake.api import routers
from services.intake.runtime import IntakeRuntime
from services.intake.settings import IntakeSettings


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    return create_service_app(
        IntakeRuntime(settings or IntakeSettings()),
        title="Pānui intake",
        description="Agencies submit affected-record feeds; the coordinator sets up incidents.",
        routers=routers,
    )
