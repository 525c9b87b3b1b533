"""Turning affected-record messages into identity state and released notices.

Everything one batch changes — records, person assignments, release state, notices and the
outbox rows announcing them — commits in one transaction, before the consumer commits its
offsets. Replays change nothing: older or equal record versions are ignored, and notices
have deterministic ids with one row per (incident, person, version).

Work per batch is a handful of statements whatever its size: the identity state the
decisions need is in memory (identity.py); the database is written in bulk.
"""

import logging
import time
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.common import outbox
from services.common.clock import utcnow
from services.common.crypto import Sealer
from services.common.db import session_scope, upsert
from services.common.ids import stable_id
from services.common.messages import (
    AffectedRecordMessage,
    AffectedRecordsTopicMessage,
    ContributionCompleteMessage,
    IncidentMessage,
    RecordWithdrawnMessage,
    ReleasePolicy,
)
from services.common.topics import NOTICES
from services.dedupe.identity import IdentityState, IncidentCache, PersonMeta, RecordMeta, match_record
from services.dedupe.models import IncidentState, NoticeState, PersonState, RecordState, ReviewState
from services.dedupe.notices import build_notice
from services.dedupe.release import Action, PersonView, decide, incident_release_reason

log = logging.getLogger(__name__)
RecordKey = tuple[str, str]


class DedupePipeline:
    def __init__(self, engine: Engine, sealer: Sealer, identity: IdentityState | None = None,
                 clock=utcnow, review_sync_interval_s: float = 30.0):  # noqa: ANN001
        self.engine = engine
        self.sealer = sealer
        self.identity = identity or IdentityState(sealer)
        self.clock = clock
        # Listing review pairs walks every kept pair of an incident: done on ticks, at most
        # this often per incident, not per batch.
        self.review_sync_interval_s = review_sync_interval_s
        self._reviews_stale: set[str] = set()
        self._reviews_synced_at: dict[str, float] = {}

    # --- the affected-records topic -------------------------------------------------------------

    def apply_batch(self, partition: int, messages: list[AffectedRecordsTopicMessage]) -> int:
        """Apply messages in order; returns how many notices were released."""
        touched: dict[str, set[RecordKey]] = {}
        try:
            with session_scope(self.engine) as session:
                incidents: dict[str, IncidentState] = {}
                record_rows: dict[tuple[str, RecordKey], dict] = {}
                now = self.clock()
                for msg in messages:
                    incident = incidents.get(msg.incident_id)
                    if incident is None:
                        incident = incidents[msg.incident_id] = _incident(session, msg.incident_id)
                        incident.partition = partition
                    cache = self.identity.incident(session, msg.incident_id, partition)
                    keys = touched.setdefault(msg.incident_id, set())
                    if isinstance(msg, AffectedRecordMessage):
                        key = self._apply_record(cache, msg, record_rows, now)
                        if key:
                            keys.add(key)
                    elif isinstance(msg, RecordWithdrawnMessage):
                        key = (msg.agency_id, msg.source_record_id)
                        meta = cache.records.get(key)
                        if meta is not None and not meta.withdrawn:
                            meta.withdrawn = True
                            if key in cache.resolver:
                                cache.resolver.remove(*key)
                            cache.records_to_write.add(key)
                            keys.add(key)
                    elif isinstance(msg, ContributionCompleteMessage):
                        incident.completed = {**incident.completed, msg.agency_id: msg.record_count}
                for incident in incidents.values():
                    session.add(incident)
                released = 0
                for incident_id, keys in touched.items():
                    cache = self.identity.loaded(incident_id)
                    self._settle(cache, keys, now)
                    self._write_records(session, cache, record_rows)
                    released += self._release(session, incidents[incident_id], cache, now)
                    self._write_persons(session, cache)
                return released
        except BaseException:
            self.identity.forget(touched)  # memory must not run ahead of the database
            raise

    def _apply_record(self, cache: IncidentCache, msg: AffectedRecordMessage,
                      record_rows: dict, now: datetime) -> RecordKey | None:
        key = (msg.agency_id, msg.source_record_id)
        meta = cache.records.get(key)
        if meta is not None and meta.version >= msg.record_version:
            return None  # a replay, or an older version arriving late
        if meta is None:
            meta = cache.records[key] = RecordMeta(msg.record_version, None, False, msg.on_hold,
                                                   tuple(msg.data_categories))
        meta.version = msg.record_version
        meta.withdrawn = False
        meta.on_hold = msg.on_hold
        meta.categories = tuple(msg.data_categories)
        cache.resolver.add(match_record(self.sealer, msg.incident_id, msg.agency_id,
                                        msg.source_record_id, msg.record_version, msg.sealed))
        record_rows[(msg.incident_id, key)] = {
            "incident_id": msg.incident_id, "agency_id": msg.agency_id,
            "source_record_id": msg.source_record_id, "record_version": msg.record_version,
            "message_id": msg.message_id, "sealed": msg.sealed,
            "data_categories": list(msg.data_categories), "document_count": msg.document_count,
            "preferred_language": msg.preferred_language, "on_hold": msg.on_hold,
            "updated_at": now,
        }
        cache.records_to_write.add(key)
        return key

    def _settle(self, cache: IncidentCache, keys: set[RecordKey], now: datetime) -> None:
        """Take the resolver's persons for every record that changed, and mark the persons
        records left or joined as needing a release decision."""
        keys = keys | cache.resolver.drain_changes()
        if not keys:
            return
        self._reviews_stale.add(cache.incident_id)
        touched: set[str] = set()
        moved_from: dict[str, set[str]] = {}
        for key in keys:
            meta = cache.records.get(key)
            if meta is None:
                continue
            new = None if meta.withdrawn else cache.resolver.person_of(*key)
            old = cache.set_person(key, new)
            touched.update(p for p in (old, new) if p)
            if old and new and old != new:
                moved_from.setdefault(new, set()).add(old)
        for person_id in touched:
            person = cache.persons.get(person_id)
            if person is None:
                person = cache.persons[person_id] = PersonMeta(first_seen_at=now, changed_at=now)
            person.changed_at = now
            person.dirty = True
            # A person whose records all moved away or were withdrawn is no one (yet).
            if not cache.members.get(person_id):
                person.status = "empty"
            elif person.status == "empty":
                person.status = "notified" if person.notified_version else "pending"
            cache.dirty.add(person_id)
            _inherit_notice_lineage(cache, person, moved_from.get(person_id, set()))
            cache.persons_to_write.add(person_id)

    def _write_records(self, session: Session, cache: IncidentCache, record_rows: dict) -> None:
        full, partial = [], []
        for key in cache.records_to_write:
            meta = cache.records[key]
            row = record_rows.get((cache.incident_id, key))
            if row is not None:
                full.append({**row, "person_id": meta.person_id, "withdrawn": meta.withdrawn})
            else:
                partial.append({"b_incident": cache.incident_id, "b_agency": key[0],
                                "b_record": key[1], "person_id": meta.person_id,
                                "withdrawn": meta.withdrawn})
        upsert(session, RecordState, full, ["incident_id", "agency_id", "source_record_id"])
        if partial:
            table = RecordState.__table__
            session.execute(
                sa_update(table)
                .where(table.c.incident_id == bindparam("b_incident"),
                       table.c.agency_id == bindparam("b_agency"),
                       table.c.source_record_id == bindparam("b_record"))
                .values(person_id=bindparam("person_id"), withdrawn=bindparam("withdrawn")),
                partial,
            )
        cache.records_to_write.clear()

    def _write_persons(self, session: Session, cache: IncidentCache) -> None:
        rows = []
        for person_id in cache.persons_to_write:
            p = cache.persons[person_id]
            rows.append({
                "incident_id": cache.incident_id, "person_id": person_id, "status": p.status,
                "first_seen_at": p.first_seen_at, "changed_at": p.changed_at, "dirty": p.dirty,
                "notice_person_id": p.notice_person_id, "notified_version": p.notified_version,
                "notified_agency_ids": sorted(p.notified_agency_ids),
                "notified_categories": sorted(p.notified_categories),
            })
        upsert(session, PersonState, rows, ["incident_id", "person_id"])
        cache.persons_to_write.clear()

    # --- release ---------------------------------------------------------------------------------

    def tick(self, partitions: set[int]) -> int:
        """Time-driven work for the incidents on owned partitions: deadlines, settle windows,
        manual releases, review decisions. Returns how many notices were released."""
        released = 0
        with session_scope(self.engine) as session:
            owned = session.exec(
                select(IncidentState).where(IncidentState.partition.in_(partitions))
            ).all()
            for incident in owned:
                try:
                    cache = self.identity.incident(session, incident.incident_id,
                                                   incident.partition)
                    now = self.clock()
                    self._apply_review_decisions(session, cache, now)
                    self._write_records(session, cache, {})
                    released += self._release(session, incident, cache, now)
                    self._write_persons(session, cache)
                    if self._review_sync_due(incident.incident_id):
                        self._sync_reviews(session, cache)
                except BaseException:
                    self.identity.forget([incident.incident_id])
                    raise
        return released

    def _release(self, session: Session, incident: IncidentState, cache: IncidentCache,
                 now: datetime) -> int:
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
            log.info("incident released", extra={"incident_id": incident.incident_id})
        to_notify: list[tuple[str, PersonMeta, PersonView]] = []
        for person_id in sorted(cache.dirty):
            person = cache.persons[person_id]
            view = self._view(cache, person_id, person)
            decision = decide(view, incident.released_at, policy, now)
            if decision.action == Action.WAIT:
                continue  # stays dirty; a later tick decides
            person.dirty = False
            cache.dirty.discard(person_id)
            cache.persons_to_write.add(person_id)
            if decision.action == Action.NOTHING:
                if view.live_records == 0 and person.notified_version == 0:
                    person.status = "empty"
            elif decision.action == Action.HOLD:
                person.status = "held"
            else:
                to_notify.append((person_id, person, view))
        self._notify(session, incident, cache, to_notify)
        return len(to_notify)

    @staticmethod
    def _view(cache: IncidentCache, person_id: str, person: PersonMeta) -> PersonView:
        keys = cache.members.get(person_id, set())
        metas = [cache.records[k] for k in keys]
        return PersonView(
            live_records=len(metas),
            any_on_hold=any(m.on_hold for m in metas),
            agency_ids=frozenset(k[0] for k in keys),
            categories=frozenset(c for m in metas for c in m.categories),
            first_seen_at=person.first_seen_at, changed_at=person.changed_at,
            notified_version=person.notified_version,
            notified_agency_ids=person.notified_agency_ids,
            notified_categories=person.notified_categories,
        )

    def _notify(self, session: Session, incident: IncidentState, cache: IncidentCache,
                batch: list[tuple[str, PersonMeta, PersonView]]) -> None:
        for chunk in _chunks(batch, 1000):
            live = _live_records(session, incident.incident_id, [pid for pid, _, _ in chunk])
            for person_id, person, view in chunk:
                notice_person_id = person.notice_person_id or person_id
                version = person.notified_version + 1
                notice = build_notice(self.sealer, incident.incident_id, notice_person_id, version,
                                      live.get(person_id, []), incident.agency_names)
                session.add(NoticeState(
                    notice_id=notice.notice_id, incident_id=incident.incident_id,
                    person_id=notice_person_id, version=version,
                    agency_ids=sorted(view.agency_ids), data_categories=sorted(view.categories)))
                outbox.enqueue(session, NOTICES, notice_person_id, notice.to_bytes())
                person.status = "notified"
                person.notice_person_id = notice_person_id
                person.notified_version = version
                person.notified_agency_ids = view.agency_ids | person.notified_agency_ids
                person.notified_categories = view.categories | person.notified_categories

    # --- review queue ------------------------------------------------------------------------------

    def _review_sync_due(self, incident_id: str) -> bool:
        if incident_id not in self._reviews_stale:
            return False
        last = self._reviews_synced_at.get(incident_id)
        return last is None or time.monotonic() - last >= self.review_sync_interval_s

    def _sync_reviews(self, session: Session, cache: IncidentCache) -> None:
        """Mirror the resolver's uncertain pairs into the review queue (evidence names levels
        and weights, never values). Only what changed is written: new pairs, pairs whose
        reason changed, pairs that no longer need a decision. Decided rows keep theirs."""
        incident_id = cache.incident_id
        self._reviews_stale.discard(incident_id)
        self._reviews_synced_at[incident_id] = time.monotonic()
        current = {review_id(incident_id, i.a, i.b): i for i in cache.resolver.review_items()}
        table = ReviewState.__table__
        known = {rid: (status, reason) for rid, status, reason in session.execute(
            sa_select(table.c.review_id, table.c.status, table.c.reason)
            .where(table.c.incident_id == incident_id))}
        now = self.clock()
        changed = []
        for rid, item in current.items():
            status, reason = known.get(rid, (None, None))
            if status in ("merge", "keep_apart") or (status == "open" and reason == item.why):
                continue
            changed.append({
                "review_id": rid, "incident_id": incident_id,
                "a_agency_id": item.a[0], "a_source_record_id": item.a[1],
                "b_agency_id": item.b[0], "b_source_record_id": item.b[1],
                "reason": item.why, "evidence": item.evidence.to_dict(), "status": "open",
                "applied": True, "updated_at": now,
            })
        new = [row for row in changed if row["review_id"] not in known]
        if new:
            session.execute(sa_insert(table), new)
        revised = [{"b_id": row["review_id"], "b_reason": row["reason"],
                    "b_evidence": row["evidence"]} for row in changed if row["review_id"] in known]
        if revised:  # never over a decision a coordinator made meanwhile
            session.execute(
                sa_update(table)
                .where(table.c.review_id == bindparam("b_id"),
                       table.c.status.in_(("open", "resolved")))
                .values(status="open", reason=bindparam("b_reason"),
                        evidence=bindparam("b_evidence"), updated_at=now), revised)
        gone = [{"b_id": rid} for rid, (status, _) in known.items()
                if status == "open" and rid not in current]
        if gone:  # the pair no longer needs a decision (merged anyway, or withdrawn)
            session.execute(
                sa_update(table).where(table.c.review_id == bindparam("b_id"), table.c.status == "open")
                .values(status="resolved", updated_at=now), gone)

    def _apply_review_decisions(self, session: Session, cache: IncidentCache, now: datetime) -> None:
        pending = session.exec(select(ReviewState).where(
            ReviewState.incident_id == cache.incident_id,
            ReviewState.applied == False)).all()  # noqa: E712
        if not pending:
            return
        for row in pending:
            a = (row.a_agency_id, row.a_source_record_id)
            b = (row.b_agency_id, row.b_source_record_id)
            if a in cache.resolver and b in cache.resolver:
                cache.resolver.decide(a, b, same_person=row.status == "merge")
            row.applied = True
            session.add(row)
        self._settle(cache, set(), now)

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
            incident.manual_release_requested_at = (incident.manual_release_requested_at
                                                    or self.clock())
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


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _live_records(session: Session, incident_id: str, person_ids: list[str]
                  ) -> dict[str, list[RecordState]]:
    grouped: dict[str, list[RecordState]] = {}
    rows = session.exec(select(RecordState).where(
        RecordState.incident_id == incident_id,
        RecordState.person_id.in_(person_ids),
        RecordState.withdrawn == False,  # noqa: E712
    )).all()
    for row in rows:
        grouped.setdefault(row.person_id, []).append(row)
    return grouped


def _inherit_notice_lineage(cache: IncidentCache, person: PersonMeta, previous_ids: set[str]) -> None:
    """A person the resolver re-identified (records joined or split) keeps the notice history
    of the person their records came from, so the next notice is an amendment, not a second
    first notice. When records of several notified persons merge, the earliest lineage wins."""
    if person.notified_version > 0 or not previous_ids:
        return
    notified = [cache.persons[p] for p in sorted(previous_ids)
                if p in cache.persons and cache.persons[p].notified_version > 0]
    if not notified:
        return
    first = min(notified, key=lambda a: a.notice_person_id or "")
    person.notice_person_id = first.notice_person_id
    person.notified_version = max(a.notified_version for a in notified
                                  if a.notice_person_id == first.notice_person_id)
    person.notified_agency_ids = frozenset(x for a in notified for x in a.notified_agency_ids)
    person.notified_categories = frozenset(x for a in notified for x in a.notified_categories)
