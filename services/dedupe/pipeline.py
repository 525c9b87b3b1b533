"""Turning affected-record messages into identity state and released notices: the
orchestration between the identity state (identity.py, which alone drives the resolver), the
rules (release.py, reviews.py, notices.py) and the database (store.py).

Everything one batch (or one tick) changes — records, person assignments, release state,
notices and the outbox rows announcing them — commits in one transaction, before the consumer
commits its offsets. A release is chunked: a transaction decides at most `release_chunk`
persons (their notices, outbox rows and person state together); the rest stay marked dirty
in the database and go out in the following transactions (`continue_release`, and every
tick), so a crash between chunks loses nothing (the persons are still dirty after a rebuild)
and duplicates nothing (a released person is no longer dirty, and notice ids are
deterministic). If the transaction fails, the identity state of every incident it
touched is dropped and rebuilt from the database when next needed: memory never runs ahead
of what was committed. Replays change nothing: older or equal record versions are ignored,
and notices have deterministic ids with one row per (incident, person, version).

Work per batch is a handful of statements whatever its size: the identity state the
decisions need is in memory; the database is written in bulk.

Memory: a finished incident (released, every person decided, idle for `evict_after_s`) is
evicted and rebuilt only if something comes for it; ticks never rebuild one that has
nothing to do. A rebuild can run off the consumer's loop (`cold` / `warm`, with the
partition paused by the consumer), so no handler call lasts as long as a 400k-record rebuild.

Over 400 lines on purpose: batch, tick, release, review and manual release share one
transaction discipline (savepoint per incident, fence check, drop-on-failure), kept in one place.
"""

import ctypes
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from functools import partial

from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.common import keystore, retention
from services.common import metrics as common_metrics
from services.common.batching import chunks
from services.common.clock import Clock, utcnow
from services.common.crypto import NOTICES, Sealer
from services.common.db import session_scope
from services.common.logging import raised_at
from services.common.messages import (
    AffectedRecordMessage,
    AffectedRecordsTopicMessage,
    ContributionCompleteMessage,
    IncidentMessage,
    NoticeAgency,
    NoticeCorrection,
    RecordWithdrawnMessage,
    ReleasePolicy,
)
from services.common.topics import AFFECTED_RECORDS
from services.dedupe import metrics, store
from services.dedupe.failures import IncidentFailures
from services.dedupe.identity import (
    DueNotice,
    IdentityState,
    IncidentIdentity,
    RecordKey,
    Withdrawn,
)
from services.dedupe.notices import build_notice, notice_agencies
from services.dedupe.release import PersonView, incident_release_reason, missing_records
from services.dedupe.reviews import review_changes
from services.dedupe.streamtime import StreamClock

log = logging.getLogger(__name__)


def message_time(msg: AffectedRecordsTopicMessage) -> datetime:
    """A message's own time (set by intake): what release decisions are judged by."""
    if isinstance(msg, AffectedRecordMessage):
        return msg.received_at
    if isinstance(msg, RecordWithdrawnMessage):
        return msg.withdrawn_at
    return msg.completed_at


class NotOwner(Exception):  # noqa: N818 - a state, not a bug
    """Another instance has claimed the partition's state since this one did: this one must
    write nothing more for it until the partition is assigned to it again."""


class DedupePipeline:
    def __init__(self, engine: Engine, sealer: Sealer, identity: IdentityState | None = None,
                 clock: Clock = utcnow, review_sync_interval_s: float = 30.0,
                 retry_first_delay_s: float = 1.0, retry_max_delay_s: float = 300.0,
                 evict_after_s: float = 300.0, release_chunk: int | None = 1000):
        self.engine = engine
        self.sealer = sealer
        self.identity = identity or IdentityState(sealer,
                                                  review_sync_interval_s=review_sync_interval_s)
        self.clock = clock
        self.failures = IncidentFailures(retry_first_delay_s, retry_max_delay_s)
        self.stream = StreamClock(clock)
        self._missing: dict[str, int] = {}  # incident → records missing, for the metric
        self._released: Counter[str] = Counter()  # notices of the open transaction, by kind
        # The fence (store.claim_partition): this instance's claim on each partition it
        # writes, and the partitions another instance claimed since (not claimed back until
        # they are revoked and assigned again).
        self.owner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._epochs: dict[int, int] = {}
        self._fenced: set[int] = set()
        # Assignments seen per partition (a revocation ends one): a background rebuild asked
        # for under an earlier one neither claims nor holds anything.
        self._assignment: dict[int, int] = {}
        self._lock = threading.RLock()  # claims and revocations vs. a rebuild's thread
        self.evict_after_s = evict_after_s
        # Persons decided per release transaction (None: all in one, as before chunking;
        # benchmarks/dedupe/release.py compares the two).
        self.release_chunk = release_chunk

    def apply_batch(self, partition: int, messages: list[AffectedRecordsTopicMessage]) -> int:
        """Apply one partition batch in order; returns how many notices were released."""
        touched: list[str] = []  # incidents whose identity state this batch changes
        now = self.stream.for_batch(partition, (message_time(m) for m in messages))
        if not self._claimed(partition):
            raise NotOwner(partition)
        try:
            with session_scope(self.engine) as session:
                if not self._fence(session, {partition}):
                    raise NotOwner(partition)
                # Held against their purge until this commits; a purged one's are dropped.
                purged = retention.hold(session, {m.incident_id for m in messages})
                dropped = sum(m.incident_id in purged for m in messages)
                messages = [m for m in messages if m.incident_id not in purged]
                incidents: dict[str, store.Incident] = {}
                changed: set[str] = set()  # incidents whose stream state must be saved
                versions: dict[str, dict[RecordKey, store.RecordRow]] = {}
                for msg in messages:
                    incident = incidents.get(msg.incident_id)
                    if incident is None:
                        incident = incidents[msg.incident_id] = store.ensure_incident(
                            session, msg.incident_id)
                        if incident.partition != partition:
                            incident.partition = partition
                            changed.add(msg.incident_id)
                    identity = self._identity(session, msg.incident_id, partition)
                    if msg.incident_id not in versions:
                        touched.append(msg.incident_id)
                        versions[msg.incident_id] = {}
                        self.identity.touch(msg.incident_id)
                    if isinstance(msg, AffectedRecordMessage):
                        if identity.apply_record(msg):
                            versions[msg.incident_id][msg.agency_id, msg.source_record_id] = msg
                    elif isinstance(msg, RecordWithdrawnMessage):
                        key = (msg.agency_id, msg.source_record_id)
                        if identity.withdraw(key, msg.record_version) is Withdrawn.TOMBSTONE:
                            versions[msg.incident_id][key] = msg  # its row is written whole
                    elif isinstance(msg, ContributionCompleteMessage):
                        incident.completed = {**incident.completed, msg.agency_id: msg.record_count}
                        incident.completed_withdrawn = {**incident.completed_withdrawn,
                                                        msg.agency_id: msg.withdrawn_count}
                        changed.add(msg.incident_id)
                for incident_id in changed:
                    store.save_stream_state(session, incidents[incident_id])
                released = 0
                for incident_id in touched:
                    identity = self.identity.get(incident_id)
                    identity.settle(now)
                    self._write_state(session, incident_id, identity, now, versions[incident_id])
                    # The records are applied whatever happens next; the release of one
                    # incident failing must not fail the batch (nor other incidents' release).
                    released += self._isolated(session, incident_id, "release", partial(
                        self._release_due, session, incidents[incident_id], identity, now))
        except BaseException:
            self.identity.forget(touched)  # memory must not run ahead of the database
            self._released.clear()
            raise
        self.stream.applied(partition, now)
        self._count_released()
        if dropped:
            common_metrics.PURGED_DROPPED.labels(service="dedupe", topic=AFFECTED_RECORDS.name).inc(dropped)
        return released

    def tick(self, partitions: set[int], caught_up: set[int] | None = None) -> int:
        """Time-driven work for the incidents on owned partitions: deadlines, settle windows,
        manual releases, review decisions, the review queue. Returns how many notices were
        released. Each incident's work is isolated: one failing waits for its retry while
        the others go on. `caught_up`: the partitions at the end of their log (None: all),
        judged by the wall clock; the others by their stream time (streamtime.py)."""
        released = 0
        touched: list[str] = []  # incidents whose work this transaction holds
        times = {p: self.stream.for_tick(p, caught_up is None or p in caught_up)
                 for p in partitions}
        judged = {p for p, t in times.items() if t is not None and self._claimed(p)}
        if not judged:
            return 0
        try:
            with session_scope(self.engine) as session:
                incidents = store.incidents_on(session, self._fence(session, judged))
                purged = retention.hold(session, {i.incident_id for i in incidents})
                incidents = [i for i in incidents if i.incident_id not in purged]
                for incident in self._with_work(session, incidents):
                    if self.failures.waiting(incident.incident_id):
                        continue
                    touched.append(incident.incident_id)
                    released += self._isolated(session, incident.incident_id, "tick", partial(
                        self._tick, session, incident, times[incident.partition]))
        except BaseException:
            self.identity.forget(touched)  # memory must not run ahead of the database
            self._released.clear()
            raise
        self._count_released()
        self._evict_finished(incidents)
        return released

    def releasing(self, partitions: set[int]) -> set[int]:
        """Of these partitions, those with an incident whose release stopped at a chunk's
        limit (more persons may be due now: `continue_release`)."""
        held = self.identity.held()
        return {p for i, p in held.items() if p in partitions and p not in self._fenced
                and (identity := self.identity.get(i)) is not None and identity.releasing}

    def continue_release(self, partitions: set[int]) -> int:
        """The next chunk of each release in progress on these partitions, in a transaction
        of its own (judged at the partition's stream time, as its last batch was); returns
        how many notices it released."""
        judged = {p: t for p in self.releasing(partitions)
                  if (t := self.stream.for_tick(p, caught_up=False)) is not None}
        if not judged:
            return 0
        released = 0
        touched: list[str] = []
        try:
            with session_scope(self.engine) as session:
                owned = self._fence(session, set(judged))
                releasing = {i: p for i, p in sorted(self.identity.held().items())
                             if p in owned and (identity := self.identity.get(i)) is not None
                             and identity.releasing}
                # Held against their purge until this commits, like a batch or a tick.
                purged = retention.hold(session, releasing)
                for incident_id, partition in releasing.items():
                    identity = self.identity.get(incident_id)
                    if incident_id in purged or identity is None:
                        continue
                    incident = store.get_incident(session, incident_id)
                    if incident is None:
                        continue
                    touched.append(incident_id)
                    released += self._isolated(session, incident_id, "release", partial(
                        self._release_due, session, incident, identity, judged[partition]))
        except BaseException:
            self.identity.forget(touched)  # memory must not run ahead of the database
            self._released.clear()
            raise
        self._count_released()
        return released

    def _with_work(self, session: Session, incidents: list[store.Incident]
                   ) -> list[store.Incident]:
        """The incidents a tick has work for: all held in memory, and of the others those
        not released or with something left to decide — an evicted, finished incident is
        not rebuilt for nothing."""
        resting = [i.incident_id for i in incidents
                   if i.released_at is not None and self.identity.get(i.incident_id) is None]
        idle = set(resting) - store.incidents_with_work(session, resting)
        return [i for i in incidents if i.incident_id not in idle]

    def _evict_finished(self, incidents: list[store.Incident]) -> None:
        """Drop the identity state of released incidents with nothing left to decide that
        nothing came for in `evict_after_s`: rebuilt if a record or decision comes later."""
        finished = [i.incident_id for i in incidents if i.released_at is not None
                    and (identity := self.identity.get(i.incident_id)) is not None
                    and identity.finished() and i.incident_id not in self.failures.failing()]
        evicted = self.identity.idle(finished, self.evict_after_s)
        if evicted:
            self.identity.forget(evicted)
            for incident_id in evicted:
                log.info("finished incident evicted from memory",
                         extra={"incident_id": incident_id})
            metrics.INCIDENTS_EVICTED.inc(len(evicted))
            release_memory()
        self._count_held()

    def _count_released(self) -> None:
        """Count the notices of the transaction that just committed (first or amendment)."""
        for kind, n in self._released.items():
            metrics.NOTICES_RELEASED.labels(kind=kind).inc(n)
        self._released.clear()

    def _count_held(self) -> None:
        metrics.INCIDENTS_HELD.set(len(self.identity.held()))
        metrics.RECORDS_HELD.set(self.identity.held_records())

    # --- rebuilding off the consumer's loop ---------------------------------------------------

    def assignment(self, partition: int) -> int:
        """The partition's current assignment, for `warm` (ended by a revocation)."""
        return self._assignment.get(partition, 0)

    def cold(self, partition: int, incident_ids: set[str]) -> list[str]:
        """Of these incidents (a batch's), those whose identity state is not in memory."""
        if partition in self._fenced:
            return []  # not ours: apply_batch says so
        if partition not in self._epochs:
            return sorted(incident_ids)  # the claim drops whatever is held
        return sorted(i for i in incident_ids if self.identity.get(i) is None)

    def cold_with_work(self, partitions: set[int]) -> dict[int, list[str]]:
        """The incidents on these partitions a tick would rebuild: not in memory, and not
        released or with something left to decide."""
        with session_scope(self.engine) as session:
            incidents = store.incidents_on(session, partitions)
            cold: dict[int, list[str]] = {}
            for incident in self._with_work(session, incidents):
                if self.identity.get(incident.incident_id) is None or (
                        incident.partition not in self._epochs):
                    cold.setdefault(incident.partition, []).append(incident.incident_id)
        return cold

    def warm(self, partition: int, incident_ids: list[str], assignment: int) -> None:
        """Rebuild these incidents' identity state from the database, one at a time, and hold
        it — unless the partition was revoked since `assignment` or another instance claimed
        it. Meant for a thread of its own while the partition is paused (consumer.py); the
        records are streamed, a chunk of sealed values in memory at a time."""
        with self._lock:
            if self.assignment(partition) != assignment or not self._claimed(partition):
                return
            epoch = self._epochs[partition]
        for incident_id in incident_ids:
            if self.identity.get(incident_id) is not None:
                continue
            started = time.perf_counter()
            with session_scope(self.engine) as session:
                row = store.get_incident(session, incident_id)
                stored = store.load_identity(session, incident_id, records=False)
                stored.records = store.stream_records(session, incident_id)
                incident = self.identity.build(
                    incident_id, stored, released=row is not None and row.released_at is not None)
            with self._lock:
                if self.assignment(partition) != assignment or \
                        self._epochs.get(partition) != epoch:
                    return  # revoked or claimed elsewhere meanwhile: not ours to hold
                self.identity.hold(incident, partition)
            metrics.REBUILD_SECONDS.set(time.perf_counter() - started)
        self._count_held()

    def _tick(self, session: Session, incident: store.Incident, now: datetime) -> int:
        identity = self._identity(session, incident.incident_id, incident.partition)
        decisions = store.pending_decisions(session, incident.incident_id)
        if decisions:
            self.identity.touch(incident.incident_id)
            identity.apply_decisions(decisions)
            self._correct(session, incident, identity)
        # The decisions' moves, and those of a rebuild whose resolver placed a record
        # differently from its stored row (identity.build): nothing if neither.
        identity.settle(now)
        self._write_state(session, incident.incident_id, identity, now)
        released = self._release_due(session, incident, identity, now)
        # A confirmed contact whose amendment waits (a settle window) stays pending, so a
        # rebuild meanwhile applies it again and the amendment is not lost.
        store.mark_applied(session, [d for d in decisions if not identity.awaits_resend(d)])
        started = time.monotonic()
        items = self.identity.reviews_due(identity)
        if items is not None:
            known = store.review_statuses(session, incident.incident_id)
            store.write_review_changes(
                session, incident.incident_id,
                review_changes(incident.incident_id, items, known, identity.conflicts() + [
                    r.conflict() for r in identity.retractions()]),
                self.clock())
            self.identity.reviews_synced(incident.incident_id, started)
        return released

    def _correct(self, session: Session, incident: store.Incident,
                 identity: IncidentIdentity) -> None:
        """The correction notices coordinators decided (retractions.py), in the decision's
        transaction: the next version of the lineage, to whoever the notice it corrects was
        built for — the standing agencies' records (an agency named wrongly) or the withdrawn
        ones (sent in error: their sealed fields are still held). A decision applies once
        (its row is marked applied with it), so a replay or rebuild makes no second notice."""
        while identity.corrections:
            review_id = identity.corrections.pop(0)
            due = identity.correction(review_id)
            if due is None:  # a withdrawn record given again since: nothing to correct
                continue
            retraction, version = due
            withdrawn = store.told_records(session, incident.incident_id,
                                           list(retraction.withdrawn))
            standing = store.told_records(session, incident.incident_id,
                                          list(retraction.standing))
            built_from = standing or withdrawn
            if not built_from:  # only tombstones: no one to write to (left on the item)
                log.warning("correction notice not made: no record of its person is held",
                            extra={"incident_id": incident.incident_id, "review_id": review_id})
                continue
            correction = NoticeCorrection(
                kind=retraction.kind, review_id=review_id,
                agencies=notice_agencies(withdrawn, incident.agency_names) or [NoticeAgency(
                    agency_id=a, name=incident.agency_names.get(a, a), data_categories=[],
                    document_count=None) for a in retraction.withdrawn_agencies])
            notice = build_notice(self.sealer, incident.incident_id, retraction.lineage_id,
                                  version, built_from, incident.agency_names, self.clock(),
                                  correction=correction)
            view = PersonView(
                live_records=len(standing), any_on_hold=False,
                agency_ids=frozenset(a.agency_id for a in notice.agencies),
                categories=frozenset(c for a in notice.agencies for c in a.data_categories),
                first_seen_at=self.clock(), changed_at=self.clock(), notified_version=version,
                notified_agency_ids=frozenset(), notified_categories=frozenset())
            store.add_notices(session, [(notice, view)], self.clock())
            store.set_correction_notice(session, review_id, notice.notice_id)
            self._released["correction"] += 1
            log.info("correction notice made", extra={
                "incident_id": incident.incident_id, "review_id": review_id,
                "notice_id": notice.notice_id, "correction": retraction.kind})

    def _isolated(self, session: Session, incident_id: str, stage: str,
                  work: Callable[[], int]) -> int:
        """Run one incident's work in a savepoint: if it fails, only its own changes roll
        back, its identity state is dropped (rebuilt from the database for its retry) and
        it waits for its retry with backoff; the caller's other incidents go on."""
        if self.failures.waiting(incident_id):
            return 0
        counted = self._released.copy()
        try:
            with session.begin_nested():
                result = work()
        except Exception as exc:
            self._released = counted  # its notices rolled back with the savepoint
            self.identity.forget([incident_id])
            failure = self.failures.failed(incident_id, exc)
            metrics.INCIDENT_FAILURES.labels(stage=stage).inc()
            metrics.INCIDENTS_FAILING.set(len(self.failures.failing()))
            # The type and the code line only: a database error's message can quote the
            # values it refused.
            log.warning("incident %s failed (%s, attempt %d); retrying later", stage,
                        failure.kind, failure.count,
                        extra={"incident_id": incident_id, "error": failure.kind,
                               "raised_at": raised_at(exc)})
            return 0
        if incident_id in self.failures.failing():
            self.failures.succeeded(incident_id)
            metrics.INCIDENTS_FAILING.set(len(self.failures.failing()))
            log.info("incident recovered", extra={"incident_id": incident_id})
        return result

    def apply_incidents(self, messages: list[IncidentMessage]) -> None:
        """Definitions from incidents.v1 (agency names, expected agencies, release policy);
        an older or equal revision changes nothing."""
        with session_scope(self.engine) as session:
            purged = retention.hold(session, {m.incident_id for m in messages})
            for msg in messages:
                if msg.incident_id in purged:  # a definition after the purge: nothing to keep
                    continue
                if msg.revision > store.ensure_incident(session, msg.incident_id).revision:
                    store.save_definition(session, msg)

    def purged(self, incident_ids: set[str]) -> set[str]:
        """Which of these incidents this service has purged (their messages are ignored)."""
        with Session(self.engine) as session:
            return retention.purged_of(session, incident_ids)

    def purge(self, incident_id: str, now: datetime) -> dict | None:
        """Intake purged the incident: delete dedupe's rows of it, destroy its data keys (the
        copy of the records key, and the notices key with its message tombstoned), forget its
        state in memory. An audit summary without personal data stays (retention_event).
        None when purged before (the lifecycle topic is read from its start at every start)."""
        with session_scope(self.engine) as session:
            retention.hold_for_purge(session, incident_id)  # waits for a batch writing it
            if retention.happened(session, incident_id, "purged"):
                return None
            counts = store.purge_incident(session, incident_id)
            notice_keys = keystore.destroy_incident(session, incident_id, NOTICES)
            keystore.announce_tombstones(session, incident_id, NOTICES, notice_keys)
            counts["data_keys_destroyed"] = len(notice_keys) + len(
                keystore.destroy_incident(session, incident_id))
            retention.record(session, incident_id, "purged", counts, actor="dedupe:purge", at=now)
        self.identity.forget([incident_id])
        forget = getattr(self.sealer, "forget", None)
        if forget is not None:
            forget(incident_id)
        return counts

    def revoked(self, partitions: set[int]) -> None:
        # Another instance now owns these incidents; it rebuilds their identity state itself.
        with self._lock:
            for partition in partitions:
                self._epochs.pop(partition, None)
                self._fenced.discard(partition)
                self._assignment[partition] = self.assignment(partition) + 1
            self._drop(partitions)
        release_memory()

    def _claimed(self, partition: int) -> bool:
        """Claim the partition's state the first time it is written after an assignment
        (False when another instance claimed it since). Whatever was held of it before is
        dropped: the state is rebuilt from what the database holds after the claim, which
        includes everything the previous owner committed."""
        with self._lock:
            if partition in self._fenced:
                return False
            if partition not in self._epochs:
                with session_scope(self.engine) as session:
                    epoch = store.claim_partition(session, partition, self.owner_id, utcnow())
                self._drop({partition})
                self._epochs[partition] = epoch
                log.info("partition claimed", extra={"partition": partition, "epoch": epoch})
            return True

    def _fence(self, session: Session, partitions: set[int]) -> set[int]:
        """Of these claimed partitions, those still this instance's; first in a transaction,
        so a newer claim waits for it to end (the share lock) and then sees what it wrote."""
        epochs = store.owner_epochs(session, partitions)
        with self._lock:
            lost = {p for p in partitions if epochs.get(p) != self._epochs.get(p)}
            for partition in lost:
                log.warning("partition claimed by another instance; its state is no longer "
                            "written here", extra={"partition": partition})
                self._epochs.pop(partition, None)
                self._fenced.add(partition)
            self._drop(lost)
        return partitions - lost

    def _drop(self, partitions: set[int]) -> None:
        """Forget the identity state (and failure and stream bookkeeping) of partitions."""
        if not partitions:
            return
        gone = self.identity.forget_partitions(partitions)
        self.failures.forget(gone)
        for incident_id in gone:
            self._missing.pop(incident_id, None)
        self.stream.forget(partitions)

    def _reconcile(self, session: Session, incident: store.Incident,
                   identity: IncidentIdentity) -> dict[str, int]:
        """Compare each completion's counts with the records seen; record and surface what
        is missing (progress API, metric, a log line of counts only)."""
        announced = {a: n + incident.completed_withdrawn.get(a, 0)
                     for a, n in incident.completed.items()}
        missing = missing_records(announced, identity.seen)
        if missing != incident.missing:
            incident.missing = missing
            store.save_missing(session, incident.incident_id, missing)
            for agency_id in sorted(set(missing) | set(announced)):
                if agency_id in missing:
                    log.warning("records missing: the agency's completion counts more records "
                                "than have arrived; release held until the deadline", extra={
                                    "incident_id": incident.incident_id, "agency_id": agency_id,
                                    "count": missing[agency_id]})
        self._missing[incident.incident_id] = sum(missing.values())
        metrics.RECORDS_MISSING.set(sum(self._missing.values()))
        return missing

    def _identity(self, session: Session, incident_id: str, partition: int | None
                  ) -> IncidentIdentity:
        held = self.identity.get(incident_id, partition)
        if held is not None:
            return held
        released = store.ensure_incident(session, incident_id).released_at is not None
        return self.identity.rebuild(incident_id, partition,
                                     store.load_identity(session, incident_id), released)

    def _write_state(self, session: Session, incident_id: str, identity: IncidentIdentity,
                     now: datetime, versions: dict[RecordKey, store.RecordRow] | None = None,
                     ) -> None:
        """Write what the identity state changed: records and persons."""
        store.write_records(session, incident_id, identity.take_records(), versions or {}, now)
        store.write_persons(session, incident_id, identity.take_persons())

    def _release_due(self, session: Session, incident: store.Incident,
                     identity: IncidentIdentity, now: datetime) -> int:
        """Release what is due, with the persons' new state; returns notices."""
        due = self._release(session, incident, identity, now)
        store.write_persons(session, incident.incident_id, identity.take_persons())
        store.mark_covered(session, incident.incident_id, [d.person_id for d in due])
        return len(due)

    def _release(self, session: Session, incident: store.Incident, identity: IncidentIdentity,
                 now: datetime) -> list[DueNotice]:
        policy = ReleasePolicy.model_validate(incident.release_policy or {})
        if incident.released_at is None:
            missing = self._reconcile(session, incident, identity)
            reason = incident_release_reason(
                incident.expected_agency_ids, set(incident.completed), policy,
                incident.manual_release_requested_at is not None, now, missing)
            if reason is None:
                return []
            incident.released_at, incident.release_reason = now, reason.value
            store.mark_released(session, incident.incident_id, now, reason.value)
            self._missing.pop(incident.incident_id, None)  # recorded with the release
            log.info("incident released", extra={
                "incident_id": incident.incident_id, "reason": reason.value,
                "records_missing": sum(missing.values())})
        # Once, before the first notices: the household test may move records; they are
        # written with the release (its savepoint), before the notices covering them.
        identity.learn(now)
        store.write_records(session, incident.incident_id, identity.take_records(), {}, now)
        due = identity.release(incident.released_at, policy, now, limit=self.release_chunk)
        for chunk in chunks(due, 1000):
            live = store.live_records(session, incident.incident_id, [d.person_id for d in chunk])
            built = []
            for d in chunk:
                notice = build_notice(self.sealer, incident.incident_id, d.notice_person_id,
                                      d.version, live.get(d.person_id, []),
                                      incident.agency_names, self.clock(), d.route)
                built.append((notice, d.view))
                self._released["amendment" if d.version > 1 else "first"] += 1
            store.add_notices(session, built, self.clock())
            store.flush(session)
        # After the notices: a first notice that leaves a held agency's part out is on the
        # topic before the hold that comes with it (same key, so dispatch reads them in order).
        store.add_hold_changes(session, incident.incident_id, identity.take_hold_changes(),
                               self.clock())
        return due


def release_memory() -> None:
    """Hand memory freed by dropped identity state back to the OS (glibc keeps it otherwise,
    and the pod's limit counts what the process holds, not what Python uses)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
