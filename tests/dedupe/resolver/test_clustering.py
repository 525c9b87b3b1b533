from services.dedupe.resolver.clustering import MatchEdge, components, split_by_guard


def edge(w, a, b):
    return MatchEdge(w, ("ag", str(a)), ("ag", str(b)), a, b)


def test_components():
    graph = {1: [2], 2: [1], 3: []}
    assert sorted(map(sorted, components([1, 2, 3], graph.__getitem__))) == [[1, 2], [3]]


def test_guard_refuses_a_merge_that_joins_conflicting_records():
    # 1 ~ 2 ~ 3 by match edges, but 1 and 3 conflict (twins): the weaker edge is refused.
    persons, refused = split_by_guard(
        [1, 2, 3], [edge(30, 1, 2), edge(20, 2, 3)], lambda a, b: {a, b} == {1, 3}
    )
    assert sorted(map(sorted, persons)) == [[1, 2], [3]]
    assert [(e.a, e.b) for e in refused] == [(2, 3)]


def test_guard_result_does_not_depend_on_edge_order():
    edges = [edge(20, 1, 2), edge(20, 2, 3), edge(25, 3, 4)]
    conflict = lambda a, b: {a, b} == {1, 4}  # noqa: E731
    first, _ = split_by_guard([1, 2, 3, 4], edges, conflict)
    second, _ = split_by_guard([4, 3, 2, 1], list(reversed(edges)), conflict)
    assert sorted(map(sorted, first)) == sorted(map(sorted, second))


def weak_edge(w, a, b, placed=True):
    return MatchEdge(w, ("ag", str(a)), ("ag", str(b)), a, b, weak=True, placed=placed)


def test_incomplete_records_pointing_at_one_person_attach_as_a_set():
    # 1: a complete record; 2 and 3: one person's W-2s (no date of birth) at one address.
    # Each matches 1 and the other, so alone each sees two targets; as a set, one.
    persons, _ = split_by_guard(
        [1, 2, 3], [weak_edge(16, 1, 2), weak_edge(15, 1, 3), weak_edge(14, 2, 3)],
        lambda a, b: False, lambda m: m in (2, 3),
    )
    assert sorted(map(sorted, persons)) == [[1, 2, 3]]


def test_a_set_of_incomplete_records_does_not_bridge_two_persons():
    # 2 ~ 1 and 3 ~ 4, with 2 ~ 3: the set {2, 3} reaches two complete persons: nobody joins.
    persons, refused = split_by_guard(
        [1, 2, 3, 4], [weak_edge(16, 1, 2), weak_edge(15, 3, 4), weak_edge(14, 2, 3)],
        lambda a, b: False, lambda m: m in (2, 3),
    )
    assert sorted(map(sorted, persons)) == [[1], [2], [3], [4]]
    assert len(refused) == 3


def test_a_set_member_without_its_own_link_to_the_person_is_not_pulled_in_by_the_set():
    # 2 and 3 both match 1; 5 matches only 2 and 3 (a namesake's wage record, say): 2 and 3
    # attach as a set, 5 keeps its two targets and stays alone.
    persons, _ = split_by_guard(
        [1, 2, 3, 5],
        [weak_edge(16, 1, 2), weak_edge(15, 1, 3), weak_edge(14, 2, 3), weak_edge(13, 2, 5),
         weak_edge(13, 3, 5)],
        lambda a, b: False, lambda m: m in (2, 3, 5),
    )
    assert sorted(map(sorted, persons)) == [[1, 2, 3], [5]]


def test_incomplete_records_sharing_only_names_are_not_a_set():
    # 2 and 3 agree on names alone (a namesake's W-2 at another address): no set, each
    # keeps its two targets.
    persons, _ = split_by_guard(
        [1, 2, 3], [weak_edge(16, 1, 2), weak_edge(15, 1, 3), weak_edge(14, 2, 3, placed=False)],
        lambda a, b: False, lambda m: m in (2, 3),
    )
    assert sorted(map(sorted, persons)) == [[1], [2], [3]]
