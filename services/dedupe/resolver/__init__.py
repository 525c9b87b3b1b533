"""Identity resolution: one person per set of agency records, precision first.

    resolver = Resolver()
    assignment = resolver.add(MatchRecord.from_clean("agency-1", clean_record))
    assignment.person_id, resolver.review_items(), resolver.explain("agency-1", "r1")

See docs/resolver.md for the design and measured accuracy.
"""
from services.dedupe.resolver.config import ResolverConfig
from services.dedupe.resolver.explain import Assignment, PairEvidence, PersonExplanation, ReviewItem
from services.dedupe.resolver.records import MatchRecord
from services.dedupe.resolver.resolver import Person, Resolver, UnknownRecord
from services.dedupe.resolver.scoring import MATCH, NON_MATCH, REVIEW

__all__ = [
    "MATCH", "NON_MATCH", "REVIEW", "Assignment", "MatchRecord", "PairEvidence", "Person",
    "PersonExplanation", "Resolver", "ResolverConfig", "ReviewItem", "UnknownRecord",
]
