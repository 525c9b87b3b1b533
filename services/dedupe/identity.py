"""Identity state: one in-memory resolver per incident, for the incidents on partitions this
instance owns. A resolver is rebuilt from the database the first time its incident is needed
after an assignment (restart, rebalance), and dropped when its partition is revoked."""

import logging

from sqlmodel import Session, select

from services.common.crypto import Sealer
from services.common.messages import SealedPersonalFields
from services.dedupe.models import RecordState, ReviewState
from services.dedupe.notices import open_record
from services.dedupe.resolver import MatchRecord, Resolver, ResolverConfig

log = logging.getLogger(__name__)


def match_record(sealer: Sealer, record: RecordState) -> MatchRecord:
    personal = SealedPersonalFields.model_validate(open_record(sealer, record))
    clean = personal.model_dump(mode="json")
    clean["source_record_id"] = record.source_record_id
    return MatchRecord.from_clean(record.agency_id, clean)


class IdentityState:
    def __init__(self, sealer: Sealer, config: ResolverConfig | None = None):
        self.sealer = sealer
        self.config = config
        self._resolvers: dict[str, Resolver] = {}
        self._partition_of: dict[str, int] = {}

    def resolver(self, session: Session, incident_id: str, partition: int | None) -> Resolver:
        resolver = self._resolvers.get(incident_id)
        if resolver is None:
            resolver = self._load(session, incident_id)
            self._resolvers[incident_id] = resolver
        if partition is not None:
            self._partition_of[incident_id] = partition
        return resolver

    def _load(self, session: Session, incident_id: str) -> Resolver:
        records = session.exec(
            select(RecordState).where(
                RecordState.incident_id == incident_id,
                RecordState.withdrawn == False,  # noqa: E712 - SQL expression
            )
        ).all()
        resolver = Resolver(self.config)
        resolver.add_many(match_record(self.sealer, r) for r in records)
        # Coordinators' review decisions are part of the state: apply them again.
        decided = session.exec(select(ReviewState).where(
            ReviewState.incident_id == incident_id,
            ReviewState.status.in_(("merge", "keep_apart")))).all()
        for row in decided:
            a = (row.a_agency_id, row.a_source_record_id)
            b = (row.b_agency_id, row.b_source_record_id)
            if a in resolver and b in resolver:
                resolver.decide(a, b, same_person=row.status == "merge")
        resolver.drain_changes()  # the database already holds these assignments
        if records:
            log.info("resolver rebuilt from the database", extra={"incident_id": incident_id,
                                                                  "count": len(records)})
        return resolver

    def forget_partitions(self, partitions: set[int]) -> None:
        for incident_id in [i for i, p in self._partition_of.items() if p in partitions]:
            self._resolvers.pop(incident_id, None)
            self._partition_of.pop(incident_id, None)

    def loaded(self, incident_id: str) -> Resolver | None:
        return self._resolvers.get(incident_id)
