"""From compared levels to a weight and one of three outcomes: match, review, non-match."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from services.dedupe.resolver.comparisons import EXACT, Levels
from services.dedupe.resolver.config import ResolverConfig
from services.dedupe.resolver.records import PreparedRecord

MATCH = "match"
REVIEW = "review"
NON_MATCH = "non-match"

CONTACT_FIELDS = ("mobile", "email", "address")
GIVEN_AGREES = ("exact", "equivalent", "token", "close", "swapped")
FAMILY_AGREES = ("exact", "token", "equivalent", "close", "swapped")

BucketOf = Callable[[str, str], int]


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
    "given": "given_first", "family": "family_key", "mobile": "mobile",
    "email": "email", "address": "address_block",
}


def weigh(levels: Levels, a: PreparedRecord, bucket_of: BucketOf, config: ResolverConfig) -> Score:
    """Sum the level weights (frequency-adjusted for exact agreements) and decide."""
    parts = []
    contact = 0.0
    for field, level in zip(Levels._fields, levels, strict=True):
        shared = 0
        if level == EXACT and field in config.frequency:
            shared = bucket_of(field, getattr(a, _FREQUENCY_ATTR[field]))
            w = config.frequency[field].weight(shared)
        else:
            w = config.level_weights[field][level]
        if field in CONTACT_FIELDS and w > 0:
            w = max(0.0, min(w, config.contact_cap - contact))
            contact += w
        parts.append(Part(field, level, w, shared))
    total = round(sum(p.weight for p in parts), 3)
    decision, reason = decide(levels, total, config)
    return Score(total, decision, tuple(parts), reason)


def decide(levels: Levels, weight: float, config: ResolverConfig) -> tuple[str, str]:
    same_nhi = levels.nhi == "same"
    if levels.conflict:
        return NON_MATCH, "given names or date of birth differ (twin/household guard)"
    if same_nhi and (levels.dob != EXACT or levels.family not in FAMILY_AGREES) and (
        levels.given == "different" or levels.dob == "different"
    ):
        return REVIEW, "same NHI but given names or date of birth differ"
    if levels.incomplete:
        return _decide_incomplete(levels, weight, config)
    if weight >= config.match_threshold:
        if levels.second_nhi_doubt:
            return REVIEW, "two different NHIs without exact names and a shared contact"
        if not same_nhi and levels.given in ("near", "initial"):
            return REVIEW, "above match threshold but given names only loosely agree"
        return MATCH, "weight at or above match threshold"
    if weight >= config.review_threshold:
        return REVIEW, "weight between review and match thresholds"
    return NON_MATCH, "weight below review threshold"


def _decide_incomplete(levels: Levels, weight: float, config: ResolverConfig) -> tuple[str, str]:
    """A record without a date of birth or without a given name can still be matched, on a
    lower threshold, when what it has agrees closely and something places it (the same
    address or street, mobile or email). Such a match is weak: clustering attaches the
    record only to a person it alone points to (never one of two twins or namesakes)."""
    placed = levels.address in (EXACT, "street") or EXACT in (levels.mobile, levels.email)
    if (levels.dob == "missing" and levels.given == "missing") or levels.nhi == "different":
        ok = False  # two valid NHIs need complete records to be believed one person
    elif levels.dob == "missing":
        # Not 'token': a middle name that is a household member's first name
        # ('Sophie Anthony' ~ 'Anthony') is not enough without a date of birth.
        ok = levels.given in ("exact", "equivalent", "swapped") and levels.family in FAMILY_AGREES
    else:
        ok = levels.dob == EXACT and levels.family in FAMILY_AGREES
    if ok and placed and weight >= config.incomplete_match_threshold and not levels.second_nhi_doubt:
        return MATCH, "weak match: a date of birth or given name is missing, the rest agrees"
    if weight >= config.review_threshold:
        return REVIEW, "a date of birth or given name is missing"
    return NON_MATCH, "weight below review threshold"
