"""Weights, thresholds and limits. One place to read (and tune) every number the engine uses.

Weights are log2 Bayes factors, as in Fellegi–Sunter: +10 means the agreement is about
a thousand times likelier between records of one person than between two people.
They were set by hand from the m and u probabilities reasoned out in docs/resolver.md,
then checked on the benchmark feeds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# field -> level -> weight. 'exact' on a frequency-weighted field comes from FREQUENCY.
LEVEL_WEIGHTS: dict[str, dict[str, float]] = {
    "nhi": {"different": -6.0, "missing": 0.0},
    "given": {
        "equivalent": 6.0, "token": 5.0, "close": 5.0, "swapped": 5.0, "prefix": 4.0,
        "related": 2.0, "initial": 1.0, "near": 1.0, "different": -10.0, "missing": 0.0,
        # A nickname with a slip in it (round 7): two chances of a namesake's name at once,
        # so weaker than either 'equivalent' or 'close' alone.
        "nickname_typo": 3.0,
    },
    # 'initial' (one side only an initial, and it agrees): log2(m/u) with u = the chance two
    # people's middle initials agree, the sum of squared initial shares in the records
    # themselves (0.064-0.077 on the benchmark sets; no labels used) and m ~0.95: 3.6-3.9
    # bits, taken at 3.5. 'exact' (a shared middle name, or two equal initials, which is
    # no more evidence than 'initial') is kept at that weight; a spelled-out name's own u
    # (~0.003) would say more, but namesakes share naming cohorts. EM may raise either.
    "middle": {"exact": 3.5, "initial": 3.5, "different": -2.0, "missing": 0.0},
    "family": {
        "token": 6.0, "equivalent": 6.0, "close": 5.0, "swapped": 5.0,
        "near": 2.0, "different": -4.0, "missing": 0.0,
    },
    "dob": {"swapped": 8.0, "one_digit": 5.0, "typo": 6.0, "partial": 1.0, "different": -10.0,
            "missing": 0.0},
    "mobile": {"different": -0.5, "missing": 0.0},
    "email": {"different": -0.5, "missing": 0.0},
    "address": {"street": 6.0, "postcode": 0.5, "different": -0.5, "missing": 0.0},
}


@dataclass(frozen=True)
class Frequency:
    """Weight of an exact agreement on a value shared by n distinct people.

    weight = max(floor, base - slope * max(0, floor(log2 n) - free)). Counting in powers
    of two keeps weights stable as records arrive, so re-scoring is rare; `free` buckets
    cost nothing (a date of birth shared by a few people is the usual case, and
    re-scoring at every doubling of them would cost more than it tells).
    """

    base: float
    slope: float
    floor: float
    free: int = 0

    def weight(self, bucket: int) -> float:
        return max(self.floor, self.base - self.slope * max(0, bucket - self.free))


FREQUENCY: dict[str, Frequency] = {
    # The same NHI on many records is a default or a data-entry habit (counted in records,
    # not people: one person's five records are normal).
    "nhi": Frequency(base=14.0, slope=2.0, floor=4.0, free=3),
    "given": Frequency(base=8.0, slope=0.5, floor=5.0),
    "family": Frequency(base=9.0, slope=0.5, floor=5.0),
    # A date of birth shared by many people in the incident (large incidents; 1 January
    # defaults) tells less: the odds of a namesake born that day grow with the incident.
    # Counted in records (about two per person): +12 up to 15 records born that day, then
    # one less per doubling, down to +8.
    "dob": Frequency(base=12.0, slope=1.0, floor=8.0, free=3),
    # A mobile, email or address shared by 64+ people (a clinic, a rest home) says nothing.
    "mobile": Frequency(base=8.0, slope=1.5, floor=0.0),
    "email": Frequency(base=9.0, slope=1.5, floor=0.0),
    "address": Frequency(base=8.0, slope=1.0, floor=0.0),
}


@dataclass(frozen=True)
class Guard:
    """Which disagreements are hard conflicts (the twin/household guard) rather than weights.

    Both are on unless the incident's own records show that households are not in them
    (learning.py, `household_guard`): then different given names with everything else
    agreeing are a corrupted record of one person, not twins, and are weighed like any
    other disagreement. A disagreement together with conflicting personal contacts or
    two different NHIs stays a conflict either way.
    """

    given: bool = True  # different given names, the rest agreeing: twins
    dob: bool = True  # different dates of birth, the names agreeing: parent and child named alike


STRICT = Guard()


@dataclass(frozen=True)
class ResolverConfig:
    match_threshold: float = 18.0
    review_threshold: float = 8.0
    # Pairs where one record lacks its date of birth or given name cannot reach the match
    # threshold on what is left; they match (weakly, see clustering) from this weight.
    incomplete_match_threshold: float = 12.0
    # ... and, with nothing placing the record (no shared address, mobile or email), from
    # this weight, which only exact, rare names reach.
    unplaced_match_threshold: float = 14.0
    # Household contact fields are correlated (one household shares all three), so their
    # combined positive weight is capped rather than summed without limit.
    contact_cap: float = 12.0
    # Blocks larger than this are not used to find candidates (a clinic phone, 'Smith').
    block_cap: int = 100
    # Tighter caps per kind of block (see blocking.DEFAULT_CAPS); None = those defaults.
    block_caps: dict[str, int] | None = None
    # Review queue costs: a duplicate notice (a missed merge) costs 1; a notice that
    # discloses one person's records to another (a wrong merge) costs this much.
    wrong_merge_cost: float = 1000.0
    level_weights: dict[str, dict[str, float]] = field(default_factory=lambda: LEVEL_WEIGHTS)
    # True when level_weights were estimated from the incident (learning.py), not hand-set.
    learned: bool = False
    guard: Guard = STRICT
    frequency: dict[str, Frequency] = field(default_factory=lambda: FREQUENCY)

    def describe(self) -> dict[str, float | int]:
        return {
            "match_threshold": self.match_threshold,
            "review_threshold": self.review_threshold,
            "incomplete_match_threshold": self.incomplete_match_threshold,
            "unplaced_match_threshold": self.unplaced_match_threshold,
            "contact_cap": self.contact_cap,
            "block_cap": self.block_cap,
            "learned": self.learned,
            "guard_given": self.guard.given,
            "guard_dob": self.guard.dob,
        }
