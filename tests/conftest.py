"""Shared fixtures. One Kafka broker and one PostgreSQL server per run (started by
`make test` / `make infra-up`); every test gets its own topics and its own database, migrated
for the service it is for (testkit/infra.py)."""

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from services.common.crypto import generate_key_spec
from testkit import infra


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return infra.kafka_bootstrap()


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return infra.pg_admin_url()


@pytest.fixture
async def topic_prefix(kafka_bootstrap: str) -> AsyncIterator[str]:
    prefix = f"test-{uuid.uuid4().hex[:10]}."
    yield prefix
    await infra.delete_topics_with_prefix(kafka_bootstrap, prefix)


@pytest.fixture(scope="session", autouse=True)
def drop_migrated_templates() -> Iterator[None]:
    """The per-service template databases a run migrates once (testkit.infra) go at its end."""
    yield
    infra.drop_templates()


@pytest.fixture
def pg_database(pg_admin_url: str):  # noqa: ANN201
    """PostgreSQL databases for this test alone: `pg_database("dedupe")` is the URL of a
    database at dedupe's head revision holding no data, under a name no test had before (one a
    finished test gave back, provably reset to the template's state, or a new copy: see
    testkit/infra.py); `pg_database(None)`: a new empty one, dropped after the test."""
    created: list[str] = []

    def make(service: str | None) -> str:
        name, url = (infra.lease_database(pg_admin_url, service) if service
                     else infra.create_database(pg_admin_url))
        created.append(name)
        return url

    yield make
    for name in created:
        infra.release_database(pg_admin_url, name)


@pytest.fixture(scope="session")
def data_keys() -> str:
    return generate_key_spec("test1")


COORDINATOR_TOKEN = "test-coordinator-token"  # noqa: S105 - test-only credential


@pytest.fixture
def service_env(kafka_bootstrap: str, topic_prefix: str, data_keys: str) -> dict:
    """Settings shared by every service in one test: same broker, prefix and keyring."""
    return {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "topic_prefix": topic_prefix,
        "data_keys": data_keys,
        "coordinator_tokens": COORDINATOR_TOKEN,
        "consumer_poll_timeout_ms": 200,
        "outbox_poll_interval_s": 0.05,
    }


@asynccontextmanager
async def running(app: FastAPI, base_url: str = "http://test") -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (its workers included) and give an HTTP client bound to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30) as client:
            yield client


@pytest.fixture
def run_app():  # noqa: ANN201
    return running


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each schemathesis test its own node id.

    schemathesis 4.32's pytest plugin names one item per API operation
    (``test_x[GET /v1/audit]``) but passes the bare function name as ``originalname``, from which
    pytest 9.2 builds the node id: every operation's item gets the same id. A serial run still runs
    them all, but anything keyed by node id collapses them — pytest-xdist's per-file scheduling
    ran one of 29 (`make test-parallel`), and ``-k``/``--lf`` could not tell them apart.
    """
    for item in items:
        if type(item).__name__ == "SchemathesisFunction" and "[" in item.name:
            item._id = item.parent.id.child(item.name)  # the id pytest < 9.2 gave (name with params)
