"""Intake's HTTP API on the real PostgreSQL and Kafka.

One intake app per test module (its own database and topic prefix): starting an app costs
a database, two topics and a producer, so tests share it and isolate themselves by using
their own incident and agency ids (`Intake.new_incident`).
"""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from services.common.crypto import Sealer
from services.common.messages import decode_affected_records_topic
from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from testkit import infra
from testkit.factories import incident_body
from tests.conftest import COORDINATOR_TOKEN, running

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
NDJSON = "application/x-ndjson"


def agency_headers(api_key: str, content_type: str | None = NDJSON, **extra: str) -> dict:
    headers = {"authorization": f"Bearer {api_key}", **extra}
    if content_type:
        headers["content-type"] = content_type
    return headers


@dataclass
class IncidentSetup:
    incident_id: str
    keys: dict[str, str]  # agency_id -> api key
    key_ids: dict[str, str] = field(default_factory=dict)

    @property
    def agencies(self) -> list[str]:
        return list(self.keys)


@dataclass
class Intake:
    app: FastAPI
    client: httpx.AsyncClient
    settings: IntakeSettings
    database_url: str
    kafka_bootstrap: str

    @property
    def sealer(self) -> Sealer:
        return self.app.state.runtime.sealer

    @property
    def records_topic(self) -> str:
        return f"{self.settings.topic_prefix}affected-records.v1"

    @property
    def incidents_topic(self) -> str:
        return f"{self.settings.topic_prefix}incidents.v1"

    async def new_incident(self, n_agencies: int = 2) -> IncidentSetup:
        tag = uuid.uuid4().hex[:8]
        agencies = [(f"ag-{tag}-{i}", f"Test Agency {i}") for i in range(n_agencies)]
        incident_id = f"inc-{tag}"
        response = await self.client.post(
            "/v1/incidents", headers=COORDINATOR, json=incident_body(incident_id, agencies))
        assert response.status_code == 201, response.text
        issued = response.json()["issued_keys"]
        return IncidentSetup(incident_id, {k["agency_id"]: k["api_key"] for k in issued},
                             {k["agency_id"]: k["key_id"] for k in issued})

    async def post_feed(self, incident_id: str, api_key: str, body: bytes,
                        content_type: str = NDJSON, **headers: str) -> httpx.Response:
        return await self.client.post(f"/v1/incidents/{incident_id}/feeds", content=body,
                                      headers=agency_headers(api_key, content_type, **headers))

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, params).fetchall()

    async def drained(self, timeout: float = infra.WAIT_S) -> None:
        """Wait until the outbox relay has published everything."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.query("SELECT count(*) FROM outbox_message")[0][0]:
            assert loop.time() < deadline, "outbox not drained"
            await asyncio.sleep(0.05)

    async def messages(self, incident_id: str, predicate, timeout: float = infra.WAIT_S) -> list:  # noqa: ANN001
        """Decoded affected-records.v1 messages of one incident, once predicate(list) holds."""
        async with infra.topic_reader(self.kafka_bootstrap, self.records_topic) as reader:
            def mine(raw: list) -> list:
                return [(m, decode_affected_records_topic(m.value)) for m in raw
                        if m.key == incident_id.encode()]

            await reader.wait_for(lambda raw: predicate(mine(raw)), timeout=timeout)
            return mine(reader.messages)


def intake_settings(database_url: str, kafka_bootstrap: str, prefix: str, data_keys: str,
                    **overrides: object) -> IntakeSettings:
    return IntakeSettings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, data_keys=data_keys,
        coordinator_tokens=COORDINATOR_TOKEN, outbox_poll_interval_s=0.05,
        database_url=database_url, **overrides)


async def start_intake(pg_admin_url: str, kafka_bootstrap: str, data_keys: str,
                       **overrides: object) -> AsyncIterator[Intake]:
    name, url = infra.lease_database(pg_admin_url, "intake")
    prefix = f"test-{uuid.uuid4().hex[:10]}."
    settings = intake_settings(url, kafka_bootstrap, prefix, data_keys, **overrides)
    app = create_app(settings)
    try:
        async with running(app) as client:
            yield Intake(app, client, settings, url, kafka_bootstrap)
    finally:
        await infra.delete_topics_with_prefix(kafka_bootstrap, prefix)
        infra.release_database(pg_admin_url, name)


@pytest.fixture(scope="module")
async def intake(pg_admin_url, kafka_bootstrap, data_keys) -> AsyncIterator[Intake]:  # noqa: ANN001
    # A generous rate so tests sharing the app never trip it; test_limits has its own app.
    async for running_intake in start_intake(pg_admin_url, kafka_bootstrap, data_keys,
                                             agency_requests_per_minute=100_000):
        yield running_intake
