"""Health, readiness and metrics endpoints on a real service against the real broker and DB."""

import pytest

from services.common.db import make_engine
from services.dispatch.app import create_app
from services.dispatch.settings import DispatchSettings
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit.infra import free_port
from tests.conftest import running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_health_ready_and_metrics(service_env, pg_database):
    app = create_app(DispatchSettings(**service_env, database_url=pg_database("dispatch")))
    async with running(app) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        settings = app.state.runtime.settings
        assert set(health.json()["loops"]) == {
            f"consumer:{settings.consumer_group('dispatch.incidents')}",
            f"consumer:{settings.consumer_group('dispatch.notices')}", "outbox-relay",
            f"follow:{settings.topic_prefix}notice-keys.v1",
            f"follow:{settings.topic_prefix}incident-lifecycle.v1",
            "dispatch-sender", "dispatch-results", "dispatch-maintenance",
            "dispatch-status-lookup", "dispatch-receipts"}
        assert all((loop["state"], loop["restarts"]) == ("running", 0)
                   for loop in health.json()["loops"].values())
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok"}
        assert ready.json()["details"]["kafka"] == "ok"
        assert ready.json()["details"]["dead_letters"] == {"since_start": 0}
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


async def test_intake_stays_ready_while_kafka_is_unreachable(service_env, pg_database):
    """Intake's outbox keeps accepting feeds while the broker is away: Kafka is a detail of
    its readiness, never a reason to take it out of service."""
    app = create_intake(IntakeSettings(**service_env, database_url=pg_database("intake")))
    async with running(app) as client:
        settings = app.state.runtime.settings
        reachable = settings.kafka_bootstrap_servers
        settings.kafka_bootstrap_servers = f"127.0.0.1:{free_port()}"  # nothing listens there
        try:
            ready = await client.get("/readyz")
        finally:
            settings.kafka_bootstrap_servers = reachable
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok"}
    assert ready.json()["details"]["kafka"].startswith("error")
