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
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.dedupe.resolver.blocking import BlockIndex, index_keys, key_id
from services.dedupe.resolver.clustering import MatchEdge, components, split_by_guard
from services.dedupe.resolver.comparisons import Levels, compare
from services.dedupe.resolver.config import ResolverConfig
from services.dedupe.resolver.explain import (
    Assignment,
    PairEvidence,
    PersonExplanation,
    ReviewItem,
    person_id_for,
)
from services.dedupe.resolver.records import MatchRecord, PreparedRecord, RecordKey
from services.dedupe.resolver.scoring import MATCH, NON_MATCH, REVIEW, Score, weigh
from services.dedupe.resolver.weights import ValueFrequency, frequency_values

SNAPSHOT_VERSION = 1


class _Edge:
    """A kept pair: its levels never change; its score changes if a value becomes common."""

    __slots__ = ("levels", "pinned", "score")

    def __init__(self, levels: Levels, score: Score, pinned: bool = False) -> None:
        self.levels = levels
        self.score = score
        self.pinned = pinned  # a reviewer's "same person": never re-scored or dropped


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
        self._keys: dict[int, list[int]] = {}
        self._index = BlockIndex(self.config.block_cap)
        self._frequency = ValueFrequency()
        self._edges: dict[int, dict[int, _Edge]] = {}
        self._component: dict[int, list[int]] = {}
        self._person: dict[int, list[int]] = {}
        self._person_id: dict[int, str] = {}
        # Records whose person changed (or that left) since the last drain_changes().
        self._changed: set[RecordKey] = set()
        # Human review decisions, by record keys: True = same person, False = keep apart.
        self._pins: dict[tuple[RecordKey, RecordKey], bool] = {}

    # ---------------------------------------------------------------- public API

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: RecordKey) -> bool:
        return tuple(key) in self._rid

    def add(self, record: MatchRecord) -> Assignment:
        """Place one record. A record with a key already held replaces the old one."""
        rid, seeds = self._insert(record)
        self._recluster(seeds)
        return self._assignment(rid)

    def add_many(self, records: Iterable[MatchRecord]) -> list[Assignment]:
        """Place a batch; persons are settled once at the end (same result, less work)."""
        rids, seeds = [], set()
        for record in records:
            rid, touched = self._insert(record)
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
        return self._person_id[self._rid_of((agency_id, source_record_id))]

    def assignments(self) -> list[tuple[str, str, str]]:
        """(agency_id, source_record_id, person_id) for every record, sorted."""
        return sorted((*self._records[r].key, pid) for r, pid in self._person_id.items())

    def persons(self) -> list[Person]:
        grouped: dict[str, list[RecordKey]] = {}
        for rid, pid in self._person_id.items():
            grouped.setdefault(pid, []).append(self._records[rid].key)
        return [Person(pid, tuple(sorted(keys))) for pid, keys in sorted(grouped.items())]

    def review_items(self) -> list[ReviewItem]:
        """Pairs left in different persons that were uncertain, or matched but refused by the guard."""
        items = []
        for r, edges in self._edges.items():
            for s, edge in edges.items():
                if r > s or self._person_id[r] == self._person_id[s]:
                    continue
                a, b = sorted((self._records[r].key, self._records[s].key))
                evidence = PairEvidence.of(a, b, edge.score, self.config)
                why = "uncertain" if edge.score.decision == REVIEW else "guard"
                items.append(ReviewItem(a, b, self._person_id[self._rid[a]],
                                        self._person_id[self._rid[b]], evidence, why))
        return sorted(items, key=lambda i: (i.a, i.b))

    def explain(self, agency_id: str, source_record_id: str) -> PersonExplanation:
        """The person holding a record: its records, the links inside it, refusals and review pairs."""
        rid = self._rid_of((agency_id, source_record_id))
        members = self._person[rid]
        inside = set(members)
        explanation = PersonExplanation(
            self._person_id[rid], sorted(self._records[m].key for m in members)
        )
        for r in members:
            for s, edge in self._edges[r].items():
                evidence = PairEvidence.of(self._records[r].key, self._records[s].key,
                                           edge.score, self.config)
                if s in inside:
                    if r < s and edge.score.decision == MATCH:
                        explanation.links.append(evidence)
                elif edge.score.decision == MATCH:
                    explanation.refused.append(evidence)
                else:
                    explanation.uncertain.append(evidence)
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
        self._pins[pair] = same_person
        ra, rb = self._rid_of(pair[0]), self._rid_of(pair[1])
        self._apply_pin(ra, rb, same_person)
        self._recluster({ra, rb})

    def snapshot(self) -> dict[str, Any]:
        """Serialisable state: the records. Restoring re-adds them (outcome is order-free)."""
        records = sorted((p.record for p in self._records.values()), key=lambda r: r.key)
        return {"version": SNAPSHOT_VERSION, "config": self.config.describe(),
                "records": [r.to_dict() for r in records]}

    @classmethod
    def restore(cls, snapshot: dict[str, Any], config: ResolverConfig | None = None) -> Resolver:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError("unsupported resolver snapshot version")
        resolver = cls(config)
        resolver.add_many(MatchRecord.from_dict(r) for r in snapshot["records"])
        return resolver

    # ---------------------------------------------------------------- internals

    def _rid_of(self, key: RecordKey) -> int:
        try:
            return self._rid[tuple(key)]
        except KeyError:
            raise UnknownRecord("record is not held by this resolver") from None

    def _score(self, a: PreparedRecord, b: PreparedRecord, levels: Levels) -> Score:
        return weigh(levels, a, self._frequency.bucket, self.config)

    def _insert(self, record: MatchRecord) -> tuple[int, set[int]]:
        """Index, count and compare a record. Returns its id and the records whose edges changed."""
        seeds: set[int] = set()
        if record.key in self._rid:
            seeds |= self._delete(self._rid[record.key])
        rid = self._next_rid
        self._next_rid += 1
        prepared = PreparedRecord(record)
        self._records[rid] = prepared
        self._rid[record.key] = rid
        self._edges[rid] = {}
        seeds.add(rid)

        key_ids, overflowed = self._index.add(rid, index_keys(prepared))
        self._keys[rid] = key_ids
        for kid in overflowed:
            seeds |= self._drop_unjustified_edges(kid)
        for field, value in frequency_values(prepared):
            if self._frequency.add(field, value, prepared.proxy):
                seeds |= self._reweigh(field, value, became_rarer=False)

        for other in set(self._index.candidates(key_ids)):
            if other != rid and self._link(rid, other):
                seeds.add(other)
        for (x, y), same in self._pins.items():
            if record.key in (x, y):
                partner = self._rid.get(y if record.key == x else x)
                if partner is not None:
                    self._apply_pin(rid, partner, same)
                    seeds.add(partner)
        return rid, seeds

    def _apply_pin(self, a: int, b: int, same_person: bool) -> None:
        if same_person:
            levels = compare(self._records[a], self._records[b])
            base = self._score(self._records[a], self._records[b], levels)
            score = Score(float("inf"), MATCH, base.parts, "reviewer decided: same person")
            edge = _Edge(levels, score, pinned=True)
            self._edges[a][b] = edge
            self._edges[b][a] = edge
        elif b in self._edges[a]:
            self._unlink(a, b)

    def _delete(self, rid: int) -> set[int]:
        prepared = self._records.pop(rid)
        del self._rid[prepared.key]
        self._changed.add(prepared.key)
        seeds = {s for s in self._component.pop(rid, ()) if s != rid}
        self._person.pop(rid, None)
        self._person_id.pop(rid, None)
        for other in self._edges.pop(rid):
            del self._edges[other][rid]
            seeds.add(other)
        reopened = self._index.remove(rid, self._keys.pop(rid))
        for field, value in frequency_values(prepared):
            if self._frequency.remove(field, value, prepared.proxy):
                seeds |= self._reweigh(field, value, became_rarer=True)
        for kid in reopened:
            seeds |= self._link_block(kid)
        return seeds

    def _link(self, a: int, b: int) -> bool:
        """Compare and weigh a pair; keep it if it is a match or needs review."""
        pa, pb = self._records[a], self._records[b]
        levels = compare(pa, pb)
        if levels.conflict:  # always a non-match; skip weighing (the common household case)
            return False
        score = self._score(pa, pb, levels)
        if score.decision == NON_MATCH:
            return False
        edge = _Edge(levels, score)
        self._edges[a][b] = edge
        self._edges[b][a] = edge
        return True

    def _unlink(self, a: int, b: int) -> None:
        del self._edges[a][b]
        del self._edges[b][a]

    def _drop_unjustified_edges(self, kid: int) -> set[int]:
        """A block went over the cap: drop edges no other usable block justifies."""
        members = set(self._index.members(kid))
        touched = set()
        for r in members:
            for s in [s for s, e in self._edges[r].items() if s in members and r < s and not e.pinned]:
                if not self._index.shares_usable_block(self._keys[r], self._keys[s]):
                    self._unlink(r, s)
                    touched |= {r, s}
        return touched

    def _link_block(self, kid: int) -> set[int]:
        """A block came back under the cap: compare the pairs it now justifies."""
        members = sorted(self._index.members(kid))
        touched = set()
        for i, r in enumerate(members):
            for s in members[i + 1:]:
                if s not in self._edges[r] and self._link(r, s):
                    touched |= {r, s}
        return touched

    def _reweigh(self, field: str, value: str, became_rarer: bool) -> set[int]:
        """A value's frequency bucket changed: re-score the pairs that agree on it."""
        holders = set(self._index.members(key_id((field, value))))
        touched = set()
        for r in holders:
            for s, edge in list(self._edges[r].items()):
                if s not in holders or r > s or edge.pinned:
                    continue
                score = self._score(self._records[r], self._records[s], edge.levels)
                if score.decision != edge.score.decision:
                    touched |= {r, s}
                if score.decision == NON_MATCH:
                    self._unlink(r, s)
                else:
                    edge.score = score
            if became_rarer:
                # Rarer means heavier: pairs once below review may now be kept.
                for s in set(self._index.candidates(self._keys[r])):
                    if s in holders and r < s and s not in self._edges[r] and self._link(r, s):
                        touched |= {r, s}
        return touched

    def _match_neighbours(self, rid: int) -> Iterable[int]:
        return (s for s, e in self._edges[rid].items() if e.score.decision == MATCH)

    def _conflict(self, a: int, b: int) -> bool:
        if self._pins:
            pair = tuple(sorted((self._records[a].key, self._records[b].key)))
            pinned = self._pins.get(pair)
            if pinned is not None:
                return not pinned
        edge = self._edges[a].get(b)
        levels = edge.levels if edge else compare(self._records[a], self._records[b])
        return levels.guard_conflict

    def _recluster(self, seeds: set[int]) -> None:
        """Recompute components and persons around records whose edges changed."""
        start: set[int] = set()
        for rid in seeds:
            if rid in self._records:
                start.add(rid)
                start.update(r for r in self._component.get(rid, ()) if r in self._records)
        for component in components(sorted(start), self._match_neighbours):
            for rid in component:
                self._component[rid] = component
            edges = [
                MatchEdge(e.score.weight, self._records[r].key, self._records[s].key, r, s)
                for r in component
                for s, e in self._edges[r].items()
                if r < s and e.score.decision == MATCH
            ]
            persons, _refused = split_by_guard(component, edges, self._conflict)
            for person in persons:
                pid = person_id_for([self._records[r].key for r in person])
                for rid in person:
                    self._person[rid] = person
                    if self._person_id.get(rid) != pid:
                        self._changed.add(self._records[rid].key)
                    self._person_id[rid] = pid

    def _assignment(self, rid: int) -> Assignment:
        key = self._records[rid].key
        evidence = sorted(
            (PairEvidence.of(key, self._records[s].key, e.score, self.config)
             for s, e in self._edges[rid].items()),
            key=lambda ev: (-ev.weight, ev.a, ev.b),
        )
        return Assignment(key, self._person_id[rid], tuple(evidence))
