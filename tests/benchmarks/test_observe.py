"""The incident run's correctness tally (benchmarks/incident/observe.py), on hand-made cases."""

from benchmarks.incident.observe import count_notices, split_in_review


def test_a_held_person_split_in_two_counts_as_held_and_notified_not_as_a_negative_none():
    # True person 1: one notice. Person 2: two notices (kept apart). Person 3: held, but a second,
    # unjoined part of them was released (one notice). Person 4: held, no notice. Person 5: no
    # notice and no hold — the one a run must never show.
    notices_of = {1: {"n1"}, 2: {"n2", "n3"}, 3: {"n4"}, 4: set(), 5: set()}
    persons_of = {"n1": {1}, "n2": {2}, "n3": {2}, "n4": {3}}
    tally = count_notices(notices_of, persons_of, held={3, 4})
    assert tally["exactly_one_count"] == 2 and tally["two_or_more"] == 1 and tally["none"] == 2
    assert tally["held"] == 2
    assert tally["none_not_held"] == 1  # person 5 only; `none - held` would say 0
    assert tally["held_notified"] == 1  # person 3


def test_a_notice_over_two_true_people_is_spanning():
    tally = count_notices({1: {"n1"}, 2: {"n1"}}, {"n1": {1, 2}}, held=set())
    assert tally["spanning"] == 1 and tally["exactly_one"] == 1.0 and tally["none_not_held"] == 0


def test_a_person_held_for_a_contact_decision_is_not_a_person_without_a_notice():
    # Person 1: two records each giving only an email, and the emails differ: dedupe holds them
    # (held_contact) until a coordinator picks one — no notice yet, by design. Person 2: lost.
    tally = count_notices({1: set(), 2: set(), 3: {"n1"}}, {"n1": {3}}, held=set(), held_for_contact={1})
    assert tally["none"] == 2 and tally["held_for_contact"] == 1 and tally["held"] == 0
    assert tally["none_not_held"] == 1  # person 2 only


def test_two_notices_joined_by_an_open_review_pair_are_kept_apart_not_split():
    truth = {
        ("a", "1"): 1,
        ("b", "1"): 1,
        ("a", "2"): 2,
        ("b", "2"): 2,
        ("c", "2"): 2,
        ("a", "3"): 3,
        ("b", "3"): 3,
    }
    notice_of = {
        ("a", "1"): "n1",
        ("b", "1"): "n2",  # person 1: two notices, a pair between them
        ("a", "2"): "n3",
        ("b", "2"): "n4",
        ("c", "2"): "n5",  # person 2: one of 3 joined
        ("a", "3"): "n6",
        ("b", "3"): "n7",
    }  # person 3: a pair to someone else's record
    pairs = [(("a", "1"), ("b", "1")), (("a", "2"), ("b", "2")), (("a", "3"), ("a", "2"))]
    assert split_in_review(notice_of, truth, pairs) == 1
    # Through a chain of pairs: all three of person 2's notices joined.
    assert split_in_review(notice_of, truth, [*pairs, (("c", "2"), ("b", "2"))]) == 2
