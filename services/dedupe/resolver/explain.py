"""Explanations of decisions: which comparisons, which weights, which threshold.

They name fields, levels and weights, never values, so they can be logged and shown to
reviewers without disclosing one person's details in another's case.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from services.dedupe.resolver.records import RecordKey
from services.dedupe.resolver.scoring import Part, Score


def person_id_for(records: list[RecordKey]) -> str:
    """Named after the smallest record key in the person, hashed: stable, carries no personal data."""
    agency_id, source_record_id = min(records)
    digest = hashlib.blake2b(f"{agency_id}\x1f{source_record_id}".encode(), digest_size=8)
    return f"P-{digest.hexdigest()}"


@dataclass(frozen=True, slots=True)
class PairEvidence:
    """Why two records were (or were not) taken to be one person."""

    a: RecordKey
    b: RecordKey
    weight: float
    decision: str
    reason: str
    parts: tuple[Part, ...]
    match_threshold: float
    review_threshold: float

    @classmethod
    def of(cls, a: RecordKey, b: RecordKey, score: Score, config: Any) -> PairEvidence:
        a, b = min(a, b), max(a, b)
        return cls(a, b, score.weight, score.decision, score.reason, score.parts,
                   config.match_threshold, config.review_threshold)

    def summary(self) -> str:
        parts = ", ".join(f"{p.field}={p.level}({p.weight:+g})" for p in self.parts)
        return (f"{self.decision}: weight {self.weight:+g} "
                f"(match >= {self.match_threshold:g}, review >= {self.review_threshold:g}); "
                f"{self.reason}; {parts}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": list(self.a), "b": list(self.b), "weight": self.weight,
            "decision": self.decision, "reason": self.reason,
            "match_threshold": self.match_threshold, "review_threshold": self.review_threshold,
            "comparisons": [
                {"field": p.field, "level": p.level, "weight": p.weight,
                 "shared_by_bucket": p.shared_by}
                for p in self.parts
            ],
        }


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one record ended up, with the evidence about its candidate pairs."""

    record: RecordKey
    person_id: str
    evidence: tuple[PairEvidence, ...] = ()


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A question for a human: are these two persons one? Asked over one representative
    pair of records (the strongest between them); deciding it settles both persons."""

    a: RecordKey
    b: RecordKey
    a_person_id: str
    b_person_id: str
    evidence: PairEvidence
    why: str  # 'uncertain' (between thresholds) or 'guard' (a match refused by the guard)
    pairs: int = 1  # record pairs between the two persons this one decision settles
    # What leaving the question open is expected to cost, in missed-merge units (see
    # Resolver.review_items): the queue is ordered by it, highest first.
    expected_cost: float = 0.0


@dataclass(slots=True)
class PersonExplanation:
    person_id: str
    records: list[RecordKey]
    links: list[PairEvidence] = field(default_factory=list)  # match edges inside the person
    refused: list[PairEvidence] = field(default_factory=list)  # matches refused by the guard
    uncertain: list[PairEvidence] = field(default_factory=list)  # review pairs to other persons

    def text(self) -> str:
        lines = [f"person {self.person_id}: {len(self.records)} record(s)"]
        lines += [f"  record {a}/{s}" for a, s in self.records]
        lines += [f"  link {e.a[0]}/{e.a[1]} ~ {e.b[0]}/{e.b[1]}: {e.summary()}" for e in self.links]
        lines += [f"  refused {e.a[0]}/{e.a[1]} ~ {e.b[0]}/{e.b[1]}: {e.summary()}" for e in self.refused]
        lines += [f"  review {e.a[0]}/{e.a[1]} ~ {e.b[0]}/{e.b[1]}: {e.summary()}" for e in self.uncertain]
        return "\n".join(lines)
