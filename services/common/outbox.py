"""Transactional outbox: a service writes its state change and the message announcing it in
one database transaction; the relay publishes pending messages to Kafka in order.

A crash between publishing and deleting the row republishes that message once more; every
consumer treats messages idempotently (message ids, versions), so nothing happens twice.
"""

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import Column, LargeBinary, delete, text
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel  # noqa: I001

from services.common import metrics
from services.common.db import run_db
from services.common.settings import ServiceSettings
from services.common.signing import MessageSigner, signed_topics
from services.common.tasks import RestartPolicy, SupervisedLoop, finish
from services.common.topics import TopicSpec

log = logging.getLogger(__name__)

# One relay at a time per database keeps per-key order even with several replicas.
_RELAY_LOCK_ID = 0x50414E5549  # "PANUI"


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_message"

    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=100)  # logical topic name, without the deployment prefix
    key: str = Field(max_length=200)  # never personal data
    # None: a tombstone (a purged incident's data key on the compacted lifecycle topic).
    payload: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def enqueue(session: Session, topic: TopicSpec, key: str, payload: bytes | None) -> None:
    session.add(OutboxMessage(topic=topic.name, key=key, payload=payload))


def enqueue_many(session: Session, topic: TopicSpec, messages: list[tuple[str, bytes]]) -> None:
    """Many messages (key, payload) in one executemany INSERT, in this order, without an ORM
    object each. Flush the session first if it holds rows that must be published before."""
    if messages:
        now = datetime.now(UTC)
        session.execute(sa_insert(OutboxMessage.__table__), [
            {"topic": topic.name, "key": key, "payload": payload, "created_at": now}
            for key, payload in messages])


class OutboxRelay:
    def __init__(self, settings: ServiceSettings, engine: Engine, producer,  # noqa: ANN001
                 policy: RestartPolicy | None = None, signer: MessageSigner | None = None):
        self.settings = settings
        # Incident and notice messages are signed as they leave the service (signing.py).
        self.signer = signer
        self._signed = set(signed_topics())
        self.engine = engine
        self.producer = producer
        self._wake = asyncio.Event()
        self._lock_conn = None
        self._stopping = False
        self.loop = SupervisedLoop("outbox-relay", self._run, service=settings.service_name,
                                   should_stop=lambda: self._stopping, policy=policy)

    def start(self) -> None:
        self.loop.start()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Finish the batch in flight (publish and delete), so a clean stop republishes nothing,
        then publish what is still pending — the services stop their consumers first, so that
        is what their last batches enqueued — for as long as `grace_s` allows."""
        self._stopping = True
        self._wake.set()
        await finish(self.loop.task, grace_s)
        await run_db(self._release_leadership)

    def wake(self) -> None:
        """Called after a commit that enqueued messages, so they go out without waiting a poll."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self.loop.running

    async def _run(self) -> None:
        while not self._stopping:
            try:
                with self.loop.working():
                    published = await self.publish_pending()
            except asyncio.CancelledError:
                raise
            except Exception:  # the batch stays in the outbox and is retried
                log.exception("outbox relay: publish failed; will retry")
                published = 0
                await asyncio.sleep(1.0)
            if published < self.settings.outbox_batch_size and not self._stopping:
                try:
                    await asyncio.wait_for(
                        self._wake.wait(), timeout=self.settings.outbox_poll_interval_s
                    )
                except TimeoutError:
                    pass
                self._wake.clear()
        await self._drain()

    async def _drain(self) -> None:
        try:
            while await self.publish_pending() >= self.settings.outbox_batch_size:
                pass
        except Exception as exc:  # noqa: BLE001 - stopping: what is left goes at the next start
            log.warning("outbox relay: publishing at stop failed (%s); the rest stays pending",
                        type(exc).__name__)

    async def publish_pending(self) -> int:
        """Publish one batch of pending messages; returns how many were published."""
        batch = await run_db(self._claim_batch)
        if not batch:
            return 0
        prefix = self.settings.topic_prefix
        futures = [await self.producer.send(f"{prefix}{topic}", value=self._sign(topic, payload),
                                            key=key.encode())
                   for _id, topic, key, payload in batch]
        await asyncio.gather(*futures)
        await run_db(self._delete, [row[0] for row in batch])
        for topic, count in Counter(row[1] for row in batch).items():
            metrics.OUTBOX_PUBLISHED.labels(service=self.settings.service_name, topic=topic).inc(count)
        return len(batch)

    def _sign(self, topic: str, payload: bytes | None) -> bytes | None:
        if payload is None or self.signer is None or topic not in self._signed:  # a tombstone
            return payload
        return self.signer.sign(payload)

    def _is_leader(self) -> bool:
        """On PostgreSQL, only the replica holding the relay's advisory lock publishes; the lock
        lives as long as its connection, so a dead relay hands over automatically."""
        if self.engine.dialect.name != "postgresql":
            return True
        if self._lock_conn is not None:
            try:
                self._lock_conn.execute(text("SELECT 1"))
                return True
            except Exception:  # the connection (and with it the lock) is gone: compete again
                self._release_leadership()
        conn = self.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": _RELAY_LOCK_ID}).scalar()
        conn.commit()
        if got:
            self._lock_conn = conn
            return True
        conn.close()
        return False

    def _release_leadership(self) -> None:
        if self._lock_conn is not None:
            try:
                self._lock_conn.close()
            finally:
                self._lock_conn = None

    def _claim_batch(self) -> list[tuple[int, str, str, bytes]]:
        if not self._is_leader():
            return []
        table = OutboxMessage.__table__
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(
                sa_select(table.c.id, table.c.topic, table.c.key, table.c.payload)
                .order_by(table.c.id).limit(self.settings.outbox_batch_size))]

    def _delete(self, ids: list[int]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(OutboxMessage.__table__).where(OutboxMessage.__table__.c.id.in_(ids)))

    def pending_count(self) -> int:
        with Session(self.engine) as session:
            return session.execute(text("SELECT count(*) FROM outbox_message")).scalar_one()
