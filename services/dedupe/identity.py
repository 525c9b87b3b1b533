"""The identity state of the incidents on partitions this instance owns, and the only code
that talks to the resolver.

Per incident: one resolver, plus what release decisions need of every record (version,
person, hold, categories — never personal fields) and of every person. Records, withdrawals
and review decisions go in; `settle` drains the resolver's changes into person assignments
and marks the persons who need a release decision; `release` applies the release rules to
them. What changed is kept for the pipeline to write in the same transaction (`take_records`,
`take_persons`). No database here: the state is rebuilt from stored rows the pipeline loads.

It is rebuilt the first time an incident is needed after an assignment (restart, rebalance)
and dropped when its partition is revoked — or when a transaction fails, so memory never
runs ahead of what was committed — or when the incident is finished (`finished_idle`: it is
evicted, and rebuilt only if something comes for it again).

A rebuild may run in a thread of its own while the consumer handles other partitions (the
partition it is for paused): the registry's maps are changed under a lock.

Over 400 lines on purpose: it is the one module that drives the resolver (issue 9), so the
registry, the per-incident state, rebuilds and release inputs stay together.
"""

import logging
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from services.common.crypto import Sealer
from services.common.ids import stable_id
from services.common.messages import (
    AffectedRecordMessage,
    ReleasePolicy,
    SealedPersonalFields,
    record_sealing_context,
)
from services.dedupe import conflicts
from services.dedupe.conflicts import Claim, Conflict, Route
from services.dedupe.lineage import Lineage, assign_lineages, first_lineage_id
from services.dedupe.release import Action, PersonView, decide
from services.dedupe.resolver import MatchRecord, Resolver, ResolverConfig, ReviewItem
from services.dedupe.retractions import Retraction, Told, retractions

log = logging.getLogger(__name__)
RecordKey = tuple[str, str]
# A notified person held under s 116 now, whole or in part: what notice-hold announces.
HELD_STATUSES = ("held", "part_held")


def match_record(sealer: Sealer, incident_id: str, agency_id: str, source_record_id: str,
                 version: int, sealed: str) -> MatchRecord:
    return opened_record(sealer, incident_id, agency_id, source_record_id, version, sealed)[0]


def opened_record(sealer: Sealer, incident_id: str, agency_id: str, source_record_id: str,
                  version: int, sealed: str) -> tuple[MatchRecord, dict]:
    """The record for the resolver, and its clean personal fields (for `note_contacts`)."""
    personal = sealer.open(sealed, record_sealing_context(incident_id, agency_id,
                                                          source_record_id, version))
    clean = SealedPersonalFields.model_validate(personal).model_dump(mode="json")
    clean["source_record_id"] = source_record_id
    return MatchRecord.from_clean(agency_id, clean), clean


def note_contacts(meta: "RecordMeta", clean: dict) -> None:
    """Keep what conflicts.py compares of a record's contacts, and whom the record is about
    (`subject_key`): keys, never the values."""
    meta.subject = subject_key(clean)
    meta.email = conflicts.contact_key("email", clean.get("email"))
    meta.mobile = conflicts.contact_key("mobile", clean.get("mobile"))
    meta.reach = (1 if clean.get("address") else 0) | (
        2 if (clean.get("hold") or {}).get("representative") else 0)


def subject_key(clean: dict) -> int:
    """Whom a record version is about, as an in-memory hash: its NHI and date of birth, or
    without an NHI its date of birth and names. Equal keys across two versions of a record
    mean the agency corrected something else about the same person (apply_record)."""
    if clean.get("nhi"):
        return hash(("nhi", clean["nhi"], clean.get("date_of_birth")))
    names = tuple(" ".join((clean.get(f) or "").split()).casefold()
                  for f in ("given_names", "family_name"))
    return hash(("names", clean.get("date_of_birth"), *names))


class Withdrawn(StrEnum):
    """What a withdrawal did to the record held."""

    IGNORED = "ignored"  # a replay, or of a version older than the one held
    WITHDRAWN = "withdrawn"  # the version held is withdrawn
    TOMBSTONE = "tombstone"  # of a version not seen: only its key, version and withdrawal kept


@dataclass(slots=True)
class RecordMeta:
    """What release decisions need of a record; its personal fields stay sealed in the DB."""

    version: int
    person_id: str | None
    withdrawn: bool
    on_hold: bool
    categories: tuple[str, ...]
    # The lineage whose notice covered this record, and the version it covered then (moved on
    # by a later version about the same person: apply_record).
    told_lineage: str | None = None
    told_version: int = 0
    # What conflicts.py compares (note_contacts): in memory only, set when the record is opened.
    email: int | None = None
    mobile: int | None = None
    reach: int = 0  # 1: an address; 2: a representative
    subject: int | None = None  # subject_key of the version held, set when it is opened

    @property
    def told_by(self) -> str | None:
        """The lineage that told this record's person about it, at its current version."""
        if self.withdrawn or self.told_version != self.version:
            return None
        return self.told_lineage


@dataclass(slots=True)
class PersonMeta:
    first_seen_at: datetime
    changed_at: datetime
    # pending | held | held_contact | notified | part_held (notified, but an agency's part is
    # held back under s 116: a released hold conflict) | empty
    status: str = "pending"
    dirty: bool = True  # needs a release decision
    notice_person_id: str | None = None
    notified_version: int = 0
    notified_agency_ids: frozenset[str] = frozenset()
    notified_categories: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class StoredRecord:
    key: RecordKey
    meta: RecordMeta
    sealed: str  # opened only to give the resolver the record again


@dataclass(frozen=True, slots=True)
class ReviewDecision:
    """A coordinator's decision on a review pair."""

    review_id: str
    a: RecordKey
    b: RecordKey
    same_person: bool
    kind: str = "pair"  # pair | contact_conflict | hold_conflict (conflicts.py)
    decision: str = ""  # merge | keep_apart | use_contact | keep_fallback | release | keep_held
    chosen: RecordKey | None = None  # use_contact: the record whose contact to use


@dataclass(slots=True)
class StoredIdentity:
    """What the database holds of one incident's identity state."""

    records: Iterable[StoredRecord]  # a list, or a stream read once (store.stream_records)
    persons: dict[str, PersonMeta]
    decisions: list[ReviewDecision]  # applied ones: they are part of the state
    # lineage id -> the highest notice version issued under it (every notice ever released)
    issued: dict[str, int] = field(default_factory=dict)


def lineages_of(persons: dict[str, PersonMeta], issued: dict[str, int]) -> dict[str, Lineage]:
    """Every lineage of an incident, from its persons (what each was told, and who holds a
    lineage now) and its notices (the highest version each lineage issued)."""
    lineages = {lid: Lineage(version, frozenset(), frozenset()) for lid, version in issued.items()}
    for person_id, p in sorted(persons.items()):
        if p.notice_person_id is None:
            continue
        lineage = lineages.setdefault(p.notice_person_id, Lineage(0, frozenset(), frozenset()))
        lineage.version = max(lineage.version, p.notified_version)
        lineage.agency_ids = intern(lineage.agency_ids | p.notified_agency_ids)
        lineage.categories = intern(lineage.categories | p.notified_categories)
        if p.status != "empty":
            lineage.holder = person_id
    return lineages


_INTERNED: dict[frozenset[str], frozenset[str]] = {}


def intern(values: frozenset[str]) -> frozenset[str]:
    """One shared object per distinct set of agencies or categories: a 400k-record incident
    has hundreds of thousands of persons but few distinct sets."""
    if len(_INTERNED) > 100_000:
        _INTERNED.clear()
    return _INTERNED.setdefault(values, values)


_CATEGORIES: dict[tuple[str, ...], tuple[str, ...]] = {}


def intern_categories(values: Iterable[str]) -> tuple[str, ...]:
    """One shared tuple per distinct list of data categories (a record's): few are distinct."""
    values = tuple(sys.intern(v) for v in values)
    if len(_CATEGORIES) > 10_000:
        _CATEGORIES.clear()
    return _CATEGORIES.setdefault(values, values)


@dataclass(frozen=True, slots=True)
class DueNotice:
    """A notice (version 1) or amendment the release rules say a person gets now."""

    person_id: str  # the resolver's person
    notice_person_id: str  # the id the notice carries: its lineage (lineage.py)
    version: int
    view: PersonView
    route: Route = Route()  # which contacts and records the notice is built from


@dataclass
class IncidentIdentity:
    incident_id: str
    sealer: Sealer
    resolver: Resolver
    records: dict[RecordKey, RecordMeta] = field(default_factory=dict)
    persons: dict[str, PersonMeta] = field(default_factory=dict)
    members: dict[str, set[RecordKey]] = field(default_factory=dict)  # person → live records
    lineages: dict[str, Lineage] = field(default_factory=dict)  # every notice lineage used
    # Distinct records seen per agency, live or withdrawn (tombstones too): what its
    # completion's counts are reconciled with before release.
    seen: dict[str, int] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)  # persons awaiting a release decision
    # The resolver's review pairs may have changed since the queue was last written.
    reviews_stale: bool = True
    # The household test has run (`learn`): once, when the incident is released.
    learned: bool = False
    # Coordinators' decisions on contact and hold conflicts: review id → (decision, record).
    conflict_decisions: dict[str, tuple[str, RecordKey | None]] = field(default_factory=dict)
    # Notified persons with a contact confirmed since: they get the notice again (amendment).
    resend: set[str] = field(default_factory=set)
    # Retractions a coordinator decided send_correction for, not yet made (`correction`).
    corrections: list[str] = field(default_factory=list)
    # The last release() stopped at its limit: persons may still be due now (the next chunk).
    releasing: bool = False
    # Notified persons an s 116 hold came to hold, or stopped holding, in release(): (the
    # lineage's person id, held) — for notice-hold messages, written with the release.
    hold_changes: list[tuple[str, bool]] = field(default_factory=list)
    # Records given or withdrawn since the last settle(), and what the transaction must write.
    _changed: set[RecordKey] = field(default_factory=set)
    _records_to_write: set[RecordKey] = field(default_factory=set)
    _persons_to_write: set[str] = field(default_factory=set)

    # --- what comes in ---------------------------------------------------------------------------

    def apply_record(self, msg: AffectedRecordMessage) -> bool:
        """A record version; False when it is a replay or an older version arriving late."""
        key = (sys.intern(msg.agency_id), msg.source_record_id)
        meta = self.records.get(key)
        if meta is not None and meta.version >= msg.record_version:
            return False
        categories = intern_categories(msg.data_categories)
        record, clean = opened_record(self.sealer, msg.incident_id, msg.agency_id,
                                      msg.source_record_id, msg.record_version, msg.sealed)
        # A new version of a record its person was told about does not untell them when it is
        # still about the same person (subject_key): they hold that notice's reference, so the
        # lineage keeps the record and release compares what they are owed with what they
        # were told — an amendment for anything new, nothing otherwise, never a second first
        # notice. Nor does a hold on it, or the version that lifts that hold (the hold and its
        # end are announced for that reference). A version about someone else (the agency
        # corrected whose record it is) is not told: its person gets their own notice.
        keeps_told = (meta is not None and meta.told_by is not None
                      and (msg.on_hold or meta.on_hold or meta.subject == subject_key(clean)))
        if meta is None:
            meta = self.records[key] = RecordMeta(msg.record_version, None, False, msg.on_hold,
                                                  categories)
            self.seen[key[0]] = self.seen.get(key[0], 0) + 1
        meta.version = msg.record_version
        if keeps_told:
            meta.told_version = meta.version
        meta.withdrawn = False
        meta.on_hold = msg.on_hold
        meta.categories = categories
        note_contacts(meta, clean)
        self.resolver.place(record)
        self._records_to_write.add(key)
        self._changed.add(key)
        return True

    def withdraw(self, key: RecordKey, version: int | None = None) -> Withdrawn:
        """The withdrawal of `version` of a record. A record's versions and withdrawals are
        one sequence (v, withdrawal of v, v + 1, …), so a withdrawal of an older version than
        the one held is a replay and changes nothing. A withdrawal of a version not seen yet
        (that message lost, or coming later) leaves a tombstone at that version, so the
        version itself is ignored when it comes. `version` None: a withdrawal from before
        versioned withdrawals, of whatever version is held."""
        meta = self.records.get(key)
        if meta is None:
            if version is None:
                return Withdrawn.IGNORED
            self.records[key] = RecordMeta(version, None, True, False, ())
            self.seen[key[0]] = self.seen.get(key[0], 0) + 1
            self._records_to_write.add(key)
            return Withdrawn.TOMBSTONE
        if version is not None and (version < meta.version or
                                    (version == meta.version and meta.withdrawn)):
            return Withdrawn.IGNORED
        if version is None and meta.withdrawn:
            return Withdrawn.IGNORED
        outcome = Withdrawn.WITHDRAWN
        if version is not None and version > meta.version:
            meta.version = version  # its personal fields are of an older version: not kept
            outcome = Withdrawn.TOMBSTONE
        meta.withdrawn = True
        meta.on_hold = False
        if key in self.resolver:
            self.resolver.remove(*key)
        self._records_to_write.add(key)
        self._changed.add(key)
        return outcome

    def apply_decisions(self, decisions: Iterable[ReviewDecision], fresh: bool = True) -> None:
        """Coordinators' decisions: pairs go to the resolver; a contact or hold decision is
        kept, and (`fresh`: just made, not a rebuild's) its person is decided again."""
        for d in decisions:
            if d.kind == "retraction":
                if fresh and d.decision == "send_correction":
                    self.corrections.append(d.review_id)
            elif d.kind != "pair":
                self.conflict_decisions[d.review_id] = (d.decision, d.chosen)
                meta = self.records.get(d.a)
                person_id = meta.person_id if meta is not None else None
                if fresh and person_id in self.persons:
                    person = self.persons[person_id]
                    if d.decision == "use_contact" and person.notified_version:
                        self.resend.add(person_id)
                    person.dirty = True
                    self.dirty.add(person_id)
                    self._persons_to_write.add(person_id)
            elif d.a in self.resolver and d.b in self.resolver:
                self.resolver.decide(d.a, d.b, same_person=d.same_person)

    def awaits_resend(self, decision: ReviewDecision) -> bool:
        """A contact confirmed for a notified person whose amendment has not gone yet."""
        meta = self.records.get(decision.a)
        return decision.kind == "contact_conflict" and meta is not None and \
            meta.person_id in self.resend

    # --- the resolver's answer -------------------------------------------------------------------

    def settle(self, now: datetime) -> None:
        """Take the resolver's persons for every record that changed, mark the persons
        records left or joined as needing a release decision, and work out what each of
        them has been told (lineage.py)."""
        keys = self._changed | self.resolver.drain_changes()
        self._changed = set()
        if not keys:
            return
        self.reviews_stale = True
        touched: set[str] = set()
        for key in keys:
            meta = self.records.get(key)
            if meta is None:
                continue
            new = None if meta.withdrawn else self.resolver.person_of(*key)
            old = self._set_person(key, new)
            touched.update(p for p in (old, new) if p)
        for person_id in touched:
            person = self.persons.get(person_id)
            if person is None:
                person = self.persons[person_id] = PersonMeta(first_seen_at=now, changed_at=now)
            person.changed_at = now
            person.dirty = True
            # A person whose records all moved away or were withdrawn is no one (yet).
            if not self.members.get(person_id):
                person.status = "empty"
                self._release_lineage(person_id, person.notice_person_id)
            self.dirty.add(person_id)
            self._persons_to_write.add(person_id)
        self._assign_lineages(sorted(p for p in touched if self.members.get(p)))

    def _assign_lineages(self, person_ids: list[str]) -> None:
        """What each re-identified person has been told: from the notices covering their
        records, not from the person id their records had."""
        claims: dict[str, dict[str, RecordKey]] = {}
        for person_id in person_ids:
            claimed: dict[str, RecordKey] = {}
            for key in self.members[person_id]:
                lineage_id = self.records[key].told_by
                if lineage_id is not None and (lineage_id not in claimed
                                               or key < claimed[lineage_id]):
                    claimed[lineage_id] = key
            claims[person_id] = claimed
        current = {p: self.persons[p].notice_person_id for p in person_ids}
        for person_id, told in assign_lineages(claims, current, self.lineages,
                                               self._derive).items():
            person = self.persons[person_id]
            if told.lineage_id != person.notice_person_id:
                self._release_lineage(person_id, person.notice_person_id)
            person.notice_person_id = told.lineage_id
            person.notified_version = told.version
            person.notified_agency_ids = intern(told.agency_ids)
            person.notified_categories = intern(told.categories)
            if told.lineage_id is not None:
                lineage = self.lineages.get(told.lineage_id)
                if lineage is None:  # derived for a part split off: told what its base told
                    lineage = self.lineages[told.lineage_id] = Lineage(
                        told.version, person.notified_agency_ids, person.notified_categories)
                lineage.holder = person_id
            if person.status in ("empty", "notified"):
                person.status = "notified" if told.version else "pending"

    def _release_lineage(self, person_id: str, lineage_id: str | None) -> None:
        lineage = self.lineages.get(lineage_id) if lineage_id else None
        if lineage is not None and lineage.holder == person_id:
            lineage.holder = None

    def _derive(self, base: str, key: RecordKey, attempt: int) -> str:
        return stable_id("P", self.incident_id, base, *key, attempt)

    def learn(self, now: datetime) -> None:
        """At release, before the first notices: ask the incident's own records whether
        the twin/household guard is needed (Resolver.learn_weights without EM level
        weights, see docs/resolver.md) and re-resolve if not. Once per incident; the
        records it moves are settled like any other change."""
        if self.learned:
            return
        self.learned = True
        self.resolver.learn_weights(levels=False)
        self.settle(now)

    def _set_person(self, key: RecordKey, person_id: str | None) -> str | None:
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
        self._records_to_write.add(key)
        return old

    # --- release ---------------------------------------------------------------------------------

    def release(self, released_at: datetime | None, policy: ReleasePolicy,
                now: datetime, limit: int | None = None) -> list[DueNotice]:
        """Decide for the persons awaiting a decision — at most `limit` of them decided (a
        chunk of the release: `releasing` stays True while more may be due); returns the
        notices due now, in person order, already counted as sent: the caller writes them
        in this transaction."""
        due: list[DueNotice] = []
        decided = 0
        self.releasing = False
        for person_id in sorted(self.dirty):
            if limit is not None and decided >= limit:
                self.releasing = True  # the rest in the next chunk's transaction
                break
            person = self.persons[person_id]
            view = self.view(person_id)
            decision = decide(view, released_at, policy, now)
            if decision.action == Action.WAIT:
                continue  # stays dirty; a later tick decides
            decided += 1
            person.dirty = False
            self.dirty.discard(person_id)
            self._persons_to_write.add(person_id)
            # Announced held: a hold of a person never notified was never announced.
            was_held = person.status in HELD_STATUSES and person.notified_version > 0
            # A released hold conflict: the notice leaves the holding agency's records out,
            # so part of what the person is owed is still held back (conflicts.py).
            part_held = bool(self.route(person_id).withheld)
            if decision.action == Action.NOTHING:
                if view.live_records == 0 and person.notified_version == 0:
                    person.status = "empty"
                elif person.notified_version and person.status in ("notified", *HELD_STATUSES):
                    # A hold lifted or released with nothing new to tell.
                    person.status = "part_held" if part_held else "notified"
            elif decision.action == Action.HOLD:
                person.status = "held"
            elif decision.action == Action.HOLD_CONTACT:
                person.status = "held_contact"
            else:
                due.append(self._notify(person_id, person, view))
                if part_held:
                    person.status = "part_held"
            self._note_hold(person, was_held)
        return due

    def _note_hold(self, person: PersonMeta, was_held: bool) -> None:
        """A notified person's s 116 hold starting or ending, whole or in part (the call
        centre must know; a person never notified has no notice to look up, so nothing is
        said of them). Called after the decision: a first notice that leaves a held agency's
        part out is announced as held with it."""
        if person.notified_version == 0 or person.notice_person_id is None:
            return
        held = person.status in HELD_STATUSES
        if held != was_held:
            self.hold_changes.append((person.notice_person_id, held))

    def take_hold_changes(self) -> list[tuple[str, bool]]:
        changes, self.hold_changes = self.hold_changes, []
        return changes

    def _notify(self, person_id: str, person: PersonMeta, view: PersonView) -> DueNotice:
        """Count a notice as sent: the next version of the person's lineage (a new lineage
        for a first notice), covering every live record of theirs at its version."""
        lineage_id = person.notice_person_id or first_lineage_id(person_id, self.lineages,
                                                                 self._derive)
        lineage = self.lineages.get(lineage_id)
        if lineage is None:
            lineage = self.lineages[lineage_id] = Lineage(0, frozenset(), frozenset())
        # Never a version the lineage has issued: notice ids are (incident, lineage, version).
        version = max(person.notified_version, lineage.version) + 1
        person.status = "notified"
        person.notice_person_id = lineage_id
        person.notified_version = version
        person.notified_agency_ids = intern(view.agency_ids | person.notified_agency_ids)
        person.notified_categories = intern(view.categories | person.notified_categories)
        lineage.version, lineage.holder = version, person_id
        lineage.agency_ids = intern(lineage.agency_ids | view.agency_ids)
        lineage.categories = intern(lineage.categories | view.categories)
        route = self.route(person_id)
        for key in self.members.get(person_id, ()):
            if key in route.withheld:
                continue  # left out of this notice: never told, so its hold's lifting amends
            meta = self.records[key]
            meta.told_lineage, meta.told_version = lineage_id, meta.version
        self.resend.discard(person_id)
        return DueNotice(person_id, lineage_id, version, view, route)

    def route(self, person_id: str) -> Route:
        """The person's contact and hold conflicts, and what their notice uses (conflicts.py)."""
        keys = self.members.get(person_id, set())
        if len({k[0] for k in keys}) < 2 and not any(self.records[k].on_hold for k in keys):
            return Route()  # one agency and no hold: nothing to contradict
        return conflicts.route(self.incident_id, [
            Claim(k, (m := self.records[k]).version, m.email, m.mobile, bool(m.reach & 1),
                  bool(m.reach & 2), m.on_hold) for k in sorted(keys)], self.conflict_decisions)

    def conflicts(self) -> list[Conflict]:
        """Every contact and hold conflict of the incident's persons now (the review queue)."""
        return [c for person_id in sorted(self.members) for c in self.route(person_id).conflicts]

    def retractions(self) -> list[Retraction]:
        """Notices some of whose records were withdrawn after they told about them
        (retractions.py); one pass over the records, when the review queue is refreshed."""
        return retractions(self.incident_id, (
            Told(m.told_lineage, k, m.version, m.withdrawn) for k, m in self.records.items()
            if m.told_lineage is not None))

    def correction(self, review_id: str) -> tuple[Retraction, int] | None:
        """Count the correction notice a coordinator decided as sent: the retraction it
        corrects (None when it no longer stands, e.g. a record given again meanwhile) and
        the lineage version it carries. The withdrawn agencies are no longer what the person
        was told, so a record of theirs given later amends as a new agency would."""
        found = next((r for r in self.retractions() if r.review_id == review_id), None)
        if found is None:
            return None
        lineage = self.lineages.get(found.lineage_id)
        if lineage is None:
            lineage = self.lineages[found.lineage_id] = Lineage(0, frozenset(), frozenset())
        version = lineage.version + 1
        gone = frozenset(found.withdrawn_agencies)
        lineage.version = version
        lineage.agency_ids = intern(lineage.agency_ids - gone)
        for person_id, person in self.persons.items():
            if person.notice_person_id == found.lineage_id:
                person.notified_version = max(person.notified_version, version)
                person.notified_agency_ids = intern(person.notified_agency_ids - gone)
                self._persons_to_write.add(person_id)
        return found, version

    def view(self, person_id: str) -> PersonView:
        person = self.persons[person_id]
        route = self.route(person_id)
        keys = self.members.get(person_id, set()) - route.withheld
        metas = [self.records[k] for k in keys]
        return PersonView(
            live_records=len(metas),
            any_on_hold=route.held,
            agency_ids=frozenset(k[0] for k in keys),
            categories=frozenset(c for m in metas for c in m.categories),
            first_seen_at=person.first_seen_at, changed_at=person.changed_at,
            notified_version=person.notified_version,
            notified_agency_ids=person.notified_agency_ids,
            notified_categories=person.notified_categories,
            held_for_contact=route.held_for_contact,
            resend=person_id in self.resend,
            # The part a released hold conflict left out is no longer held: owed to them now.
            held_part_released=person.status == "part_held" and not route.withheld,
        )

    def finished(self) -> bool:
        """Nothing left for this state to decide or write: every person decided, the review
        queue written, nothing pending. (Whether the incident is released is the caller's.)"""
        return not (self.dirty or self.reviews_stale or self._changed
                    or self._records_to_write or self._persons_to_write)

    # --- what the transaction writes -------------------------------------------------------------

    def take_records(self) -> dict[RecordKey, RecordMeta]:
        taken = {key: self.records[key] for key in self._records_to_write}
        self._records_to_write = set()
        return taken

    def take_persons(self) -> dict[str, PersonMeta]:
        taken = {pid: self.persons[pid] for pid in self._persons_to_write}
        self._persons_to_write = set()
        return taken


class IdentityState:
    """Every owned incident's identity, by incident id, and which partition each is on."""

    def __init__(self, sealer: Sealer, config: ResolverConfig | None = None,
                 review_sync_interval_s: float = 30.0):
        self.sealer = sealer
        self.config = config
        # Listing review pairs walks every kept pair of an incident: done on ticks, at most
        # this often per incident, not per batch — and, as an incident grows, no more often
        # than `review_sync_cost_factor` times what its last refresh took (so the walk costs
        # a bounded share of the time, whatever the incident's size; reviews_synced).
        self.review_sync_interval_s = review_sync_interval_s
        self.review_sync_cost_factor = 10.0
        self._reviews_cost_s: dict[str, float] = {}
        self._incidents: dict[str, IncidentIdentity] = {}
        self._partition_of: dict[str, int] = {}
        self._used_at: dict[str, float] = {}  # monotonic: when each was last needed
        self._reviews_synced_at: dict[str, float] = {}
        self._lock = threading.Lock()  # a rebuild thread registers while others read

    def get(self, incident_id: str, partition: int | None = None) -> IncidentIdentity | None:
        """The incident's state if it is held (noting its partition), else None."""
        incident = self._incidents.get(incident_id)
        if incident is not None and partition is not None:
            self._partition_of[incident_id] = partition
        return incident

    def touch(self, incident_id: str) -> None:
        """Something came for the incident (a record, a withdrawal, a completion)."""
        self._used_at[incident_id] = time.monotonic()

    def rebuild(self, incident_id: str, partition: int | None,
                stored: StoredIdentity, released: bool = False,
                chunk: int = 5000) -> IncidentIdentity:
        """Build the incident's state from what the database holds and hold it."""
        incident = self.build(incident_id, stored, released, chunk)
        self.hold(incident, partition)
        return incident

    def build(self, incident_id: str, stored: StoredIdentity, released: bool = False,
              chunk: int = 5000) -> IncidentIdentity:
        """The incident's state from stored rows, not yet held. `stored.records` may be a
        stream: records are opened and given to the resolver `chunk` at a time, so no more
        than a chunk of sealed values is in memory at once. A released incident learns again
        (the household test is a function of its records); a record the rebuilt resolver
        places differently from the stored assignment is settled as a change."""
        incident = IncidentIdentity(incident_id, self.sealer, Resolver(self.config))
        live: list[MatchRecord] = []
        count = 0
        for r in stored.records:
            count += 1
            key = (sys.intern(r.key[0]), r.key[1])
            r.meta.categories = intern_categories(r.meta.categories)
            incident.records[key] = r.meta
            incident.seen[key[0]] = incident.seen.get(key[0], 0) + 1
            if not r.meta.withdrawn:
                record, clean = opened_record(self.sealer, incident_id, *key, r.meta.version,
                                              r.sealed)
                note_contacts(r.meta, clean)
                live.append(record)
                if r.meta.person_id:
                    incident.members.setdefault(r.meta.person_id, set()).add(key)
                if len(live) >= chunk:
                    incident.resolver.add_many(live)
                    live = []
        incident.resolver.add_many(live)
        incident.apply_decisions(stored.decisions, fresh=False)
        if released:
            incident.learned = True
            incident.resolver.learn_weights(levels=False)
        incident.resolver.drain_changes()  # the database holds these assignments, except:
        # (from the records' metadata, as stored: the stream can be read only once)
        incident._changed = {
            key for key, meta in incident.records.items()
            if not meta.withdrawn and incident.resolver.person_of(*key) != meta.person_id}
        incident.persons = stored.persons
        incident.lineages = lineages_of(stored.persons, stored.issued)
        incident.dirty = {pid for pid, p in stored.persons.items() if p.dirty}
        if count:
            log.info("identity state rebuilt from the database",
                     extra={"incident_id": incident_id, "count": count})
        return incident

    def hold(self, incident: IncidentIdentity, partition: int | None) -> None:
        with self._lock:
            self._incidents[incident.incident_id] = incident
            self._used_at[incident.incident_id] = time.monotonic()
            if partition is not None:
                self._partition_of[incident.incident_id] = partition

    def held(self) -> dict[str, int | None]:
        """The incidents held, with their partitions."""
        with self._lock:
            return {i: self._partition_of.get(i) for i in self._incidents}

    def held_records(self) -> int:
        with self._lock:
            return sum(len(i.records) for i in self._incidents.values())

    def forget(self, incident_ids: Iterable[str]) -> None:
        with self._lock:
            for incident_id in list(incident_ids):
                self._incidents.pop(incident_id, None)
                self._partition_of.pop(incident_id, None)
                self._used_at.pop(incident_id, None)

    def forget_partitions(self, partitions: set[int]) -> list[str]:
        """Drop the incidents on these partitions; returns their ids."""
        with self._lock:
            gone = [i for i, p in self._partition_of.items() if p in partitions]
        self.forget(gone)
        return gone

    def idle(self, incident_ids: Iterable[str], idle_s: float) -> list[str]:
        """Of these held incidents, those nothing came for in `idle_s` seconds."""
        now = time.monotonic()
        with self._lock:
            return [i for i in incident_ids
                    if i in self._incidents and now - self._used_at.get(i, now) >= idle_s]

    def reviews_due(self, incident: IncidentIdentity) -> list[ReviewItem] | None:
        """The resolver's review pairs when the incident's queue is due a refresh, else None."""
        if not incident.reviews_stale:
            return None
        last = self._reviews_synced_at.get(incident.incident_id)
        gap = max(self.review_sync_interval_s,
                  self.review_sync_cost_factor * self._reviews_cost_s.get(incident.incident_id, 0.0))
        if last is not None and time.monotonic() - last < gap:
            return None
        incident.reviews_stale = False
        self._reviews_synced_at[incident.incident_id] = time.monotonic()
        return incident.resolver.review_items()

    def reviews_synced(self, incident_id: str, started: float) -> None:
        """The refresh that `reviews_due` began at `started` (time.monotonic()) is written:
        what it took spaces out the next one (a refresh under a second, any small incident's,
        leaves the interval as it is)."""
        took = time.monotonic() - started
        if took >= 1.0:
            self._reviews_cost_s[incident_id] = took
        else:
            self._reviews_cost_s.pop(incident_id, None)
