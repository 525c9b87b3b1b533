"""A running dispatch service for tests: real Kafka (per-test topic prefix), a fresh PostgreSQL
database, the local SMTP and SMS gateways on free ports, and the app served over real HTTP
(the gateways call its receipt endpoint back)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from sqlmodel import Session

from services.common.crypto import Sealer
from services.common.ids import notice_id as make_notice_id
from services.common.messages import (
    ChannelPolicy,
    IncidentAgency,
    IncidentContent,
    IncidentMessage,
    NoticeAgency,
    NoticeMessage,
    ReleasePolicy,
    notice_sealing_context,
)
from services.dispatch.app import create_app
from services.dispatch.models import Delivery
from services.dispatch.settings import DispatchSettings
from services.gateways._serve import AsgiServer
from tests.conftest import COORDINATOR_TOKEN

RECEIPT_SECRET = "test-secret"  # noqa: S105 - test-only
COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}

CONTENT = IncidentContent(
    sender_name="Example Health",
    breach_description="On 2 March 2026 an unauthorised party copied records from the portal.",
    suspected_holder_statement="We have identified a group we suspect holds the information.",
    steps_taken="We closed the portal, reset all access and are working with police.",
    mitigation_advice=["Be wary of calls, texts or emails about this breach."],
    privacy_commissioner_notified=True,
    privacy_commissioner_notified_on=date(2026, 3, 4),
    contact={"organisation": "Example Helpline", "phone": "0800 000 111",
             "web_address": "panui.example.nz/check", "hours": "8am-8pm"},
)


def incident_message(incident_id: str = "inc-1", mode: str = "email_else_sms",
                     fallback: tuple[str, ...] = ("email", "sms", "postal"), revision: int = 1,
                     **content) -> IncidentMessage:
    return IncidentMessage(
        incident_id=incident_id,
        revision=revision,
        title="Example portal breach",
        content=CONTENT.model_copy(update=content),
        agencies=[IncidentAgency(agency_id="gp-1", name="Example Medical Centre")],
        expected_agency_ids=["gp-1"],
        release_policy=ReleasePolicy(),
        channel_policy=ChannelPolicy(mode=mode, fallback=list(fallback)),
        updated_at=datetime.now(UTC),
    )


def person(n: int, email: bool = True, mobile: bool = True, address: bool = True, **extra) -> dict:
    recipient = {"given_names": f"Testperson{n}", "family_name": f"Fakename{n}"}
    if email:
        recipient["email"] = f"person{n}@example.nz"
    if mobile:
        recipient["mobile"] = f"+6421{n:07d}"
    if address:
        recipient["address"] = {"line1": f"{n} Test Street", "city": "Testville",
                                "postcode": "9010"}
    recipient.update(extra)
    return recipient


def notice_message(sealer: Sealer, n: int, recipient: dict, incident_id: str = "inc-1",
                   version: int = 1, language: str = "en") -> NoticeMessage:
    person_id = f"prs-{n:06d}"
    nid = make_notice_id(incident_id, person_id, version)
    channels = [c for c, k in (("email", "email"), ("sms", "mobile"), ("postal", "address"))
                if recipient.get(k)]
    return NoticeMessage(
        notice_id=nid, incident_id=incident_id, person_id=person_id, version=version,
        created_at=datetime.now(UTC), preferred_language=language, channels=channels,
        agencies=[NoticeAgency(agency_id="gp-1", name="Example Medical Centre",
                               data_categories=["clinical_notes", "lab_results"],
                               document_count=3)],
        sealed=sealer.seal({"recipient": recipient, "representative": None},
                           notice_sealing_context(nid)),
    )




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

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0,
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
