"""Identity state held in memory for the incidents on partitions this instance owns: one
resolver per incident, plus what the release policy needs to know of every record and person.

It is rebuilt from the database the first time an incident is needed after an assignment
(restart, rebalance) and dropped when its partition is revoked — or when a batch fails, so
memory never runs ahead of what was committed.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, select

from services.common.crypto import Sealer
from services.common.messages import SealedPersonalFields, record_sealing_context
from services.dedupe.models import PersonState, RecordState, ReviewState
from services.dedupe.resolver import MatchRecord, Resolver, ResolverConfig

log = logging.getLogger(__name__)
RecordKey = tuple[str, str]


def match_record(sealer: Sealer, incident_id: str, agency_id: str, source_record_id: str,
                 version: int, sealed: str) -> MatchRecord:
    personal = sealer.open(sealed, record_sealing_context(incident_id, agency_id,
                                                          source_record_id, version))
    clean = SealedPersonalFields.model_validate(personal).model_dump(mode="json")
    clean["source_record_id"] = source_record_id
    return MatchRecord.from_clean(agency_id, clean)


@dataclass(slots=True)
class RecordMeta:
    """What release decisions need of a record; its personal fields stay sealed in the DB."""

    version: int
    person_id: str | None
    withdrawn: bool
    on_hold: bool
    categories: tuple[str, ...]


@dataclass(slots=True)
class PersonMeta:
    first_seen_at: datetime
    changed_at: datetime
    status: str = "pending"
    dirty: bool = True
    notice_person_id: str | None = None
    notified_version: int = 0
    notified_agency_ids: frozenset[str] = frozenset()
    notified_categories: frozenset[str] = frozenset()


@dataclass
class IncidentCache:
    incident_id: str
    resolver: Resolver
    records: dict[RecordKey, RecordMeta] = field(default_factory=dict)
    persons: dict[str, PersonMeta] = field(default_factory=dict)
    members: dict[str, set[RecordKey]] = field(default_factory=dict)  # person → live records
    dirty: set[str] = field(default_factory=set)  # persons awaiting a release decision
    # What the current transaction must write.
    records_to_write: set[RecordKey] = field(default_factory=set)
    persons_to_write: set[str] = field(default_factory=set)

    def set_person(self, key: RecordKey, person_id: str | None) -> str | None:
        """Move a record to a person (None: it left every person); returns the old person."""
        meta = self.records[key]
        old = meta.person_id
        if old == person_id:
            return old
        if old is not None:
            self.members.get(old, set()).discard(key)
        if person_id is not None:
            self.members.setdefault(person_id, set()).add(key)
        meta.person_id = person_id
        self.records_to_write.add(key)
        return old


class IdentityState:
    def __init__(self, sealer: Sealer, config: ResolverConfig | None = None):
        self.sealer = sealer
        self.config = config
        self._incidents: dict[str, IncidentCache] = {}
        self._partition_of: dict[str, int] = {}

    def incident(self, session: Session, incident_id: str, partition: int | None) -> IncidentCache:
        cache = self._incidents.get(incident_id)
        if cache is None:
            cache = self._load(session, incident_id)
            self._incidents[incident_id] = cache
        if partition is not None:
            self._partition_of[incident_id] = partition
        return cache

    def loaded(self, incident_id: str) -> IncidentCache | None:
        return self._incidents.get(incident_id)

    def forget(self, incident_ids) -> None:  # noqa: ANN001
        for incident_id in incident_ids:
            self._incidents.pop(incident_id, None)
            self._partition_of.pop(incident_id, None)

    def forget_partitions(self, partitions: set[int]) -> None:
        self.forget([i for i, p in self._partition_of.items() if p in partitions])

    def _load(self, session: Session, incident_id: str) -> IncidentCache:
        cache = IncidentCache(incident_id, Resolver(self.config))
        rows = session.exec(select(RecordState).where(RecordState.incident_id == incident_id)).all()
        live = []
        for r in rows:
            key = (r.agency_id, r.source_record_id)
            cache.records[key] = RecordMeta(r.record_version, r.person_id, r.withdrawn, r.on_hold,
                                            tuple(r.data_categories))
            if not r.withdrawn:
                live.append(match_record(self.sealer, incident_id, r.agency_id,
                                         r.source_record_id, r.record_version, r.sealed))
                if r.person_id:
                    cache.members.setdefault(r.person_id, set()).add(key)
        cache.resolver.add_many(live)
        # Coordinators' review decisions are part of the state: apply them again.
        decided = session.exec(select(ReviewState).where(
            ReviewState.incident_id == incident_id,
            ReviewState.status.in_(("merge", "keep_apart")))).all()
        for row in decided:
            a = (row.a_agency_id, row.a_source_record_id)
            b = (row.b_agency_id, row.b_source_record_id)
            if a in cache.resolver and b in cache.resolver:
                cache.resolver.decide(a, b, same_person=row.status == "merge")
        cache.resolver.drain_changes()  # the database already holds these assignments
        for p in session.exec(select(PersonState).where(PersonState.incident_id == incident_id)):
            cache.persons[p.person_id] = PersonMeta(
                first_seen_at=p.first_seen_at, changed_at=p.changed_at, status=p.status,
                dirty=p.dirty, notice_person_id=p.notice_person_id,
                notified_version=p.notified_version,
                notified_agency_ids=frozenset(p.notified_agency_ids),
                notified_categories=frozenset(p.notified_categories))
            if p.dirty:
                cache.dirty.add(p.person_id)
        if rows:
            log.info("identity state rebuilt from the database",
                     extra={"incident_id": incident_id, "count": len(rows)})
        return cache
