"""Health, readiness and metrics endpoints on a real service against the real broker and DB."""

import pytest

from services.common.db import make_engine
from services.dispatch.app import create_app
from services.dispatch.settings import DispatchSettings
from tests.conftest import running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_health_ready_and_metrics(service_env, pg_database):
    app = create_app(DispatchSettings(**service_env, database_url=pg_database("dispatch")))
    async with running(app) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["kafka"] == "ok"
        metrics = await client.get("/metrics")
        assert "panui_http_requests_total" in metrics.text


async def test_not_ready_when_the_database_is_unreachable(service_env, pg_database):
    app = create_app(DispatchSettings(**service_env, database_url=pg_database("dispatch")))
    async with running(app) as client:
        runtime = app.state.runtime
        working, runtime.engine = runtime.engine, make_engine("postgresql://x:y@127.0.0.1:1/none")
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("error")
        runtime.engine = working
