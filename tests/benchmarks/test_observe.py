"""The incident run's correctness tally (benchmarks/incident/observe.py), on hand-made cases."""

from benchmarks.incident.observe import count_notices


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
