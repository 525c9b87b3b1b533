"""Intake: the front door for agencies' affected-record feeds and the coordinator's setup.

The composition root: builds the runtime and mounts the routers."""

from fastapi import FastAPI

from services.common.lag.api import lag_router
from services.common.runtime import create_service_app
from services.common.staffapi import issuance_router
from services.intake.api import routers
from services.intake.console import mount_console
from services.intake.console.api import router as console_router
from services.intake.console.reconciliation import router as reconciliation_router
from services.intake.console.report import router as report_router
from services.intake.runtime import IntakeRuntime
from services.intake.settings import IntakeSettings

# What schemas._storable enforces on every text of a request body, said in the schema: no NUL
# (PostgreSQL cannot hold it). Written \x00, which every regex dialect reads alike; lone
# surrogates (also refused) cannot be written in a pattern a Rust or Python validator compiles.
STORABLE_TEXT = "^[^\\x00]*$"


def _document_storable_text(node: object) -> None:
    """Give every string schema without a pattern of its own the storable-text pattern (ids'
    patterns exclude NUL already)."""
    if isinstance(node, dict):
        if node.get("type") == "string" and "pattern" not in node and "enum" not in node \
                and "const" not in node and "format" not in node:
            node["pattern"] = STORABLE_TEXT
        if node.get("type") == "object" and "additionalProperties" in node \
                and "propertyNames" not in node:  # a map's keys are request text too
            node["propertyNames"] = {"pattern": STORABLE_TEXT}
        for value in node.values():
            _document_storable_text(value)
    elif isinstance(node, list):
        for value in node:
            _document_storable_text(value)


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    runtime = IntakeRuntime(settings or IntakeSettings())
    app = create_service_app(
        runtime,
        title="Pānui intake",
        description="Agencies submit affected-record feeds; the coordinator sets up incidents; "
                    "ops read consumer lag; the coordinator console is served at /console/.",
        routers=[*routers, issuance_router, lag_router(runtime.lag), console_router, report_router,
                 reconciliation_router],
    )
    mount_console(app)

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            _document_storable_text(schema.get("components", {}).get("schemas", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
