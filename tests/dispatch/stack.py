"""A running dispatch service for tests: real Kafka (per-test topic prefix), a fresh PostgreSQL
database, the local SMTP and SMS gateways on free ports, and the app served over real HTTP
(the gateways call its receipt endpoint back). The incident and notice builders are in
testkit/notices.py (the dispatch benchmark uses them too)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from sqlmodel import Session

from services.common.crypto import Sealer
from services.common.messages import IncidentMessage, NoticeMessage
from services.dispatch.app import create_app
from services.dispatch.models import Delivery
from services.dispatch.settings import DispatchSettings
from services.gateways.serving import AsgiServer
from testkit.infra import REPO, WAIT_S
from tests.conftest import COORDINATOR_TOKEN

RECEIPT_SECRET = "test-secret"  # noqa: S105 - test-only
COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
__all__ = ["REPO"]  # re-exported: where a dispatch process is started from

class MutableClock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Stack:
    app: object
    settings: DispatchSettings
    http: httpx.AsyncClient
    producer: AIOKafkaProducer
    sealer: Sealer
    extra: dict = field(default_factory=dict)

    async def publish_incident(self, message: IncidentMessage) -> None:
        await self.producer.send_and_wait(
            f"{self.settings.topic_prefix}incidents.v1", message.to_bytes(),
            key=message.incident_id.encode(),
        )

    async def publish_notices(self, notices: list[NoticeMessage]) -> None:
        for notice in notices:
            await self.producer.send(
                f"{self.settings.topic_prefix}notices.v1", notice.to_bytes(),
                key=notice.person_id.encode(),
            )
        await self.producer.flush()

    def deliveries(self) -> list[Delivery]:
        engine = self.app.state.runtime.engine
        with Session(engine) as session:
            return list(session.exec(select(Delivery).order_by(Delivery.id)).scalars())

    def delivery_map(self) -> dict[tuple[str, str], str]:
        return {(d.notice_id, d.channel): d.status for d in self.deliveries()}

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = WAIT_S,
                         what: str = "condition") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            done = await asyncio.to_thread(predicate)
            if done:
                return
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.delivery_map()}")
            await asyncio.sleep(0.1)


def dispatch_settings(service_env: dict, database_url: str, *, port: int, smtp_port: int,
                      sms_url: str, sms2_url: str = "", **overrides) -> DispatchSettings:
    values = {
        **service_env,
        "database_url": database_url,
        "port": port,
        "smtp_port": smtp_port,
        "sms_primary_url": sms_url,
        "sms_secondary_url": sms2_url,
        "receipt_secret": RECEIPT_SECRET,
        "receipt_callback_base_url": f"http://127.0.0.1:{port}",
        "retry_base_s": 0.05,
        "retry_cap_s": 0.3,
        "retry_max_attempts": 5,
        "sms_timeout_s": 5.0,
        "smtp_timeout_s": 5.0,
        "sender_idle_poll_s": 0.05,
        "sender_stop_grace_s": 2.0,
    }
    values.update(overrides)
    return DispatchSettings(**values)



async def publish_to_dispatch(settings: DispatchSettings, incident: IncidentMessage,
                              notices) -> None:  # noqa: ANN001
    """Publish an incident, then its notices, on the topics a dispatch with `settings` reads
    (for tests that run dispatch as its own process rather than through running_dispatch)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(f"{settings.topic_prefix}incidents.v1", incident.to_bytes(),
                                     key=incident.incident_id.encode())
        for notice in notices:
            await producer.send(f"{settings.topic_prefix}notices.v1", notice.to_bytes(),
                                key=notice.person_id.encode())
        await producer.flush()
    finally:
        await producer.stop()

@asynccontextmanager
async def running_dispatch(settings: DispatchSettings, clock=None) -> AsyncIterator[Stack]:  # noqa: ANN001
    app = create_app(settings, clock=clock)
    sealer = Sealer(settings.data_keys.get_secret_value())
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        async with app.router.lifespan_context(app):
            server = AsgiServer(app, "127.0.0.1", settings.port)
            await server.start()
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}",
                                             timeout=30) as http:
                    yield Stack(app, settings, http, producer, sealer)
            finally:
                await server.stop()
    finally:
        await producer.stop()


# ------------------------------------------------------------------ dispatch as its own process


async def until(predicate, what: str, timeout: float = WAIT_S) -> None:  # noqa: ANN001
    """Wait for `predicate()` (run in a thread: it may read the database) to be true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(predicate):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def healthy(port: int) -> bool:
    """Whether the dispatch on `port` answers ready."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def subprocess_env(settings: DispatchSettings) -> dict[str, str]:
    """The environment for `python -m services.dispatch` with these settings."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "PANUI_DATABASE_URL": settings.database_url, "PANUI_LOG_LEVEL": "WARNING"}
    for name in ("topic_prefix", "port", "smtp_port", "sms_primary_url", "sms_secondary_url",
                 "receipt_callback_base_url", "quiet_hours_enabled", "sending_lease_s",
                 "send_deadline_s", "sms_timeout_s", "smtp_timeout_s", "smtp_pool_size",
                 "sender_stop_grace_s", "retry_base_s", "retry_cap_s",
                 "retry_max_attempts", "sender_idle_poll_s", "consumer_poll_timeout_ms",
                 "outbox_poll_interval_s", "status_lookup_enabled", "status_lookup_after_s",
                 "status_lookup_interval_s", "status_lookup_max_age_s", "status_lookup_batch",
                 "status_lookup_period_s"):
        env[f"PANUI_{name.upper()}"] = str(getattr(settings, name))
    for name in ("data_keys", "receipt_secret", "coordinator_tokens"):
        value = getattr(settings, name)
        env[f"PANUI_{name.upper()}"] = value.get_secret_value() if hasattr(
            value, "get_secret_value") else str(value)
    return env
