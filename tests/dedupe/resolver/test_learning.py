"""EM estimation of m and u per incident (learning.py)."""
import json
import random
from collections import Counter

from benchmarks.resolver.generator import generate
from services.dedupe.resolver import Resolver
from services.dedupe.resolver.comparisons import Levels
from services.dedupe.resolver.config import LEVEL_WEIGHTS
from services.dedupe.resolver.learning import MAX_SHIFT, learned_weights, prior_m, run_em
from tests.dedupe.resolver.conftest import make

FIELDS = len(Levels._fields)


def pattern(**levels):
    return tuple(levels.get(f, "missing") for f in Levels._fields)


def test_em_recovers_how_often_one_person_shows_a_level():
    # 1,000 matches: 30% of them with a one-digit date of birth; 9,000 non-matches.
    rng = random.Random(1)
    candidates = Counter()
    for _ in range(1000):
        dob = "one_digit" if rng.random() < 0.3 else "exact"
        candidates[pattern(given="exact", family="exact", dob=dob)] += 1
    for _ in range(9000):
        candidates[pattern(given=rng.choice(["different"] * 8 + ["exact", "close"]),
                           family=rng.choice(["different"] * 3 + ["exact"]),
                           dob=rng.choice(["different"] * 18 + ["one_digit", "exact"]))] += 1
    u = [dict() for _ in range(FIELDS)]
    u[Levels._fields.index("given")] = {"exact": 0.01, "close": 0.01, "different": 0.98}
    u[Levels._fields.index("family")] = {"exact": 0.01, "different": 0.99}
    u[Levels._fields.index("dob")] = {"exact": 0.001, "one_digit": 0.004, "different": 0.995}
    m, _, lam = run_em(candidates, u, prior_m(u, LEVEL_WEIGHTS))
    dob_m = m[Levels._fields.index("dob")]
    assert 0.2 < dob_m["one_digit"] / (dob_m["one_digit"] + dob_m["exact"]) < 0.4
    assert 0.05 < lam < 0.25


def test_learned_weights_stay_within_their_prior_bounds():
    priors = {"dob": {"one_digit": 5.0, "different": -10.0, "missing": 0.0}}
    m = [dict() for _ in range(FIELDS)]
    u = [dict() for _ in range(FIELDS)]
    f = Levels._fields.index("dob")
    m[f] = {"one_digit": 0.5, "different": 0.5}  # wildly different from the prior
    u[f] = {"one_digit": 0.000001, "different": 0.01}
    weights = learned_weights(m, u, priors)["dob"]
    assert weights["one_digit"] == 5.0 + MAX_SHIFT
    assert -10.0 <= weights["different"] <= 0.0  # a disagreement never becomes evidence for


def test_learning_keeps_decisions_explanations_exact_and_is_order_free():
    records, _ = generate(1200, seed=21)
    one = Resolver()
    one.add_many(records)
    shuffled = records[:]
    random.Random(2).shuffle(shuffled)
    two = Resolver()
    for record in shuffled:
        two.add(record)
    a, b = records[0], records[1]
    one.decide(a.key, b.key, same_person=True)
    two.decide(a.key, b.key, same_person=True)
    report = one.learn_weights()
    two.learn_weights()
    assert report["candidate_pairs"] > 0 and 0 < report["lambda"] < 1
    assert one.config.learned
    assert one.assignments() == two.assignments()
    assert one.person_of(*a.key) == one.person_of(*b.key)  # the reviewer's decision survives
    for item in one.review_items()[:20]:
        ev = item.evidence
        assert abs(ev.weight - sum(p.weight for p in ev.parts)) < 1e-6
    restored = Resolver.restore(json.loads(json.dumps(one.snapshot())))
    assert restored.config.level_weights == one.config.level_weights


def test_a_small_incident_learns_little():
    r = Resolver()
    r.add_many([make("gp-1", given_names="Aroha"), make("gp-2", given_names="Aroha")])
    r.learn_weights()
    for field, levels in r.config.level_weights.items():
        for level, weight in levels.items():
            assert abs(weight - LEVEL_WEIGHTS[field][level]) <= MAX_SHIFT
