"""A real intake over real HTTP, for clients that are not async (schemathesis, the CLI):
uvicorn serving the app in a background thread with its own event loop."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from testkit import infra
from testkit.factories import incident_body
from testkit.infra import free_port
from testkit.serving import serve_in_thread
from tests.conftest import COORDINATOR_TOKEN


@dataclass
class ServedIntake:
    url: str
    settings: IntakeSettings
    database_url: str
    server: uvicorn.Server

    def new_incident(self, n_agencies: int = 1) -> tuple[str, dict[str, str]]:
        tag = uuid.uuid4().hex[:8]
        incident_id = f"inc-{tag}"
        agencies = [(f"ag-{tag}-{i}", f"Test Agency {i}") for i in range(n_agencies)]
        response = httpx.post(f"{self.url}/v1/incidents", json=incident_body(incident_id, agencies),
                              headers={"authorization": f"Bearer {COORDINATOR_TOKEN}"}, timeout=30)
        assert response.status_code == 201, response.text
        return incident_id, {k["agency_id"]: k["api_key"] for k in response.json()["issued_keys"]}


@contextmanager
def serve_intake(pg_admin_url: str, kafka_bootstrap: str, data_keys: str,
                 **overrides: object) -> Iterator[ServedIntake]:
    name, url = infra.lease_database(pg_admin_url, "intake")
    prefix = f"test-{uuid.uuid4().hex[:10]}."
    port = free_port()
    settings = IntakeSettings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, data_keys=data_keys,
        coordinator_tokens=COORDINATOR_TOKEN, outbox_poll_interval_s=0.05, database_url=url,
        port=port, **overrides)
    try:
        with serve_in_thread(create_app(settings), port, name="intake-under-test") as server:
            yield ServedIntake(f"http://127.0.0.1:{port}", settings, url, server)
    finally:  # after the server has stopped: nothing is connected any more
        import asyncio

        asyncio.run(infra.delete_topics_with_prefix(kafka_bootstrap, prefix))
        infra.release_database(pg_admin_url, name)
