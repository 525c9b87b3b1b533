"""A running dedupe service on the real broker and a fresh PostgreSQL database, plus the
means to feed it contract messages and observe the notices it releases."""

import asyncio
from dataclasses import dataclass

import pytest
from sqlmodel import Session, select

from services.common.crypto import Sealer
from services.common.db import make_engine
from services.common.messages import NoticeMessage, SealedRecipient, decode_notice, notice_sealing_context
from services.dedupe.app import create_app
from services.dedupe.models import RecordState
from services.dedupe.settings import DedupeSettings
from testkit.infra import TopicReader
from testkit.messages import publish
from tests.conftest import COORDINATOR_TOKEN, running

AROHA = {"nhi": "ZZZ0016", "given_names": "Aroha", "family_name": "Testperson",
         "date_of_birth": "1980-04-12", "email": "aroha.testperson@example.nz",
         "mobile": "+64211234567"}
HEMI = {"nhi": "ZAC5361", "given_names": "Hemi", "family_name": "Kaimahi",
        "date_of_birth": "1975-11-02", "mobile": "+64221112222"}


@dataclass
class DedupeHarness:
    client: object
    sealer: Sealer
    settings: DedupeSettings
    bootstrap: str
    notices_reader: TopicReader

    @property
    def records_topic(self) -> str:
        return f"{self.settings.topic_prefix}affected-records.v1"

    @property
    def incidents_topic(self) -> str:
        return f"{self.settings.topic_prefix}incidents.v1"

    async def send(self, *messages) -> None:
        await publish(self.bootstrap, self.records_topic, list(messages))

    async def send_incident(self, message) -> None:
        await publish(self.bootstrap, self.incidents_topic, [message])

    def applied(self, incident_id: str) -> int:
        engine = make_engine(self.settings.database_url)
        try:
            with Session(engine) as session:
                return len(session.exec(select(RecordState.id).where(
                    RecordState.incident_id == incident_id)).all())
        finally:
            engine.dispose()

    async def wait_applied(self, incident_id: str, count: int, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while self.applied(incident_id) < count:
                await asyncio.sleep(0.1)

    async def notices(self, count: int, timeout: float = 30) -> list[NoticeMessage]:
        messages = await self.notices_reader.wait_for(lambda m: len(m) >= count, timeout)
        return [decode_notice(m.value) for m in messages]

    async def no_more_notices(self, expected: int, settle: float = 2.5) -> list[NoticeMessage]:
        """Wait a little for anything unexpected, then return all notices seen."""
        await asyncio.sleep(settle)
        await self.notices_reader.drain()
        notices = [decode_notice(m.value) for m in self.notices_reader.messages]
        assert len(notices) == expected, [(n.person_id, n.version) for n in notices]
        return notices

    def recipient(self, notice: NoticeMessage) -> SealedRecipient:
        return SealedRecipient.model_validate(
            self.sealer.open(notice.sealed, notice_sealing_context(notice.notice_id)))

    async def progress(self, incident_id: str) -> dict:
        response = await self.client.get(f"/v1/incidents/{incident_id}/progress",
                                         headers={"authorization": f"Bearer {COORDINATOR_TOKEN}"})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def dedupe(service_env, pg_database, kafka_bootstrap):
    settings = DedupeSettings(**service_env, database_url=pg_database("dedupe"), release_tick_s=0.2,
                              review_sync_interval_s=0.2)
    sealer = Sealer(settings.data_keys.get_secret_value())
    async with running(create_app(settings)) as client:
        reader = TopicReader(kafka_bootstrap, f"{settings.topic_prefix}notices.v1")
        await reader.start()
        try:
            yield DedupeHarness(client, sealer, settings, kafka_bootstrap, reader)
        finally:
            await reader.stop()


@pytest.fixture
def dedupe_engine(pg_database):  # noqa: ANN001, ANN201
    """An engine on a fresh PostgreSQL database holding dedupe's tables (and its outbox)."""
    engine = make_engine(pg_database("dedupe"))
    yield engine
    engine.dispose()
