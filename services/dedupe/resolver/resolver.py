"""The resolver: records in, one person per record out, incrementally.

How a record is placed:
1. it is indexed into blocks and compared with the records sharing a usable block;
2. each pair is weighed (frequency-adjusted) and decided: match, review or non-match;
   only match and review pairs are kept ("edges");
3. the connected components over match edges that it touches are re-split into persons
   by the conflict guard (see clustering.py).

Everything that decides the outcome is a function of the current set of records — block
sizes, value frequencies, pair levels — and is kept up to date as records arrive or are
withdrawn (blocks that overflow drop their edges, values that become common re-weigh
theirs), so the final persons do not depend on arrival order.

Over 400 lines on purpose: placing, withdrawing and re-weighing a record share the index and
edge bookkeeping; split, each half would reach into the other's private state.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from services.dedupe.resolver.blocking import BlockIndex, index_keys, key_id
from services.dedupe.resolver.clustering import MatchEdge, components, split_by_guard
from services.dedupe.resolver.comparisons import Levels, compare, compare_unless_conflict, goes_by_middle
from services.dedupe.resolver.config import LEVEL_WEIGHTS, Guard, ResolverConfig
from services.dedupe.resolver.explain import (
    Assignment,
    PairEvidence,
    PersonExplanation,
    ReviewItem,
    person_id_for,
)
from services.dedupe.resolver.records import MatchRecord, PreparedRecord, RecordKey
from services.dedupe.resolver.scoring import CONTACT_DOUBT, MATCH, NON_MATCH, Plans, Score, weigh
from services.dedupe.resolver.weights import (
    COUNTED_BY_INDEX,
    ValueFrequency,
    bucket,
    frequency_values,
    indexed_values,
)

SNAPSHOT_VERSION = 1


class _Edge:
    """A kept pair: its levels never change; its weight changes if a value becomes common.

    The per-field parts of the score are not kept (they are recomputed for explanations),
    and identical level tuples are shared, so an edge costs a few pointers."""

    __slots__ = ("decision", "levels", "pinned", "reason", "weight")

    def __init__(self, levels: Levels, score: Score, pinned: bool = False) -> None:
        self.levels = _LEVELS.setdefault(levels, levels)
        self.weight = score.weight
        self.decision = score.decision
        self.reason = score.reason
        self.pinned = pinned  # a reviewer's "same person": never re-scored or dropped

    def set_score(self, score: Score) -> None:
        self.weight, self.decision, self.reason = score.weight, score.decision, score.reason


_LEVELS: dict[Levels, Levels] = {}


@lru_cache(maxsize=4096)
def _weak(levels: Levels) -> bool:  # per distinct level tuple: clustering asks for every edge
    return levels.weak


@lru_cache(maxsize=4096)
def _copy(levels: Levels) -> bool:
    return levels.weak and levels.copy


@lru_cache(maxsize=4096)
def _placed(levels: Levels) -> bool:
    return levels.contact_agrees


_NO_EDGES: dict[int, _Edge] = {}


def _pairs(flat: tuple) -> zip:
    """(other, edge) from a record's flat edge tuple, without building a dict."""
    return zip(flat[::2], flat[1::2], strict=True)


# Which index key lists the holders of a frequency-weighted value.
_HOLDER_KIND = {"nhi": "nhi", "given": "given", "family": "family", "dob": "dob",
                "mobile": "mobile", "email": "email", "address": "address"}


@dataclass(frozen=True, slots=True)
class Person:
    person_id: str
    records: tuple[RecordKey, ...]


class UnknownRecord(KeyError):
    """Raised by remove/explain for a record the resolver does not hold."""


class Resolver:
    def __init__(self, config: ResolverConfig | None = None) -> None:
        self.config = config or ResolverConfig()
        self._records: dict[int, PreparedRecord] = {}
        self._rid: dict[RecordKey, int] = {}
        self._next_rid = 0
        self._index = BlockIndex(self.config.block_cap, self.config.block_caps)
        self._frequency = ValueFrequency()
        # Kept pairs (match and review) by record; records without any have no entry.
        # Stored flat, (other, edge, other, edge, ...): a tuple of two costs 56 bytes where
        # a dict costs 184, and most records have one to three kept pairs.
        self._edges: dict[int, tuple[int | _Edge, ...]] = {}
        # Person ids that differ from the record's own (only records joined to a record
        # with a smaller key have one); components and persons are not stored, they are
        # found again from the match edges when needed.
        # Stored as the person's smallest record key (a shared tuple), not the id string;
        # the id is a hash of that key, computed when asked for.
        self._person_id: dict[int, RecordKey] = {}
        # Records whose person changed (or that left) since the last drain_changes().
        self._changed: set[RecordKey] = set()
        # Human review decisions, by record keys: True = same person, False = keep apart.
        self._pins: dict[tuple[RecordKey, RecordKey], bool] = {}
        self._pins_of: dict[RecordKey, set[tuple[RecordKey, RecordKey]]] = {}
        # Scores of the pairs the record being added just formed, for its Assignment.
        self._fresh: dict[tuple[int, int], Score] = {}
        # How each level tuple is weighed under self.config (scoring.weigh); a new config
        # means a new Resolver (_rebuild), so these never outlive theirs.
        self._plans: Plans = {}

    # ---------------------------------------------------------------- public API

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: RecordKey) -> bool:
        return tuple(key) in self._rid

    def add(self, record: MatchRecord) -> Assignment:
        """Place one record. A record with a key already held replaces the old one."""
        rid, seeds = self._insert(record)
        self._recluster(seeds)
        assignment = self._assignment(rid)
        self._fresh.clear()
        return assignment

    def place(self, record: MatchRecord) -> None:
        """`add` without its Assignment (the evidence of every kept pair, sorted): for a
        caller that reads persons through drain_changes()/person_of, as dedupe does."""
        rid, seeds = self._insert(record)
        self._recluster(seeds)
        self._fresh.clear()

    def add_many(self, records: Iterable[MatchRecord]) -> list[Assignment]:
        """Place a batch; persons are settled once at the end (same result, less work)."""
        rids, seeds = [], set()
        for record in records:
            rid, touched = self._insert(record)
            self._fresh.clear()
            rids.append(rid)
            seeds |= touched
        self._recluster(seeds)
        return [self._assignment(rid) for rid in rids if rid in self._records]

    def remove(self, agency_id: str, source_record_id: str) -> None:
        """Withdraw a record; its person is re-resolved from the records that remain."""
        key = (agency_id, source_record_id)
        if key not in self._rid:
            raise UnknownRecord("record is not held by this resolver")
        self._recluster(self._delete(self._rid[key]))

    def person_of(self, agency_id: str, source_record_id: str) -> str:
        return self._pid(self._rid_of((agency_id, source_record_id)))

    def assignments(self) -> list[tuple[str, str, str]]:
        """(agency_id, source_record_id, person_id) for every record, sorted."""
        return sorted((*p.key, self._pid(r)) for r, p in self._records.items())

    def persons(self) -> list[Person]:
        grouped: dict[str, list[RecordKey]] = {}
        for rid, p in self._records.items():
            grouped.setdefault(self._pid(rid), []).append(p.key)
        return [Person(pid, tuple(sorted(keys))) for pid, keys in sorted(grouped.items())]

    def review_items(self) -> list[ReviewItem]:
        """Open questions for a reviewer: one per pair of persons, highest expected cost
        first (see review.py)."""
        from services.dedupe.resolver.review import review_items

        return review_items(self)

    def explain(self, agency_id: str, source_record_id: str) -> PersonExplanation:
        """The person holding a record: its records, the links inside it, refusals and review pairs."""
        rid = self._rid_of((agency_id, source_record_id))
        pid = self._pid(rid)
        (component,) = components([rid], self._match_neighbours)
        members = [m for m in component if self._pid(m) == pid]
        inside = set(members)
        explanation = PersonExplanation(pid, sorted(self._records[m].key for m in members))
        for r in members:
            for s, edge in self._edges_of(r).items():
                if s in inside:
                    if r < s and edge.decision == MATCH:
                        explanation.links.append(self._evidence(r, s, edge))
                elif edge.decision == MATCH:
                    explanation.refused.append(self._evidence(r, s, edge))
                else:
                    explanation.uncertain.append(self._evidence(r, s, edge))
        for found in (explanation.links, explanation.refused, explanation.uncertain):
            found.sort(key=lambda e: (e.a, e.b))
        return explanation

    def explain_pair(self, a: RecordKey, b: RecordKey) -> PairEvidence:
        """Score any two held records now, whether or not blocking ever paired them."""
        pa, pb = self._records[self._rid_of(a)], self._records[self._rid_of(b)]
        return PairEvidence.of(pa.key, pb.key, self._score(pa, pb, compare(pa, pb)), self.config)

    def drain_changes(self) -> set[RecordKey]:
        """Records whose person id changed, or that were removed, since the last call: what a
        caller persisting assignments must rewrite (merges and splits move other records too)."""
        changed, self._changed = self._changed, set()
        return changed

    def decide(self, a: RecordKey, b: RecordKey, same_person: bool) -> None:
        """A reviewer's decision on a pair, kept for as long as both records are held (and
        re-applied when either is replaced by a new version). `same_person` links them even
        against the guard; otherwise the pair is treated as a conflict and never joined."""
        pair = (min(tuple(a), tuple(b)), max(tuple(a), tuple(b)))
        ra, rb = self._rid_of(pair[0]), self._rid_of(pair[1])
        self._pins[pair] = same_person
        for key in pair:
            self._pins_of.setdefault(key, set()).add(pair)
        self._apply_pin(ra, rb, same_person)
        self._recluster({ra, rb})

    def learn_weights(self, levels: bool = True) -> dict[str, Any]:
        """Re-estimate from this incident's own records whether the twin/household guard is
        needed (the household test) and, with `levels`, the graded level weights (EM with
        the hand-set weights as priors and bounds, see learning.py); re-resolve every
        record when that changed anything. Reviewer decisions are kept; records whose
        person changed are reported by drain_changes(). Returns the estimate."""
        from services.dedupe.resolver.learning import estimate_weights

        config, report = estimate_weights(
            self._records, lambda r: self._index.candidates(self._key_ids(r)), self.config,
            levels=levels)
        if config != self.config:
            self._rebuild(config)
        report["weights"] = config.level_weights
        return report

    def _rebuild(self, config: ResolverConfig) -> None:
        before = {p.key: self._pid(r) for r, p in self._records.items()}
        fresh = Resolver(config)
        fresh._pins = dict(self._pins)
        fresh._pins_of = {k: set(v) for k, v in self._pins_of.items()}
        fresh.add_many(sorted((p.record for p in self._records.values()), key=lambda r: r.key))
        changed = self._changed
        self.__dict__.update(fresh.__dict__)
        self._changed = changed | {k for k, pid in before.items() if self._pid(self._rid[k]) != pid}

    def snapshot(self) -> dict[str, Any]:
        """Serialisable state: the records (and learned weights). Restoring re-adds them
        (outcome is order-free)."""
        records = sorted((p.record for p in self._records.values()), key=lambda r: r.key)
        snap = {"version": SNAPSHOT_VERSION, "config": self.config.describe(),
                "records": [r.to_dict() for r in records]}
        if self.config.learned:
            snap["learned_weights"] = self.config.level_weights
            snap["guard"] = {"given": self.config.guard.given, "dob": self.config.guard.dob}
        return snap

    @classmethod
    def restore(cls, snapshot: dict[str, Any], config: ResolverConfig | None = None) -> Resolver:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError("unsupported resolver snapshot version")
        if config is None and snapshot.get("learned_weights"):
            guard = Guard(**snapshot.get("guard", {}))
            # A level added since the snapshot was taken (round 7's nickname_typo) keeps its prior.
            learned = {f: {**LEVEL_WEIGHTS.get(f, {}), **w} for f, w in snapshot["learned_weights"].items()}
            config = ResolverConfig(level_weights=learned, learned=True, guard=guard)
        resolver = cls(config)
        resolver.add_many(MatchRecord.from_dict(r) for r in snapshot["records"])
        return resolver

    # ---------------------------------------------------------------- internals

    def _rid_of(self, key: RecordKey) -> int:
        try:
            return self._rid[tuple(key)]
        except KeyError:
            raise UnknownRecord("record is not held by this resolver") from None

    def _pid(self, rid: int) -> str:
        return person_id_for([self._person_id.get(rid) or self._records[rid].key])

    def _edge(self, a: int, b: int) -> _Edge | None:
        flat = self._edges.get(a, ())
        for i in range(0, len(flat), 2):
            if flat[i] == b:
                return flat[i + 1]
        return None

    def _edges_of(self, rid: int) -> dict[int, _Edge]:
        flat = self._edges.get(rid)
        if flat is None:
            return _NO_EDGES
        return dict(zip(flat[::2], flat[1::2], strict=True))

    def _key_ids(self, rid: int) -> list[int]:
        # Not stored: recomputed from the record (cheap, and only needed on rare paths).
        return [key_id(k) for k in index_keys(self._records[rid])]

    def _bucket(self, field: str, value: str) -> int:
        if field in COUNTED_BY_INDEX:
            return bucket(self._index.size(key_id((_HOLDER_KIND[field], value))))
        return self._frequency.bucket(field, value)

    def _score(self, a: PreparedRecord, b: PreparedRecord, levels: Levels) -> Score:
        return weigh(levels, a, self._bucket, self.config, self._plans)

    def _evidence(self, r: int, s: int, edge: _Edge) -> PairEvidence:
        pr, ps = self._records[r], self._records[s]
        score = self._score(pr, ps, edge.levels)
        if edge.pinned:
            score = Score(edge.weight, edge.decision, score.parts, edge.reason)
        return PairEvidence.of(pr.key, ps.key, score, self.config)

    def _insert(self, record: MatchRecord) -> tuple[int, set[int]]:
        """Index, count and compare a record. Returns its id and the records whose edges changed."""
        seeds: set[int] = set()
        key = record.key
        if key in self._rid:
            seeds |= self._delete(self._rid[key])
        rid = self._next_rid
        self._next_rid += 1
        prepared = PreparedRecord(record)
        key = prepared.key
        self._records[rid] = prepared
        self._rid[key] = rid
        self._changed.add(key)
        seeds.add(rid)

        key_ids, overflowed = self._index.add(rid, index_keys(prepared))
        for kid in overflowed:
            seeds |= self._drop_unjustified_edges(kid)
        for field, value in indexed_values(prepared):  # one more record holds each
            held = self._index.size(key_id((_HOLDER_KIND[field], value)))
            if bucket(held) != bucket(held - 1) and self._weight_moved(field, value, -1):
                seeds |= self._reweigh(field, value, became_rarer=False)
        for field, value in frequency_values(prepared):
            others = self._other_holders(rid, field, value)
            if self._frequency.add(field, value, prepared.proxy, others) and \
                    self._weight_moved(field, value, -1):
                seeds |= self._reweigh(field, value, became_rarer=False)

        for other in set(self._index.candidates(key_ids)):
            if other != rid and self._link(rid, other):
                seeds.add(other)
        for pair in self._pins_of.get(key, ()):
            partner = self._rid.get(pair[1] if pair[0] == key else pair[0])
            if partner is not None:
                self._apply_pin(rid, partner, self._pins[pair])
                seeds.add(partner)
        return rid, seeds

    def _set_edge(self, a: int, b: int, edge: _Edge) -> None:
        self._set_half(a, b, edge)
        self._set_half(b, a, edge)

    def _set_half(self, a: int, b: int, edge: _Edge) -> None:
        flat = self._edges.get(a, ())
        for i in range(0, len(flat), 2):
            if flat[i] == b:
                self._edges[a] = (*flat[:i + 1], edge, *flat[i + 2:])
                return
        self._edges[a] = (*flat, b, edge)

    def _apply_pin(self, a: int, b: int, same_person: bool) -> None:
        if same_person:
            levels = compare(self._records[a], self._records[b])
            base = self._score(self._records[a], self._records[b], levels)
            score = Score(float("inf"), MATCH, base.parts, "reviewer decided: same person")
            self._set_edge(a, b, _Edge(levels, score, pinned=True))
        elif b in self._edges_of(a):
            self._unlink(a, b)

    def _delete(self, rid: int) -> set[int]:
        key_ids = self._key_ids(rid)
        prepared = self._records.pop(rid)
        del self._rid[prepared.key]
        self._changed.add(prepared.key)
        seeds: set[int] = set()  # its neighbours (below) reach whatever it held together
        self._person_id.pop(rid, None)
        for other in self._edges.pop(rid, ())[::2]:
            self._unlink_half(other, rid)
            seeds.add(other)
        reopened = self._index.remove(rid, key_ids)
        for field, value in indexed_values(prepared):  # one record fewer holds each
            held = self._index.size(key_id((_HOLDER_KIND[field], value)))
            if held and bucket(held) != bucket(held + 1) and self._weight_moved(field, value, +1):
                seeds |= self._reweigh(field, value, became_rarer=True)
        for field, value in frequency_values(prepared):
            if self._frequency.remove(field, value, prepared.proxy, sparse=True) and \
                    self._weight_moved(field, value, +1):
                seeds |= self._reweigh(field, value, became_rarer=True)
        for kid in reopened:
            seeds |= self._link_block(kid)
        return seeds

    def _link(self, a: int, b: int) -> bool:
        """Compare and weigh a pair; keep it if it is a match or needs review."""
        pa, pb = self._records[a], self._records[b]
        levels = compare_unless_conflict(pa, pb, self.config.guard)
        if levels is None:  # a conflict: always a non-match (the common household case)
            return False
        score = self._score(pa, pb, levels)
        if score.decision == NON_MATCH:
            return False
        self._set_edge(a, b, _Edge(levels, score))
        self._fresh[(a, b)] = score
        return True

    def _unlink_half(self, a: int, b: int) -> None:
        flat = self._edges[a]
        i = flat[::2].index(b) * 2
        flat = flat[:i] + flat[i + 2:]
        if flat:
            self._edges[a] = flat
        else:
            del self._edges[a]

    def _unlink(self, a: int, b: int) -> None:
        self._unlink_half(a, b)
        self._unlink_half(b, a)

    def _drop_unjustified_edges(self, kid: int) -> set[int]:
        """A block went over the cap: drop edges no other usable block justifies."""
        members = set(self._index.members(kid))
        touched = set()
        keys: dict[int, list[int]] = {}
        for r in members:
            for s in [s for s, e in self._edges_of(r).items() if s in members and r < s and not e.pinned]:
                kr = keys.setdefault(r, self._key_ids(r))
                ks = keys.setdefault(s, self._key_ids(s))
                if not self._index.shares_usable_block(kr, ks):
                    self._unlink(r, s)
                    touched |= {r, s}
        return touched

    def _link_block(self, kid: int) -> set[int]:
        """A block came back under the cap: compare the pairs it now justifies."""
        members = sorted(self._index.members(kid))
        touched = set()
        for i, r in enumerate(members):
            for s in members[i + 1:]:
                if s not in self._edges_of(r) and self._link(r, s):
                    touched |= {r, s}
        return touched

    def _other_holders(self, rid: int, field: str, value: str) -> Callable[[], list[int]]:
        def proxies() -> list[int]:
            members = self._index.members(key_id((_HOLDER_KIND[field], value)))
            return [self._records[m].proxy for m in members if m != rid]
        return proxies

    def _weight_moved(self, field: str, value: str, step: int) -> bool:
        """After a bucket change by one step: did the agreement weight change too? Past a
        value's floor (a common surname, a clinic phone) it no longer does, so the records
        holding the commonest values are never re-scored."""
        frequency = self.config.frequency[field]
        now = self._bucket(field, value)
        return frequency.weight(now) != frequency.weight(now + step)

    def _reweigh(self, field: str, value: str, became_rarer: bool) -> set[int]:
        """A value's frequency bucket changed: re-score the pairs that agree on it."""
        holders = set(self._index.members(key_id((_HOLDER_KIND[field], value))))
        touched = set()
        for r in holders:
            for s, edge in list(self._edges_of(r).items()):
                if s not in holders or r > s or edge.pinned:
                    continue
                score = self._score(self._records[r], self._records[s], edge.levels)
                if score.decision != edge.decision or score.weight != edge.weight:
                    touched |= {r, s}  # a new weight can change the guard's join order
                if score.decision == NON_MATCH:
                    self._unlink(r, s)
                else:
                    edge.set_score(score)
            if became_rarer:
                # Rarer means heavier: pairs once below review may now be kept.
                for s in set(self._index.candidates(self._key_ids(r))):
                    if s in holders and r < s and s not in self._edges_of(r) and self._link(r, s):
                        touched |= {r, s}
        return touched

    def _match_neighbours(self, rid: int) -> Iterable[int]:
        flat = self._edges.get(rid, ())
        return [flat[i] for i in range(0, len(flat), 2) if flat[i + 1].decision == MATCH]

    def _hard_conflict(self, a: int, b: int) -> bool:
        if self._pins:
            pair = tuple(sorted((self._records[a].key, self._records[b].key)))
            pinned = self._pins.get(pair)
            if pinned is not None:
                return not pinned
        edge = self._edge(a, b)
        levels = edge.levels if edge else compare(self._records[a], self._records[b])
        return levels.conflicts(self.config.guard)

    def _conflict(self, a: int, b: int) -> bool:
        if self._pins:
            pair = tuple(sorted((self._records[a].key, self._records[b].key)))
            pinned = self._pins.get(pair)
            if pinned is not None:
                return not pinned
        edge = self._edge(a, b)
        levels = edge.levels if edge else compare(self._records[a], self._records[b])
        return levels.guard_conflicts(self.config.guard)

    def _incomplete(self, rid: int) -> bool:
        """Weakly identified: no date of birth, no given name, or only an initial."""
        record = self._records[rid]
        return record.dob is None or not record.given or len(record.given_first) == 1

    def _loose_end(self, r: int, s: int, edge: _Edge) -> int:
        """On a 'goes by a middle name' edge, the record using the other's middle name."""
        if edge.levels.given != "token":
            return -1
        return r if goes_by_middle(self._records[r], self._records[s]) else s

    def _recluster(self, seeds: set[int]) -> None:
        """Recompute components and persons around records whose edges changed."""
        # Every change of edges seeds both its records, so the components reachable from
        # the seeds are all the components whose persons can have changed.
        start = sorted(rid for rid in seeds if rid in self._records)
        records, kept = self._records, self._edges
        for component in components(start, self._match_neighbours):
            if len(component) == 1:
                self._set_person_id(component[0], None)
                continue
            edges = [
                MatchEdge(e.weight, records[r].key, records[s].key, r, s,
                          not e.pinned and _weak(e.levels), _copy(e.levels), self._loose_end(r, s, e),
                          _placed(e.levels))
                for r in component
                for s, e in _pairs(kept.get(r, ()))  # the flat tuple, in its order
                if r < s and e.decision == MATCH
            ]
            # Weak matches made reviews by conflicting evidence still count where an
            # undated record's edges lead (clustering.split_by_guard).
            inside = set(component)
            doubts = [(r, s) for r in component for s, e in self._edges_of(r).items()
                      if e.reason == CONTACT_DOUBT and (r < s or s not in inside)]
            persons, _refused = split_by_guard(component, edges, self._conflict, self._incomplete, doubts)
            for person in persons:
                anchor = min(self._records[r].key for r in person)
                for rid in person:
                    self._set_person_id(rid, anchor)

    def _set_person_id(self, rid: int, anchor: RecordKey | None) -> None:
        """Record whose smallest key names the record's person (None: it is alone)."""
        own = self._records[rid].key
        anchor = anchor or own
        if self._person_id.get(rid, own) != anchor:
            self._changed.add(own)
        if anchor == own:
            self._person_id.pop(rid, None)
        else:
            self._person_id[rid] = anchor

    def _assignment(self, rid: int) -> Assignment:
        key = self._records[rid].key
        fresh = self._fresh
        evidence = sorted(
            (PairEvidence.of(key, self._records[s].key, fresh[(rid, s)], self.config)
             if (rid, s) in fresh and not e.pinned and fresh[(rid, s)].weight == e.weight
             else self._evidence(rid, s, e)
             for s, e in self._edges_of(rid).items()),
            key=lambda ev: (-ev.weight, ev.a, ev.b),
        )
        return Assignment(key, self._pid(rid), tuple(evidence))
