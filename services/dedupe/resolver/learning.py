"""Per-incident m and u probabilities by expectation maximisation (Fellegi–Sunter).

The hand-set weights in config.py are priors. `estimate_weights` re-estimates, from one
incident's own records, the weight of every graded level (the frequency-weighted exact
agreements keep their term-frequency weights):

* m (how often one person's two records show a level), u (how often two people's do)
  and the share of matches λ by EM over the level patterns of the blocked candidate
  pairs — the pairs decisions are made on. u starts from a deterministic sample of random
  record pairs (nearly all two people), m from the prior weights. A missing value
  contributes to neither.

The priors are the starting point and a bound: the counts are smoothed towards the
starting m and u by `PRIOR_PAIRS` pseudo-pairs, and a learned
weight moves at most `MAX_SHIFT` bits from its prior, never changes sign and never
loosens the guard (given names or date of birth 'different' stay conflicts; those rules
are not weights). So a feed with unusual quality is weighed by its own evidence, and a
small or odd incident cannot learn its way into unsafe merges.

The twin/household guard is not a weight, but whether it is needed is a question the
incident's records answer (`household_evidence`): see `HouseholdEvidence`.

Everything here is a function of the current records (sampling is by stable hashes of
record keys), so a resolver rebuilt with the learned weights stays order-free.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, replace

from services.dedupe.resolver.comparisons import MISSING, Levels, compare
from services.dedupe.resolver.config import LEVEL_WEIGHTS, Guard, ResolverConfig
from services.dedupe.resolver.records import PreparedRecord, stable_hash

PRIOR_PAIRS = 200.0  # pseudo-pairs pulling estimates towards the prior
MAX_SHIFT = 4.0  # bits a learned weight may move from its prior
FLOOR = 1e-5  # no probability below this: weights stay finite
MAX_CANDIDATE_PAIRS = 400_000
RANDOM_PAIRS = 40_000
ITERATIONS = 25

Pattern = tuple[str, ...]

# The household test (HouseholdEvidence). Shares of household pairs (one family name, one
# dwelling, two people) that are twins, or a parent and child with one given name: about
# 1–2 % in the project's generators and pseudopeople's census; more as a margin.
P_TWIN = 0.02
P_NAMESAKE = 0.03
GUARD_RISK = 0.001  # at most this share of the pairs a lifted guard lets through are two people
MAX_ERROR_RATE = 0.25  # more of one person's pairs with a different given name is not a typo
MIN_COPIES = 100  # pairs agreeing on both before the test says anything
_GIVEN_AGREES = ("exact", "equivalent", "token", "close", "nickname_typo", "prefix")
_FAMILY_AGREES = ("exact", "token", "equivalent", "close")
_DOB_AGREES = ("exact", "swapped", "one_digit", "typo", "partial")


@dataclass(frozen=True)
class HouseholdEvidence:
    """Whether the incident holds households, from pairs of complete records at one
    dwelling under one family name: `copies` agree on given name and date of birth,
    `given_differs` / `dob_differs` disagree on one of them, `both_differ` on both.

    One person's records disagree on a given name and on a date of birth independently (a
    corrupted field), so without households both_differ ≈ given_differs·dob_differs/copies.
    Household members (siblings, a parent and child) disagree on both, so with households
    both_differ is far larger. What exceeds the independent expectation (taken at a Poisson
    upper bound) bounds the household pairs; P_TWIN of them may be twins, P_NAMESAKE a parent
    and child with one name. A guard is lifted when those could be at most GUARD_RISK of the
    pairs it would stop, and the disagreement is a plausible error rate for one person.
    FEBRL has no households (its records are corrupted copies of independent people); the
    NZ-shaped generators and pseudopeople's census have them and keep the guard.
    """

    copies: int = 0
    given_differs: int = 0
    dob_differs: int = 0
    both_differ: int = 0

    @property
    def households(self) -> float:
        """An upper bound on the pairs that are two members of one household (at least 1)."""
        h = self.both_differ
        upper = h + 2.0 * math.sqrt(h) + 2.0
        independent = self.given_differs * self.dob_differs / self.copies if self.copies else 0.0
        return max(1.0, upper - independent)

    def _lift(self, differs: int, share: float) -> bool:
        if self.copies < MIN_COPIES or not differs:
            return False
        if differs / (differs + self.copies) > MAX_ERROR_RATE:
            return False
        return share * self.households / differs <= GUARD_RISK

    @property
    def guard(self) -> Guard:
        return Guard(given=not self._lift(self.given_differs, P_TWIN),
                     dob=not self._lift(self.dob_differs, P_NAMESAKE))

    def error_rates(self) -> dict[str, float]:
        """How often one person's two records disagree on given name / date of birth."""
        return {"given": self.given_differs / max(1, self.given_differs + self.copies),
                "dob": self.dob_differs / max(1, self.dob_differs + self.copies)}


def household_evidence(candidates: Counter[Pattern]) -> HouseholdEvidence:
    """Count the four kinds of pairs (HouseholdEvidence) among the candidate pairs at one
    dwelling (the same address, or the same street and number with a slip)."""
    f = {name: i for i, name in enumerate(Levels._fields)}
    counts: Counter[str] = Counter()
    for pattern, n in candidates.items():
        if pattern[f["address"]] not in ("exact", "street") or pattern[f["nhi"]] == "same" \
                or pattern[f["family"]] not in _FAMILY_AGREES:
            continue
        given, dob = pattern[f["given"]], pattern[f["dob"]]
        g = "=" if given in _GIVEN_AGREES else "!" if given == "different" else None
        d = "=" if dob in _DOB_AGREES else "!" if dob == "different" else None
        if g and d:
            counts[g + d] += n
    return HouseholdEvidence(counts["=="], counts["!="], counts["=!"], counts["!!"])


def level_distribution(patterns: Counter[Pattern]) -> list[dict[str, float]]:
    """Per field, the share of each non-missing level among the patterns."""
    out = []
    for f in range(len(Levels._fields)):
        counts: Counter[str] = Counter()
        for pattern, n in patterns.items():
            if pattern[f] != MISSING:
                counts[pattern[f]] += n
        total = sum(counts.values())
        out.append({level: n / total for level, n in counts.items()} if total else {})
    return out


def run_em(candidates: Counter[Pattern], u: list[dict[str, float]], prior_m: list[dict[str, float]],
           iterations: int = ITERATIONS) -> tuple[list[dict[str, float]], list[dict[str, float]], float]:
    """m, u per field and level, and λ, over the candidate pairs' patterns. Both classes
    start from (and are smoothed towards) the priors: m from the prior weights, u from
    random pairs. Returns (m, u, λ)."""
    m = [dict(d) for d in prior_m]
    u = [dict(d) for d in u]
    prior_u = [dict(d) for d in u]
    lam = 0.1
    total = sum(candidates.values())
    fields = range(len(Levels._fields))
    for _ in range(iterations):
        m_sums = [Counter() for _ in fields]
        u_sums = [Counter() for _ in fields]
        matched = 0.0
        for pattern, n in candidates.items():
            log_m = math.log(lam)
            log_u = math.log(1 - lam)
            for f in fields:
                level = pattern[f]
                if level == MISSING:
                    continue
                log_m += math.log(max(m[f].get(level, FLOOR), FLOOR))
                log_u += math.log(max(u[f].get(level, FLOOR), FLOOR))
            resp = 1.0 / (1.0 + math.exp(min(700.0, log_u - log_m)))
            matched += n * resp
            for f in fields:
                if pattern[f] != MISSING:
                    m_sums[f][pattern[f]] += n * resp
                    u_sums[f][pattern[f]] += n * (1 - resp)
        lam = min(max(matched / total, 1e-6), 1 - 1e-6)
        m = [_smoothed(m_sums[f], prior_m[f]) for f in fields]
        u = [_smoothed(u_sums[f], prior_u[f]) for f in fields]
    return m, u, lam


def _smoothed(sums: Counter, prior: dict[str, float]) -> dict[str, float]:
    levels = set(prior) | set(sums)
    denominator = sum(sums.values()) + PRIOR_PAIRS
    return {level: (sums[level] + PRIOR_PAIRS * prior.get(level, 0.0)) / denominator for level in levels}


def learned_weights(m: list[dict[str, float]], u: list[dict[str, float]],
                    priors: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """log2(m/u) per graded level, bounded by the prior (see module docstring)."""
    weights = {field: dict(levels) for field, levels in priors.items()}
    for f, field in enumerate(Levels._fields):
        for level, prior in priors.get(field, {}).items():
            if level == MISSING or level not in m[f] or level not in u[f]:
                continue
            learned = math.log2(max(m[f][level], FLOOR) / max(u[f][level], FLOOR))
            learned = min(max(learned, prior - MAX_SHIFT), prior + MAX_SHIFT)
            if prior > 0:
                learned = max(learned, 0.0)
            elif prior < 0:
                learned = min(learned, 0.0)
            weights[field][level] = round(learned, 2)
    return weights


def prior_m(u: list[dict[str, float]], priors: dict[str, dict[str, float]],
            exact_prior: float = 8.0) -> list[dict[str, float]]:
    """m implied by the prior weights and u: m ∝ u · 2^weight (exact levels at +8, same NHI +14)."""
    out = []
    for f, field in enumerate(Levels._fields):
        raw = {}
        for level, share in u[f].items():
            weight = priors.get(field, {}).get(level)
            if weight is None:
                weight = 14.0 if level == "same" else exact_prior
            raw[level] = share * 2.0 ** weight
        total = sum(raw.values())
        out.append({level: v / total for level, v in raw.items()} if total else {})
    return out


def _sampled(records: dict[int, PreparedRecord], limit: int, per_record: float) -> list[int]:
    """A deterministic subset of record ids (by stable hash of the record key) expected to
    yield about `limit` pairs at `per_record` pairs each."""
    rids = sorted(records, key=lambda r: records[r].key)
    keep = min(1.0, limit / max(1.0, per_record * len(rids)))
    if keep >= 1.0:
        return rids
    cut = int(keep * (1 << 64))
    return [r for r in rids if stable_hash("\x1f".join(records[r].key)) < cut]


def candidate_patterns(records: dict[int, PreparedRecord], candidates_of,
                       limit: int = MAX_CANDIDATE_PAIRS) -> Counter[Pattern]:
    """Level patterns of the blocked candidate pairs (each pair once)."""
    patterns: Counter[Pattern] = Counter()
    for r in _sampled(records, limit, per_record=8.0):
        a = records[r]
        for s in set(candidates_of(r)):
            b = records.get(s)
            if b is not None and b.key > a.key:
                patterns[tuple(compare(a, b))] += 1
    return patterns


def random_patterns(records: dict[int, PreparedRecord], pairs: int = RANDOM_PAIRS) -> Counter[Pattern]:
    rids = sorted(records, key=lambda r: records[r].key)
    rng = random.Random(len(rids))  # deterministic for a given set of records
    patterns: Counter[Pattern] = Counter()
    if len(rids) < 2:
        return patterns
    for _ in range(pairs):
        a, b = rng.sample(rids, 2)
        patterns[tuple(compare(records[a], records[b]))] += 1
    return patterns


def estimate_weights(records: dict[int, PreparedRecord], candidates_of,
                     config: ResolverConfig | None = None,
                     levels: bool = True) -> tuple[ResolverConfig, dict]:
    """A config whose guard (and, with `levels`, graded level weights) are learned from
    these records, and a report (λ, m, u per level, the household evidence) that explains
    where each came from. Without `levels` the hand-set level weights are kept and only the
    household test runs (what the dedupe service does at release: on the NZ-shaped
    benchmark sets EM's level weights cost a little recall and precision)."""
    config = config or ResolverConfig()
    priors = config.level_weights or LEVEL_WEIGHTS
    candidates = candidate_patterns(records, candidates_of)
    evidence = household_evidence(candidates)
    guard = evidence.guard
    report: dict = {"candidate_pairs": sum(candidates.values())}
    report["households"] = {**evidence.__dict__, "household_pairs_bound": evidence.households,
                            "guard_given": guard.given, "guard_dob": guard.dob}
    if not levels and guard == config.guard:
        return config, report  # nothing to learn: the common case in a household incident
    u = level_distribution(random_patterns(records))
    report["u"] = dict(zip(Levels._fields, u, strict=True))
    if levels:
        m0 = prior_m(u, priors)
        m, u, lam = run_em(candidates, u, m0)
        weights = learned_weights(m, u, priors)
        report.update({"lambda": lam, "m": dict(zip(Levels._fields, m, strict=True)),
                       "u": dict(zip(Levels._fields, u, strict=True))})
    else:
        weights = {field: dict(lv) for field, lv in priors.items()}
    rates = evidence.error_rates()
    for field, lifted in (("given", not guard.given), ("dob", not guard.dob)):
        if lifted:  # weighed now: log2(m / u), between the prior and 0
            u_diff = u[Levels._fields.index(field)].get("different", 1.0)
            learned = math.log2(max(rates[field], FLOOR) / max(u_diff, FLOOR))
            weights[field]["different"] = round(min(0.0, max(priors[field]["different"], learned)), 2)
    learned = levels or guard != config.guard
    return replace(config, level_weights=weights, learned=learned or config.learned, guard=guard), report

