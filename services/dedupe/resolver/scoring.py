"""From compared levels to a weight and one of three outcomes: match, review, non-match."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from services.dedupe.resolver.comparisons import EXACT, NICKNAME_TYPO, Levels
from services.dedupe.resolver.config import ResolverConfig
from services.dedupe.resolver.records import PreparedRecord

MATCH = "match"
REVIEW = "review"
NON_MATCH = "non-match"

CONTACT_FIELDS = ("mobile", "email", "address")
GIVEN_AGREES = ("exact", "equivalent", "token", "close", "nickname_typo", "swapped", "prefix")
FAMILY_AGREES = ("exact", "token", "equivalent", "close", "swapped")

BucketOf = Callable[[str, str], int]

# The reason of a weak match turned into a review by conflicting personal evidence
# (Levels.contact_doubt): clustering still counts such a pair where the undated record's
# edges lead, so the demotion can never let its other weak edge attach it elsewhere.
CONTACT_DOUBT = "no date of birth, and a personal contact differs with none agreeing"


class Part(NamedTuple):
    """One comparison's contribution to a pair's weight."""

    field: str
    level: str
    weight: float
    shared_by: int = 0  # bucket of distinct people sharing the value (exact agreements)


@dataclass(frozen=True, slots=True)
class Score:
    weight: float
    decision: str
    parts: tuple[Part, ...]
    reason: str


# The value whose frequency weights an exact agreement on each field.
_FREQUENCY_ATTR = {
    "nhi": "nhi", "given": "given_first", "family": "family_key", "dob": "dob_digits",
    "mobile": "mobile", "email": "email", "address": "address_block",
}
_AGREE = ("exact", "same")


class _Step(NamedTuple):
    """What weighing one field at one level needs, worked out once per level tuple."""

    field: str
    level: str
    weight: float | None  # the fixed weight; None: frequency-adjusted from `attr`'s value
    attr: str | None
    by_bucket: tuple[float, ...] | None  # config.Frequency's weight for each bucket
    contact: bool  # counts towards the contact cap


Plan = tuple[_Step, ...]
# floor(log2 n) of any count of records or people in one process stays far below this.
_BUCKETS = 64
Plans = dict[Levels, Plan]


def _plan(levels: Levels, config: ResolverConfig) -> Plan:
    steps = []
    for field, level in zip(Levels._fields, levels, strict=True):
        if level == "missing":  # weighs nothing in every field (learning never changes it)
            steps.append(_Step(field, level, 0.0, None, None, False))
        elif level in _AGREE and field in config.frequency:
            frequency = config.frequency[field]
            steps.append(_Step(field, level, None, _FREQUENCY_ATTR[field],
                               tuple(frequency.weight(b) for b in range(_BUCKETS)),
                               field in CONTACT_FIELDS))
        else:
            steps.append(_Step(field, level, config.level_weights[field][level], None, None,
                               field in CONTACT_FIELDS))
    return tuple(steps)


def weigh(levels: Levels, a: PreparedRecord, bucket_of: BucketOf, config: ResolverConfig,
          plans: Plans | None = None) -> Score:
    """Sum the level weights (frequency-adjusted for exact agreements) and decide.

    `plans` caches each level tuple's steps for this `config` (the caller owns it and drops
    it with the config): a few hundred distinct tuples cover a whole incident, so the
    per-pair work is only the frequency look-ups. Same arithmetic in the same order."""
    plan = plans.get(levels) if plans is not None else None
    if plan is None:
        plan = _plan(levels, config)
        if plans is not None:
            plans[levels] = plan
    parts = []
    contact = 0.0
    cap = config.contact_cap
    for field, level, w, attr, by_bucket, contact_field in plan:
        shared = 0
        if w is None:
            shared = bucket_of(field, getattr(a, attr))
            w = by_bucket[shared]
        if contact_field and w > 0:
            w = max(0.0, min(w, cap - contact))
            contact += w
        parts.append(Part(field, level, w, shared))
    total = round(sum([p.weight for p in parts]), 3)  # sum() as before: the same float
    decision, reason = decide(levels, total, config)
    return Score(total, decision, tuple(parts), reason)


def decide(levels: Levels, weight: float, config: ResolverConfig) -> tuple[str, str]:
    if levels.conflicts(config.guard):
        if levels.nhi == "different" and levels.given != "different" and levels.dob != "different":
            return NON_MATCH, "two different NHIs and different personal contacts"
        if levels.given == "related" and levels.dob != "different":
            return NON_MATCH, "two variants of a name, each with its own contacts"
        if levels.given == "token" and levels.dob != "different":
            return NON_MATCH, "a first name that is the other's middle name, and mobiles and emails differ"
        if "missing" in (levels.given, levels.dob) and "different" not in (levels.given, levels.dob):
            return NON_MATCH, "no date of birth or given name to compare, and mobiles and emails differ"
        guarded = ((levels.given == "different" and config.guard.given)
                   or (levels.dob == "different" and config.guard.dob))
        if guarded:
            return NON_MATCH, "given names or date of birth differ (twin/household guard)"
        return NON_MATCH, "given names or date of birth differ, and so do NHIs or personal contacts"
    if levels.nhi == "same":
        agree = (levels.given in GIVEN_AGREES, levels.family in FAMILY_AGREES,
                 levels.dob in (EXACT, "swapped", "one_digit", "typo"))
        if sum(agree) >= 2:
            return MATCH, "same NHI, and two of given name, family name, date of birth agree"
        return REVIEW, "same NHI but given names or date of birth differ"
    if levels.incomplete:
        return _decide_incomplete(levels, weight, config)
    if weight >= config.match_threshold:
        if levels.second_nhi_doubt:
            return REVIEW, "two different NHIs without exact names and a shared contact"
        if levels.given == "near":
            return REVIEW, "above match threshold but given names only loosely agree"
        if levels.given == NICKNAME_TYPO and levels.dob != EXACT:
            # Three slips at once (a nickname, a letter, a date): a sibling's name and
            # birthday in one household look like that (seed 202, round 7).
            return REVIEW, "a nickname with a slip in it and a date of birth that is not exact"
        if levels.given == "initial":
            # The name weighs next to nothing: like a record without a given name, it
            # needs its date of birth exact and something placing it.
            if levels.dob == EXACT and _placed(levels):
                return MATCH, "weak match: given name only an initial, the rest agrees"
            return REVIEW, "given name only an initial and nothing places the record"
        return MATCH, "weight at or above match threshold"
    if weight >= config.review_threshold:
        return REVIEW, "weight between review and match thresholds"
    return NON_MATCH, "weight below review threshold"


def _placed(levels: Levels) -> bool:
    return levels.address in (EXACT, "street") or EXACT in (levels.mobile, levels.email)


def _decide_incomplete(levels: Levels, weight: float, config: ResolverConfig) -> tuple[str, str]:
    """A record without a date of birth or without a given name can still be matched, on a
    lower threshold, when what it has agrees closely and something places it (the same
    address or street, mobile or email) — or, without anything placing it, when its names
    agree exactly and are rare enough to weigh `unplaced_match_threshold`. Such a match is
    weak: clustering attaches the record only to a person it alone points to (never one of
    two twins or namesakes)."""
    placed = _placed(levels)
    if (levels.dob == "missing" and levels.given == "missing") or levels.nhi == "different":
        ok = False  # two valid NHIs need complete records to be believed one person
    elif levels.dob == "missing":
        # Not 'token': a middle name that is a household member's first name
        # ('Sophie Anthony' ~ 'Anthony') is not enough without a date of birth.
        ok = (levels.given in ("exact", "equivalent", "swapped") and levels.family in FAMILY_AGREES) or (
            levels.given in ("close", "prefix") and levels.family == EXACT and placed)  # Scot at Scott's
    else:
        ok = levels.dob == EXACT and levels.family in FAMILY_AGREES
    if ok and not levels.second_nhi_doubt and levels.middle != "different" and (
        (placed and weight >= config.incomplete_match_threshold)
        or (levels.given == EXACT and levels.family == EXACT
            and weight >= config.unplaced_match_threshold)
    ):
        if levels.contact_doubt:
            return REVIEW, CONTACT_DOUBT
        return MATCH, "weak match: a date of birth or given name is missing, the rest agrees"
    if weight >= config.review_threshold:
        return REVIEW, "a date of birth or given name is missing"
    return NON_MATCH, "weight below review threshold"
