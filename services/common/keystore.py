"""A service's store of incident data keys (table `data_key`, in every service's own database),
wrapped by the purpose's KEK — the Vault's KeySource (services/common/crypto.py).

The service that seals for a purpose (intake: records; dedupe: notices) makes the key and, in
the same transaction, announces it on the incident-lifecycle topic through the outbox; the
services that open it (dedupe: records; dispatch: notices) store what they read there. A
destroyed key keeps its row with `wrapped` NULL, so "destroyed" is told from "not arrived yet".
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import Column, String, Text, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel

from services.common import outbox
from services.common.crypto import NOTICES, RECORDS, KeySource, Sealer, WrappedKey, envelope_key_id
from services.common.db import Database
from services.common.messages import (
    IncidentKeyMessage,
    IncidentPurgedMessage,
    incident_key_kafka_key,
)
from services.common.topics import INCIDENT_LIFECYCLE, NOTICE_KEYS, TopicSpec

# Where each purpose's data keys are announced (by the one service that makes them).
KEY_TOPICS: dict[str, TopicSpec] = {RECORDS: INCIDENT_LIFECYCLE, NOTICES: NOTICE_KEYS}


class DataKey(SQLModel, table=True):
    __tablename__ = "data_key"

    key_id: str = Field(sa_column=Column(String(32), primary_key=True))
    incident_id: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    purpose: str = Field(max_length=16)
    kek_id: str = Field(max_length=64)
    wrapped: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    destroyed_at: datetime | None = None


def _plain(row: DataKey) -> WrappedKey:
    return WrappedKey(row.key_id, row.incident_id, row.purpose, row.kek_id, row.wrapped)


def load(session: Session, key_id: str) -> WrappedKey | None:
    row = session.get(DataKey, key_id)
    return _plain(row) if row else None


def active(session: Session, incident_id: str, purpose: str) -> WrappedKey | None:
    """The incident's data key for the purpose: the first made (one per incident and purpose)."""
    row = session.scalars(select(DataKey).where(DataKey.incident_id == incident_id,
                                                DataKey.purpose == purpose)
                          .order_by(DataKey.created_at, DataKey.key_id).limit(1)).first()
    return _plain(row) if row else None


def store_received(session: Session, key: WrappedKey) -> None:
    """A key read on the lifecycle topic (idempotent; never revives a destroyed one)."""
    if session.get(DataKey, key.key_id) is None:
        session.add(DataKey(key_id=key.key_id, incident_id=key.incident_id, purpose=key.purpose,
                            kek_id=key.kek_id, wrapped=key.wrapped))


def destroy_incident(session: Session, incident_id: str, purpose: str | None = None) -> list[str]:
    """Destroy the incident's data keys (of one purpose, or all): the wrapped bytes are
    overwritten with NULL, the row stays (so "destroyed" is not "not arrived"); their ids."""
    where = [DataKey.incident_id == incident_id]
    if purpose is not None:
        where.append(DataKey.purpose == purpose)
    ids = list(session.scalars(select(DataKey.key_id).where(*where, DataKey.wrapped.is_not(None))))
    session.execute(update(DataKey).where(*where, DataKey.wrapped.is_not(None))
                    .values(wrapped=None, destroyed_at=datetime.now(UTC)))
    return ids


def destroyed(session: Session, sealed_values: list[str]) -> set[str]:
    """The data key ids of these v2 values whose key this store holds destroyed (purged)."""
    wanted = {envelope_key_id(s)[1] for s in sealed_values if s.startswith("v2.")}
    if not wanted:
        return set()
    return set(session.scalars(select(DataKey.key_id).where(DataKey.key_id.in_(wanted),
                                                            DataKey.wrapped.is_(None))))


def rewrap_batch(session: Session, kek: Sealer, purpose: str, limit: int = 500) -> int:
    """Re-wrap up to `limit` live keys of the purpose not yet under the active KEK; how many.
    Resumable by construction: what is left is exactly the rows still under another KEK."""
    rows = list(session.scalars(select(DataKey).where(DataKey.purpose == purpose,
                                                      DataKey.kek_id != kek.active_id,
                                                      DataKey.wrapped.is_not(None)).limit(limit)))
    for row in rows:
        raw = kek.unwrap(row.kek_id, row.wrapped, row.key_id)
        row.kek_id, row.wrapped = kek.wrap(raw, row.key_id)
        session.add(row)
    return len(rows)


def announce_tombstones(session: Session, incident_id: str, purpose: str, key_ids: list[str]) -> None:
    """Tombstone the incident's key messages on their compacted topic."""
    for key_id in key_ids:
        outbox.enqueue(session, KEY_TOPICS[purpose], incident_key_kafka_key(incident_id, key_id), None)


class DatabaseKeySource(KeySource):
    """The Vault's view of this service's key store, through short transactions of its own
    (the Vault is called from inside other units of work, in worker threads)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def load(self, key_id: str) -> WrappedKey | None:
        with Session(self.engine) as session:
            return load(session, key_id)

    def active(self, incident_id: str, purpose: str) -> WrappedKey | None:
        with Session(self.engine) as session:
            return active(session, incident_id, purpose)

    def create(self, key: WrappedKey) -> WrappedKey:
        with Session(self.engine) as session, session.begin():
            session.add(DataKey(key_id=key.key_id, incident_id=key.incident_id,
                                purpose=key.purpose, kek_id=key.kek_id, wrapped=key.wrapped))
            message = IncidentKeyMessage(incident_id=key.incident_id, purpose=key.purpose,
                                         key_id=key.key_id, kek_id=key.kek_id,
                                         wrapped_key=key.wrapped, created_at=datetime.now(UTC))
            outbox.enqueue(session, KEY_TOPICS[key.purpose], message.kafka_key(), message.to_bytes())
        with Session(self.engine) as session:
            return active(session, key.incident_id, key.purpose)  # a concurrent maker may have won


def missing_keys(session: Session, sealed_values: list[str]) -> set[str]:
    """The data key ids of these v2 values this store holds no row for (not arrived yet)."""
    wanted = {envelope_key_id(s)[1] for s in sealed_values if s.startswith("v2.")}
    if not wanted:
        return set()
    have = set(session.scalars(select(DataKey.key_id).where(DataKey.key_id.in_(wanted))))
    return wanted - have


def key_wait() -> asyncio.Future:
    """What a consumer waits on (PartitionBusy) while a data key has not arrived yet."""
    return asyncio.ensure_future(asyncio.sleep(_KEY_WAIT_S))


_KEY_WAIT_S = 0.5


class IncidentKeysHandler:
    """The incident-lifecycle follower's handler for keys: stores the data keys of the purposes
    this service holds (the others it cannot unwrap and does not keep). Lifecycle messages go
    to `on_purged` (the service's purge of its own rows), after the keys of the batch."""

    def __init__(self, db: Database, purposes: tuple[str, ...],
                 on_purged: Callable[[IncidentPurgedMessage], Awaitable[None]] | None = None):
        self.db, self.purposes, self.on_purged = db, purposes, on_purged

    async def __call__(self, _tp: object, batch: list) -> None:
        keys = [WrappedKey(m.key_id, m.incident_id, m.purpose, m.kek_id, m.wrapped_key)
                for m in (c.message for c in batch)
                if isinstance(m, IncidentKeyMessage) and m.purpose in self.purposes]
        if keys:
            await self.db.run(_store_all, keys)
        for c in batch:
            if isinstance(c.message, IncidentPurgedMessage) and self.on_purged is not None:
                await self.on_purged(c.message)


def _store_all(session: Session, keys: list[WrappedKey]) -> None:
    for key in keys:
        store_received(session, key)
