"""From match edges to persons: connected components, split by the conflict guard.

Within a component, match edges are taken strongest first (ties broken by record keys)
and two groups are joined only if no record in one conflicts with any record in the
other (different given names, different date of birth). This is a function of the
component's records and edges alone, so arrival order cannot change the persons.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MatchEdge:
    weight: float
    a_key: tuple[str, str]
    b_key: tuple[str, str]
    a: int
    b: int
    # A match that rests on a record missing its date of birth or given name: it may
    # attach that record to one person, but never decide between two (see below).
    weak: bool = False
    # Both records agree exactly on everything both hold (an agency's duplicate, a W-2
    # per employer): such incomplete copies are one record's worth of evidence.
    copy: bool = False
    # On a weak edge between two complete records (one goes by the other's middle name),
    # the record whose identity is in doubt: it attaches only where all its weak edges lead.
    loose: int = -1
    # The two records agree on more than names: a mobile, an email, or the dwelling.
    placed: bool = False

    @property
    def order(self) -> tuple:
        return (-self.weight, min(self.a_key, self.b_key), max(self.a_key, self.b_key))


def components(start: Iterable[int], neighbours: Callable[[int], Iterable[int]]) -> list[list[int]]:
    """Connected components reachable from `start` over match edges."""
    seen: set[int] = set()
    found = []
    for root in start:
        if root in seen:
            continue
        seen.add(root)
        stack, component = [root], []
        while stack:
            node = stack.pop()
            component.append(node)
            for nxt in neighbours(node):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        found.append(component)
    return found


def split_by_guard(
    members: list[int],
    edges: list[MatchEdge],
    conflict: Callable[[int, int], bool],
    incomplete: Callable[[int], bool] | None = None,
    doubts: Iterable[tuple[int, int]] = (),
) -> tuple[list[list[int]], list[MatchEdge]]:
    """Group a component's records into persons. Returns (persons, refused edges).

    Phase 1 joins over full-strength edges, strongest first, refusing any join that
    would put two conflicting records together. Phase 2 takes the weak edges (a record
    with no date of birth, or no given name): such a record joins a person only when
    every weak edge of its group leads to that one person. A nameless record that
    matches both twins, or a 'John Walker' without a date of birth living with his
    father of the same name, stays on its own and goes to review.

    `doubts` are review pairs (a, b) with a in `members` (b may be outside the
    component) that would be weak matches but for conflicting evidence. Each still
    counts as a place its group's weak edges lead, though it never joins: demoting a
    weak edge to such a review can only keep a record apart, never let its remaining
    weak edge attach it elsewhere (seed 101: the lone target left after the demotion was
    another person).
    """
    parent = {m: m for m in members}
    groups = {m: [m] for m in members}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def join(ra: int, rb: int) -> None:
        if len(groups[ra]) < len(groups[rb]):
            ra, rb = rb, ra
        parent[rb] = ra
        groups[ra].extend(groups.pop(rb))

    refused = []
    ordered = sorted(edges, key=lambda e: e.order)
    for edge in ordered:
        if edge.weak:
            continue
        ra, rb = find(edge.a), find(edge.b)
        if ra == rb:
            continue
        if any(conflict(x, y) for x in groups[ra] for y in groups[rb]):
            refused.append(edge)
            continue
        join(ra, rb)

    weak = [e for e in ordered if e.weak]
    # Incomplete records that are copies of each other count as one before their weak
    # edges are followed, or two copies would each see the other as a second target.
    for edge in weak:
        if edge.copy and incomplete is not None and incomplete(edge.a) and incomplete(edge.b):
            ra, rb = find(edge.a), find(edge.b)
            if ra != rb and not any(conflict(x, y) for x in groups[ra] for y in groups[rb]):
                join(ra, rb)
    if weak:
        # Where each phase-1 group's weak edges (and doubts) lead, fixed before any weak join.
        targets: dict[int, set[int]] = {}
        for edge in weak:
            ra, rb = find(edge.a), find(edge.b)
            if ra != rb:
                targets.setdefault(ra, set()).add(rb)
                targets.setdefault(rb, set()).add(ra)
        doubts = list(doubts)
        for a, b in doubts:
            ra = find(a)
            if b not in parent:  # a record outside the component: a place of its own
                targets.setdefault(ra, set()).add(-1 - b)
            elif ra != (rb := find(b)):
                targets.setdefault(ra, set()).add(rb)
                targets.setdefault(rb, set()).add(ra)
        home = {m: find(m) for m in members}
        if incomplete is not None:
            _settle_incomplete_sets(weak, targets, home, groups, incomplete)
        for edge in weak:
            ga, gb = home[edge.a], home[edge.b]
            if ga == gb:
                continue
            unambiguous = (
                (incomplete is None or incomplete(edge.a) or edge.loose == edge.a) and targets[ga] == {gb}
            ) or ((incomplete is None or incomplete(edge.b) or edge.loose == edge.b) and targets[gb] == {ga})
            ra, rb = find(edge.a), find(edge.b)
            if ra == rb:
                continue
            if not unambiguous or any(conflict(x, y) for x in groups[ra] for y in groups[rb]):
                refused.append(edge)
                continue
            join(ra, rb)
    return list(groups.values()), refused


def _settle_incomplete_sets(
    weak: list[MatchEdge],
    targets: dict[int, set[int]],
    home: dict[int, int],
    groups: dict[int, list[int]],
    incomplete: Callable[[int], bool],
) -> None:
    """Judge incomplete records that point at each other as one set (in place, on targets).

    One person's W-2s from several employers (no date of birth) each match the person's
    complete records and each other, so each sees two targets and none attaches. Groups
    made only of incomplete records, linked by weak edges that agree on more than names (a
    contact or the dwelling), form a set; when every target outside the set is one group,
    each member with its own edge to that group points there alone. A namesake's W-2 at
    another address shares only names with the set, so it is not in it. A set that reaches
    two outside groups bridges nobody: its members keep all their targets.
    """
    weak_only = {g for g in targets if all(incomplete(m) for m in groups[g])}
    if len(weak_only) < 2:
        return
    parent = {g: g for g in weak_only}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for edge in weak:
        ga, gb = home[edge.a], home[edge.b]
        if edge.placed and ga != gb and ga in weak_only and gb in weak_only:
            parent[find(ga)] = find(gb)
    sets: dict[int, list[int]] = {}
    for g in weak_only:
        sets.setdefault(find(g), []).append(g)
    for group_set in sets.values():
        if len(group_set) < 2:
            continue
        # Other incomplete records the set matches on names alone are not a second person.
        outside = set().union(*(targets[g] for g in group_set)) - weak_only
        if len(outside) != 1:
            continue
        for g in group_set:
            if outside <= targets[g]:
                targets[g] = set(outside)
