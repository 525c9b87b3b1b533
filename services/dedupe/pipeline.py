"""Turning affected-record messages into identity state and released notices.

Everything one batch changes — records, person assignments, release state, notices and the
outbox rows announcing them — commits in one transaction, before the consumer commits its
offsets. Replays change nothing: older or equal record versions are ignored, and notices
have deterministic ids with one row per (incident, person, version).
"""

import logging
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.common import outbox
from services.common.crypto import Sealer
from services.common.db import session_scope
from services.common.ids import stable_id
from services.common.messages import (
    AffectedRecordMessage,
    AffectedRecordsTopicMessage,
    ContributionCompleteMessage,
    IncidentMessage,
    RecordWithdrawnMessage,
    ReleasePolicy,
    utcnow,
)
from services.common.topics import NOTICES
from services.dedupe import records
from services.dedupe.identity import IdentityState, match_record
from services.dedupe.models import (
    IncidentState,
    NoticeState,
    PersonState,
    RecordState,
    ReviewState,
)
from services.dedupe.notices import build_notice
from services.dedupe.release import Action, PersonView, decide, incident_release_reason

log = logging.getLogger(__name__)
RecordKey = tuple[str, str]


class DedupePipeline:
    def __init__(self, engine: Engine, sealer: Sealer, identity: IdentityState | None = None,
                 clock=utcnow):  # noqa: ANN001
        self.engine = engine
        self.sealer = sealer
        self.identity = identity or IdentityState(sealer)
        self.clock = clock
        self._reviews_stale: set[str] = set()

    # --- the affected-records topic -------------------------------------------------------------

    def apply_batch(self, partition: int, messages: list[AffectedRecordsTopicMessage]) -> int:
        """Apply messages in order; returns how many notices were released."""
        now = self.clock()
        with session_scope(self.engine) as session:
            changed: dict[str, set[RecordKey]] = {}
            for msg in messages:
                incident = _incident(session, msg.incident_id)
                incident.partition = partition
                session.add(incident)
                resolver = self.identity.resolver(session, msg.incident_id, partition)
                keys = changed.setdefault(msg.incident_id, set())
                if isinstance(msg, AffectedRecordMessage):
                    state = records.apply_record(session, msg)
                    if state is not None:
                        resolver.add(match_record(self.sealer, state))
                        keys.add((state.agency_id, state.source_record_id))
                elif isinstance(msg, RecordWithdrawnMessage):
                    state = records.apply_withdrawal(session, msg)
                    if state is not None:
                        key = (state.agency_id, state.source_record_id)
                        if key in resolver:
                            resolver.remove(*key)
                        keys.add(key)
                elif isinstance(msg, ContributionCompleteMessage):
                    incident.completed = {**incident.completed, msg.agency_id: msg.record_count}
            released = 0
            for incident_id, keys in changed.items():
                released += self._settle(session, incident_id, keys, now)
        return released

    def _settle(self, session: Session, incident_id: str, keys: set[RecordKey], now: datetime) -> int:
        """After the resolver changed: store assignments, then make release decisions."""
        resolver = self.identity.loaded(incident_id)
        keys |= resolver.drain_changes()
        if keys:
            self._sync_persons(session, incident_id, keys, resolver, now)
            self._reviews_stale.add(incident_id)
        return self._release(session, incident_id, now)

    def _sync_persons(self, session: Session, incident_id: str, keys: set[RecordKey],
                      resolver, now: datetime) -> None:  # noqa: ANN001
        """Store the resolver's person for each changed record and mark the persons it
        left and joined as needing a release decision."""
        touched: set[str] = set()
        moved_from: dict[str, set[str]] = {}
        for agency_id, source_record_id in keys:
            state = records.find_record(session, incident_id, agency_id, source_record_id)
            if state is None:
                continue
            new = None if state.withdrawn else resolver.person_of(agency_id, source_record_id)
            old = state.person_id
            if old:
                touched.add(old)
            if new:
                touched.add(new)
                if old and old != new:
                    moved_from.setdefault(new, set()).add(old)
            if new != old:
                state.person_id = new
                session.add(state)
        session.flush()
        for person_id in sorted(touched):
            person = session.get(PersonState, (incident_id, person_id))
            if person is None:
                person = PersonState(incident_id=incident_id, person_id=person_id,
                                     first_seen_at=now, changed_at=now)
            person.changed_at = now
            person.dirty = True
            _inherit_notice_lineage(session, person, moved_from.get(person_id, set()))
            session.add(person)

    # --- release ---------------------------------------------------------------------------------

    def tick(self, partitions: set[int]) -> int:
        """Time-driven work for the incidents on owned partitions: deadlines, settle windows,
        manual releases. Returns how many notices were released."""
        now = self.clock()
        released = 0
        with session_scope(self.engine) as session:
            owned = session.exec(
                select(IncidentState.incident_id).where(IncidentState.partition.in_(partitions))
            ).all()
            for incident_id in owned:
                released += self._apply_review_decisions(session, incident_id, now)
                released += self._release(session, incident_id, now)
                if incident_id in self._reviews_stale:
                    self._sync_reviews(session, incident_id)
        return released

    # --- review queue ------------------------------------------------------------------------------

    def _sync_reviews(self, session: Session, incident_id: str) -> None:
        """Mirror the resolver's uncertain pairs into the review queue (evidence names levels
        and weights, never values). Decided rows keep their decision."""
        resolver = self.identity.loaded(incident_id)
        if resolver is None:
            return
        self._reviews_stale.discard(incident_id)
        current = {review_id(incident_id, i.a, i.b): i for i in resolver.review_items()}
        rows = {r.review_id: r for r in session.exec(
            select(ReviewState).where(ReviewState.incident_id == incident_id)).all()}
        now = self.clock()
        for rid, item in current.items():
            row = rows.get(rid)
            if row is None:
                row = ReviewState(
                    review_id=rid, incident_id=incident_id,
                    a_agency_id=item.a[0], a_source_record_id=item.a[1],
                    b_agency_id=item.b[0], b_source_record_id=item.b[1],
                    reason=item.why, evidence=item.evidence.to_dict())
            elif row.status in ("open", "resolved"):
                row.status = "open"
                row.reason = item.why
                row.evidence = item.evidence.to_dict()
            row.updated_at = now
            session.add(row)
        for rid, row in rows.items():
            if rid not in current and row.status == "open":
                row.status = "resolved"  # the pair no longer needs a decision
                row.updated_at = now
                session.add(row)

    def _apply_review_decisions(self, session: Session, incident_id: str, now: datetime) -> int:
        pending = session.exec(select(ReviewState).where(
            ReviewState.incident_id == incident_id, ReviewState.applied == False)).all()  # noqa: E712
        if not pending:
            return 0
        resolver = self.identity.resolver(session, incident_id, None)
        for row in pending:
            a = (row.a_agency_id, row.a_source_record_id)
            b = (row.b_agency_id, row.b_source_record_id)
            if a in resolver and b in resolver:
                resolver.decide(a, b, same_person=row.status == "merge")
            row.applied = True
            session.add(row)
        return self._settle(session, incident_id, set(), now)

    def decide_review(self, incident_id: str, review_id_: str, same_person: bool) -> ReviewState | None:
        """Record a coordinator's decision; the partition owner applies it on its next tick."""
        with session_scope(self.engine) as session:
            row = session.get(ReviewState, review_id_)
            if row is None or row.incident_id != incident_id:
                return None
            row.status = "merge" if same_person else "keep_apart"
            row.decided_at = self.clock()
            row.applied = False
            session.add(row)
            return row

    def _release(self, session: Session, incident_id: str, now: datetime) -> int:
        incident = _incident(session, incident_id)
        policy = ReleasePolicy.model_validate(incident.release_policy or {})
        if incident.released_at is None:
            reason = incident_release_reason(
                incident.expected_agency_ids, set(incident.completed), policy,
                incident.manual_release_requested_at is not None, now)
            if reason is None:
                return 0
            incident.released_at = now
            incident.release_reason = reason.value
            session.add(incident)
            log.info("incident released", extra={"incident_id": incident_id})
        dirty = session.exec(
            select(PersonState).where(PersonState.incident_id == incident_id,
                                      PersonState.dirty == True)  # noqa: E712
        ).all()
        released = 0
        live = self._live_records(session, incident_id, [p.person_id for p in dirty])
        for person in dirty:
            released += self._decide_person(session, incident, policy, person,
                                            live.get(person.person_id, []), now)
        return released

    @staticmethod
    def _live_records(session: Session, incident_id: str, person_ids: list[str]
                      ) -> dict[str, list[RecordState]]:
        """Live records of many persons in a few queries (a release can touch every person)."""
        grouped: dict[str, list[RecordState]] = {}
        for i in range(0, len(person_ids), 1000):
            rows = session.exec(select(RecordState).where(
                RecordState.incident_id == incident_id,
                RecordState.person_id.in_(person_ids[i:i + 1000]),
                RecordState.withdrawn == False,  # noqa: E712
            )).all()
            for row in rows:
                grouped.setdefault(row.person_id, []).append(row)
        return grouped

    def _decide_person(self, session: Session, incident: IncidentState, policy: ReleasePolicy,
                       person: PersonState, live: list[RecordState], now: datetime) -> int:
        view = PersonView(
            live_records=len(live),
            any_on_hold=any(r.on_hold for r in live),
            agency_ids=frozenset(r.agency_id for r in live),
            categories=frozenset(c for r in live for c in r.data_categories),
            first_seen_at=person.first_seen_at,
            changed_at=person.changed_at,
            notified_version=person.notified_version,
            notified_agency_ids=frozenset(person.notified_agency_ids),
            notified_categories=frozenset(person.notified_categories),
        )
        decision = decide(view, incident.released_at, policy, now)
        if decision.action == Action.WAIT:
            return 0  # stays dirty; a later tick decides
        person.dirty = False
        if decision.action == Action.NOTHING:
            if not live:
                person.status = "empty" if person.notified_version == 0 else person.status
            session.add(person)
            return 0
        if decision.action == Action.HOLD:
            person.status = "held"
            session.add(person)
            return 0
        notice_person_id = person.notice_person_id or person.person_id
        version = person.notified_version + 1
        notice = build_notice(self.sealer, incident.incident_id, notice_person_id, version, live,
                              incident.agency_names)
        session.add(NoticeState(
            notice_id=notice.notice_id, incident_id=incident.incident_id,
            person_id=notice_person_id, version=version,
            agency_ids=sorted(view.agency_ids), data_categories=sorted(view.categories),
        ))
        outbox.enqueue(session, NOTICES, notice_person_id, notice.to_bytes())
        person.status = "notified"
        person.notice_person_id = notice_person_id
        person.notified_version = version
        person.notified_agency_ids = sorted(view.agency_ids | view.notified_agency_ids)
        person.notified_categories = sorted(view.categories | view.notified_categories)
        session.add(person)
        return 1

    # --- the incidents topic ----------------------------------------------------------------------

    def apply_incidents(self, messages: list[IncidentMessage]) -> None:
        with session_scope(self.engine) as session:
            for msg in messages:
                incident = _incident(session, msg.incident_id)
                if msg.revision <= incident.revision:
                    continue
                incident.revision = msg.revision
                incident.agency_names = {a.agency_id: a.name for a in msg.agencies}
                incident.expected_agency_ids = list(msg.expected_agency_ids)
                incident.release_policy = msg.release_policy.model_dump(mode="json")
                session.add(incident)

    def request_manual_release(self, incident_id: str) -> IncidentState | None:
        with session_scope(self.engine) as session:
            incident = session.get(IncidentState, incident_id)
            if incident is None:
                return None
            incident.manual_release_requested_at = incident.manual_release_requested_at or self.clock()
            session.add(incident)
            return incident


def review_id(incident_id: str, a: RecordKey, b: RecordKey) -> str:
    return stable_id("rev", incident_id, *min(a, b), *max(a, b))


def _incident(session: Session, incident_id: str) -> IncidentState:
    incident = session.get(IncidentState, incident_id)
    if incident is None:
        incident = IncidentState(incident_id=incident_id)
        session.add(incident)
        session.flush()
    return incident


def _inherit_notice_lineage(session: Session, person: PersonState, previous_ids: set[str]) -> None:
    """A person the resolver re-identified (records joined or split) keeps the notice history
    of the person their records came from, so the next notice is an amendment, not a second
    first notice. When records of several notified persons merge, the earliest lineage wins."""
    if person.notified_version > 0 or not previous_ids:
        return
    ancestors = [session.get(PersonState, (person.incident_id, pid)) for pid in sorted(previous_ids)]
    notified = [a for a in ancestors if a is not None and a.notified_version > 0]
    if not notified:
        return
    first = min(notified, key=lambda a: (a.notice_person_id or a.person_id))
    person.notice_person_id = first.notice_person_id or first.person_id
    person.notified_version = max(a.notified_version for a in notified
                                  if (a.notice_person_id or a.person_id) == person.notice_person_id)
    person.notified_agency_ids = sorted({x for a in notified for x in a.notified_agency_ids})
    person.notified_categories = sorted({x for a in notified for x in a.notified_categories})
