"""Intake: the front door for agencies' affected-record feeds and the coordinator's setup.

The composition root: builds the runtime and mounts the routers."""

from fastapi import FastAPI

from services.common.lag.api import lag_router
from services.common.runtime import create_service_app
from services.intake.api import routers
from services.intake.console import mount_console
from services.intake.console.api import router as console_router
from services.intake.runtime import IntakeRuntime
from services.intake.settings import IntakeSettings


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    runtime = IntakeRuntime(settings or IntakeSettings())
    app = create_service_app(
        runtime,
        title="Pānui intake",
        description="Agencies submit affected-record feeds; the coordinator sets up incidents; "
                    "ops read consumer lag; the coordinator console is served at /console/.",
        routers=[*routers, lag_router(runtime.lag), console_router],
    )
    mount_console(app)
    return app
