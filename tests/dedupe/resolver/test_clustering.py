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
