"""The review queue as a plain function: given the resolver's uncertain pairs now and the
review rows already stored, what to insert, what to revise and what to mark resolved.

The queue also holds the contact and hold conflicts between agencies (conflicts.py) and the
retractions of notices whose records were withdrawn (retractions.py), with their own kinds
and decisions.

Only what changed is written: new items, items whose reason changed, items that no longer
need a decision. A coordinator's decision is never overwritten. Evidence names comparison
levels and weights, records, agencies and fields — never values.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.common.ids import stable_id
from services.dedupe.conflicts import (
    CONTACT_DECISIONS,
    HOLD_DECISIONS,
    RETRACTION_DECISIONS,
    Conflict,
)
from services.dedupe.resolver import ReviewItem

RecordKey = tuple[str, str]
DECIDED = ("merge", "keep_apart", *CONTACT_DECISIONS, *HOLD_DECISIONS, *RETRACTION_DECISIONS)


def review_id(incident_id: str, a: RecordKey, b: RecordKey) -> str:
    return stable_id("rev", incident_id, *min(a, b), *max(a, b))


@dataclass(frozen=True, slots=True)
class OpenReview:
    """A pair to show the coordinator (status open)."""

    review_id: str
    a: RecordKey
    b: RecordKey
    reason: str  # uncertain | guard; a conflict's: email_differs | mobile_differs | hold_not_shared
    evidence: dict
    kind: str = "pair"  # pair | contact_conflict | hold_conflict | retraction


@dataclass(slots=True)
class ReviewChanges:
    new: list[OpenReview] = field(default_factory=list)
    revised: list[OpenReview] = field(default_factory=list)  # reopened, or a new reason
    resolved: list[str] = field(default_factory=list)  # review ids no longer needing a decision

    def __bool__(self) -> bool:
        return bool(self.new or self.revised or self.resolved)


def review_changes(incident_id: str, items: Iterable[ReviewItem],
                   known: dict[str, tuple[str, str]],
                   conflicts: Iterable[Conflict] = ()) -> ReviewChanges:
    """`items`: the resolver's review pairs now; `conflicts`: the contact and hold conflicts
    now; `known`: review id → (status, reason) of the rows stored for the incident."""
    changes = ReviewChanges()
    current: set[str] = set()

    def offer(rid: str, reason: str, make: Callable[[], OpenReview]) -> None:
        if rid in current:
            return
        current.add(rid)
        status, known_reason = known.get(rid, (None, None))
        if status in DECIDED or (status == "open" and known_reason == reason):
            return
        (changes.revised if rid in known else changes.new).append(make())

    for item in items:
        rid = review_id(incident_id, item.a, item.b)
        offer(rid, item.why, lambda i=item, r=rid: OpenReview(r, i.a, i.b, i.why,
                                                               i.evidence.to_dict()))
    for c in conflicts:
        offer(c.review_id, c.reason, lambda c=c: OpenReview(c.review_id, c.a, c.b, c.reason,
                                                            c.evidence, c.kind))
    # Merged anyway, or a record withdrawn: the pair no longer needs a decision.
    changes.resolved = [rid for rid, (status, _) in known.items()
                        if status == "open" and rid not in current]
    return changes


# What a reviewer may reveal of a pair's records, in this order: the fields the resolver
# compares (the hold and its note are not for review).
REVEALED_FIELDS = ("nhi", "given_names", "family_name", "date_of_birth", "email", "mobile",
                   "address")


def revealed_values(personal: dict | None) -> dict[str, str | None]:
    """A record's personal fields as text for the side-by-side view (None: absent, or the
    record is no longer held); an address is one line."""
    personal = personal or {}
    values: dict[str, str | None] = {}
    for name in REVEALED_FIELDS:
        value = personal.get(name)
        if isinstance(value, dict):
            value = ", ".join(str(v) for v in value.values() if v) or None
        values[name] = None if value in (None, "") else str(value)
    return values
