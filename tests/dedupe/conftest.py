"""A running dedupe service on the real broker and a fresh PostgreSQL database, plus the
means to feed it contract messages and observe the notices it releases."""

import asyncio
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlmodel import Session, select

from services.common.crypto import Sealer
from services.common.db import make_engine
from services.common.messages import (
    NoticeHoldMessage,
    NoticeMessage,
    SealedRecipient,
    decode_notices_topic,
    notice_sealing_context,
)
from services.dedupe.app import create_app
from services.dedupe.models import RecordState
from services.dedupe.settings import DedupeSettings
from testkit.infra import WAIT_S, TopicReader
from testkit.messages import publish
from tests.conftest import COORDINATOR_TOKEN, running

AROHA = {"nhi": "ZZZ0016", "given_names": "Aroha", "family_name": "Testperson",
         "date_of_birth": "1980-04-12", "email": "aroha.testperson@example.nz",
         "mobile": "+64211234567"}
HEMI = {"nhi": "ZAC5361", "given_names": "Hemi", "family_name": "Kaimahi",
        "date_of_birth": "1975-11-02", "mobile": "+64221112222"}


def _only(messages, kind: type) -> list:  # noqa: ANN001
    decoded = (decode_notices_topic(m.value) for m in messages)
    return [m for m in decoded if isinstance(m, kind)]


@dataclass
class DedupeHarness:
    client: object
    sealer: Sealer
    settings: DedupeSettings
    bootstrap: str
    notices_reader: TopicReader
    opener: object = None  # the service's vault: opens the notices it sealed (v2) as well

    def open_notice(self, notice: NoticeMessage) -> dict:
        return self.opener.open(notice.sealed, notice_sealing_context(notice.notice_id))

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

    async def wait_applied(self, incident_id: str, count: int, timeout: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout):
            while self.applied(incident_id) < count:
                await asyncio.sleep(0.1)

    async def notices(self, count: int, timeout: float = WAIT_S) -> list[NoticeMessage]:
        """The first `count` notices on notices.v1 (the notice-hold messages left aside)."""
        await self.notices_reader.wait_for(lambda m: len(_only(m, NoticeMessage)) >= count,
                                           timeout)
        return _only(self.notices_reader.messages, NoticeMessage)

    async def topic(self, count: int, timeout: float = WAIT_S
                    ) -> list[NoticeMessage | NoticeHoldMessage]:
        """Everything on notices.v1 in order — notices and notice-hold — once `count` are."""
        messages = await self.notices_reader.wait_for(lambda m: len(m) >= count, timeout)
        return [decode_notices_topic(m.value) for m in messages]

    async def no_more_notices(self, expected: int, settle: float = 2.5) -> list[NoticeMessage]:
        """Wait a little for anything unexpected, then return all notices seen."""
        await asyncio.sleep(settle)
        await self.notices_reader.drain()
        notices = _only(self.notices_reader.messages, NoticeMessage)
        assert len(notices) == expected, [(n.person_id, n.version) for n in notices]
        return notices

    def recipient(self, notice: NoticeMessage) -> SealedRecipient:
        return SealedRecipient.model_validate(self.open_notice(notice))

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
    app = create_app(settings)
    async with running(app) as client:
        reader = TopicReader(kafka_bootstrap, f"{settings.topic_prefix}notices.v1")
        await reader.start()
        try:
            yield DedupeHarness(client, sealer, settings, kafka_bootstrap, reader,
                                app.state.runtime.vault)
        finally:
            await reader.stop()


@pytest.fixture
def dedupe_engine(pg_database):  # noqa: ANN001, ANN201
    """An engine on a fresh PostgreSQL database holding dedupe's tables (and its outbox)."""
    engine = make_engine(pg_database("dedupe"))
    yield engine
    engine.dispose()


# --- ground truth ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tally:
    """Notices per real (synthetic) person, identified by the recipient's email: who was
    notified exactly once, never, or more than once. A republished notice (same notice id)
    is one notice: consumers dedupe it by its id."""

    expected: frozenset[str]
    notices: dict[str, list[NoticeMessage]]

    @property
    def once(self) -> set[str]:
        return {e for e in self.expected if len(self.firsts(e)) == 1}

    @property
    def never(self) -> set[str]:
        return {e for e in self.expected if not self.notices.get(e)}

    @property
    def twice(self) -> set[str]:
        return {e for e in self.expected if len(self.firsts(e)) > 1}

    @property
    def unexpected(self) -> set[str]:
        return set(self.notices) - self.expected

    def firsts(self, email: str) -> list[NoticeMessage]:
        """The notices this person got that were not amendments of one they already had."""
        seen: set[str] = set()
        firsts = []
        for n in self.notices.get(email, []):
            if n.person_id not in seen:
                seen.add(n.person_id)
                firsts.append(n)
        return firsts


def tally(sealer: Sealer, notices: list[NoticeMessage], expected_emails) -> Tally:  # noqa: ANN001
    by_email: dict[str, dict[str, NoticeMessage]] = {}
    for n in notices:
        recipient = SealedRecipient.model_validate(
            sealer.open(n.sealed, notice_sealing_context(n.notice_id))).recipient
        by_email.setdefault(recipient.email or recipient.mobile or "?", {})[n.notice_id] = n
    return Tally(frozenset(expected_emails),
                 {e: sorted(ns.values(), key=lambda n: n.version) for e, ns in by_email.items()})


async def rewind_group(bootstrap: str, group: str, topic: str, partitions: int) -> None:
    """Commit offset 0 for every partition of `topic` in `group` (the group must be idle):
    its next consumer replays the partition from the beginning."""
    rewind = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                              enable_auto_commit=False)
    await rewind.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        rewind.assign(tps)
        await rewind.commit({tp: 0 for tp in tps})
    finally:
        await rewind.stop()


async def wait_caught_up(worker, topic: str, partitions: int, timeout: float = WAIT_S) -> None:  # noqa: ANN001
    """Until `worker` (a running ConsumerWorker) has committed up to the end of `topic`."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    async with asyncio.timeout(timeout):
        while True:
            ends = await worker.consumer.end_offsets(tps)
            lag = 0
            for tp in tps:
                lag += ends[tp] - ((await worker.consumer.committed(tp)) or 0)
            if lag == 0:
                return
            await asyncio.sleep(0.2)
