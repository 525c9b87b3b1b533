"""The review queue: one question per pair of persons, only when uncertain, by expected cost."""
from services.dedupe.resolver import Resolver
from tests.dedupe.resolver.conftest import make

HOME = {"address_line1": "14 Kōwhai Road", "postcode": "6011"}


def test_uncertain_pairs_between_two_persons_are_one_question_settled_by_one_decision():
    # Two persons of three records each; every cross pair is uncertain (a surname change
    # with nothing else to back it).
    ngata = [make(f"gp-{i}", given_names="Aroha", family_name="Ngata", date_of_birth="1985-09-17")
             for i in range(3)]
    wilson = [make(f"lab-{i}", given_names="Aroha", family_name="Wilson", date_of_birth="1985-09-17")
              for i in range(3)]
    r = Resolver()
    r.add_many(ngata + wilson)
    (item,) = r.review_items()
    assert item.why == "uncertain"
    assert item.pairs == 9
    assert 0 < item.expected_cost < 1
    r.decide(item.a, item.b, same_person=True)
    assert len({r.person_of(*x.key) for x in ngata + wilson}) == 1
    assert r.review_items() == []


def test_keep_apart_settles_every_pair_between_the_persons():
    ngata = [make(f"gp-{i}", given_names="Aroha", family_name="Ngata", date_of_birth="1985-09-17")
             for i in range(2)]
    wilson = [make(f"lab-{i}", given_names="Aroha", family_name="Wilson", date_of_birth="1985-09-17")
              for i in range(2)]
    r = Resolver()
    r.add_many(ngata + wilson)
    (item,) = r.review_items()
    r.decide(item.a, item.b, same_person=False)
    assert r.review_items() == []
    assert r.person_of(*ngata[0].key) != r.person_of(*wilson[0].key)


def test_no_question_where_a_hard_conflict_already_separates_the_persons():
    # Twins: one pair between them is merely uncertain (a typo in a name that is not
    # common), but another pair has different given names — they are two people.
    aroha = make("gp-1", given_names="Arohanui", family_name="Ngata", date_of_birth="2010-05-05", **HOME)
    hine = make("gp-2", given_names="Hinewai", family_name="Ngata", date_of_birth="2010-05-05", **HOME)
    typo = make("lab-1", given_names="Hinewia", family_name="Ngata", date_of_birth="2010-05-06")
    r = Resolver()
    r.add_many([aroha, hine, typo])
    people = {r.person_of(*x.key) for x in (aroha, hine)}
    assert len(people) == 2
    for item in r.review_items():
        assert {item.a_person_id, item.b_person_id} != people


def test_questions_are_ordered_by_expected_cost():
    r = Resolver()
    # Two uncertain pairs of different strength: a surname change; a surname change with a
    # one-digit date of birth and a shared mobile.
    r.add_many([
        make("gp-1", given_names="Aroha", family_name="Ngata", date_of_birth="1985-09-17"),
        make("gp-2", given_names="Aroha", family_name="Wilson", date_of_birth="1985-09-17"),
        make("gp-3", given_names="Moana", family_name="Ruatapu", date_of_birth="1972-01-30",
             mobile="+64211000007"),
        make("gp-4", given_names="Moana", family_name="Kereama", date_of_birth="1972-01-31",
             mobile="+64211000007"),
    ])
    items = r.review_items()
    costs = [i.expected_cost for i in items]
    assert len(costs) == 2 and costs[0] != costs[1]
    assert costs == sorted(costs, reverse=True)
    weights = [i.evidence.weight for i in items]
    assert weights == sorted(weights, reverse=True)  # likelier same person, costlier to leave
