"""The twin/household guard, and the household test that lifts it (issue 11, round 2).

In data without households — FEBRL's records are corrupted copies of independent people — a
different given name with everything else agreeing is a corrupted copy, not a twin; the
records of such an incident say so (HouseholdEvidence). Where households exist, the guard
stays, whatever the level weights learn."""
import random
from datetime import date, timedelta

from benchmarks.resolver.generator import generate
from services.dedupe.resolver import Resolver
from services.dedupe.resolver.comparisons import compare
from services.dedupe.resolver.config import Guard
from services.dedupe.resolver.learning import HouseholdEvidence, household_evidence
from tests.dedupe.resolver.conftest import make, prep

HOME = {"address_line1": "14 Kōwhai Road", "postcode": "6011"}
NAMES = ["Aroha", "Hine", "Mere", "Tama", "Wiremu", "Rangi", "Moana", "Kiri", "Nikau", "Manaia",
         "Sophie", "Oliver", "Charlotte", "Jack", "Amelia", "Noah", "Isla", "Leo", "Ruby", "Hugo"]
FAMILIES = ["Ngata", "Parata", "Tipene", "Horomona", "Walker", "Brown", "Wilson", "Taylor",
            "Thompson", "Young", "Harris", "Martin", "Clarke", "Reid", "Turner", "Hughes"]


def test_a_lifted_given_guard_weighs_a_different_name_but_contacts_still_separate():
    a = prep(given_names="Caleb", family_name="Priest", **HOME)
    b = prep(given_names="Archie", family_name="Priest", **HOME)
    levels = compare(a, b)
    assert levels.given == "different"
    assert levels.conflicts(Guard())
    assert not levels.conflicts(Guard(given=False))
    # With their own mobiles, or two NHIs, they stay two people under any guard.
    own = compare(prep(given_names="Caleb", mobile="+64211000001", **HOME),
                  prep(given_names="Archie", mobile="+64211000002", **HOME))
    assert own.conflicts(Guard(given=False, dob=False))
    nhis = compare(prep(given_names="Caleb", nhi="ZZZ0016"), prep(given_names="Archie", nhi="ZAC5361"))
    assert nhis.conflicts(Guard(given=False, dob=False))
    # Lifting the given-name guard leaves the date-of-birth guard in place.
    dob = compare(prep(date_of_birth=date(1980, 3, 4)), prep(date_of_birth=date(1955, 8, 21)))
    assert dob.conflicts(Guard(given=False)) and not dob.conflicts(Guard(dob=False))


def test_the_household_test_lifts_the_guard_only_without_households():
    febrl_like = HouseholdEvidence(copies=2130, given_differs=344, dob_differs=81, both_differ=10)
    assert not febrl_like.guard.given
    nz_like = HouseholdEvidence(copies=6647, given_differs=297, dob_differs=401, both_differ=27374)
    assert nz_like.guard == Guard(given=True, dob=True)
    # Households are few but present: twins among them cannot be ruled out.
    some = HouseholdEvidence(copies=2130, given_differs=344, dob_differs=81, both_differ=400)
    assert some.guard.given
    # Too few pairs to say anything.
    assert HouseholdEvidence(copies=60, given_differs=20, dob_differs=0, both_differ=0).guard.given
    # Half of one 'person's pairs with another given name is not a typing error: twins (a
    # twin study's records, with no other household members).
    twins = HouseholdEvidence(copies=300, given_differs=600, dob_differs=0, both_differ=0)
    assert twins.guard.given


def household_free_incident(seed: int):
    """Independent people, 1-4 records each, no two at one address; 15 % of the copies
    have their given name replaced by another name (FEBRL's value swap)."""
    rng = random.Random(seed)
    records, truth = [], []
    for person in range(400):
        given, family = rng.choice(NAMES), rng.choice(FAMILIES)
        dob = date(1940, 1, 1) + timedelta(days=rng.randrange(25000))
        home = {"address_line1": f"{person + 1} {rng.choice(['Rimu', 'Tōtara', 'Kauri'])} Street",
                "postcode": f"{6000 + person}"}
        for copy in range(rng.choice([1, 2, 2, 3, 4])):
            name = rng.choice([n for n in NAMES if n != given]) if copy and rng.random() < 0.15 else given
            records.append(make(f"a{copy}", f"p{person}", given_names=name, family_name=family,
                                date_of_birth=dob, **home))
            truth.append(person)
    return records, truth


def test_an_incident_without_households_merges_corrupted_given_names_after_learning():
    records, truth = household_free_incident(5)
    r = Resolver()
    r.add_many(records)
    before = len(r.persons())
    report = r.learn_weights()
    assert report["households"]["guard_given"] is False
    assert r.config.guard.given is False and r.config.guard.dob is True
    assert -10 < r.config.level_weights["given"]["different"] < 0
    assert len(r.persons()) < before
    person = {(a, s): p for a, s, p in r.assignments()}
    by_truth: dict = {}
    for record, t in zip(records, truth, strict=True):
        by_truth.setdefault(t, set()).add(person[record.key])
    assert sum(len(p) == 1 for p in by_truth.values()) == len(by_truth)  # every person whole
    assert len(set(person.values())) == len(by_truth)  # and none mixed
    # Explanations stay exact: the weighed disagreement is in the evidence.
    item_free = [e for e in (r.explain(*records[i].key) for i in range(len(records))) if e.links]
    for explanation in item_free[:50]:
        for link in explanation.links:
            assert abs(link.weight - sum(p.weight for p in link.parts)) < 1e-6


def test_an_incident_with_households_keeps_the_guard_after_learning():
    records, _ = generate(3000, seed=31)
    r = Resolver()
    r.add_many(records)
    report = r.learn_weights()
    assert report["households"]["both_differ"] > 100
    assert r.config.guard == Guard(given=True, dob=True)


def test_household_evidence_counts_pairs_at_one_dwelling_only():
    def pattern(**levels):
        from services.dedupe.resolver.comparisons import Levels
        return tuple(levels.get(f, "missing") for f in Levels._fields)

    from collections import Counter
    candidates = Counter({
        pattern(given="exact", family="exact", dob="exact", address="exact"): 5,
        pattern(given="different", family="exact", dob="exact", address="street"): 2,
        pattern(given="exact", family="exact", dob="different", address="exact"): 3,
        pattern(given="different", family="exact", dob="different", address="exact"): 7,
        pattern(given="different", family="exact", dob="exact", address="postcode"): 100,  # not one dwelling
        pattern(given="different", family="different", dob="exact", address="exact"): 100,  # not one family
    })
    assert household_evidence(candidates) == HouseholdEvidence(5, 2, 3, 7)


def test_the_household_test_alone_keeps_the_hand_set_weights_and_survives_a_snapshot():
    """What the dedupe service runs at release (learn_weights(levels=False)): the guard is
    lifted where there are no households, every other weight stays hand-set, and a
    snapshot restores the same persons."""
    records, truth = household_free_incident(5)
    r = Resolver()
    r.add_many(records)
    before = len(r.persons())
    report = r.learn_weights(levels=False)
    assert "lambda" not in report  # no EM
    assert r.config.guard == Guard(given=False, dob=True)
    for field, levels in r.config.level_weights.items():
        for level, weight in levels.items():
            if (field, level) != ("given", "different"):
                assert weight == Resolver().config.level_weights[field][level]
    assert len(r.persons()) < before
    restored = Resolver.restore(r.snapshot())
    assert restored.config.guard == r.config.guard
    assert restored.assignments() == r.assignments()


def test_the_household_test_changes_nothing_where_households_are():
    records, _ = generate(3000, seed=31)
    r = Resolver()
    r.add_many(records)
    config = r.config
    r.learn_weights(levels=False)
    assert r.config is config  # not even a rebuild
