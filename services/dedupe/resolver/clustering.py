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
) -> tuple[list[list[int]], list[MatchEdge]]:
    """Group a component's records into persons. Returns (persons, refused edges)."""
    parent = {m: m for m in members}
    groups = {m: [m] for m in members}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    refused = []
    for edge in sorted(edges, key=lambda e: e.order):
        ra, rb = find(edge.a), find(edge.b)
        if ra == rb:
            continue
        if any(conflict(x, y) for x in groups[ra] for y in groups[rb]):
            refused.append(edge)
            continue
        if len(groups[ra]) < len(groups[rb]):
            ra, rb = rb, ra
        parent[rb] = ra
        groups[ra].extend(groups.pop(rb))
    return list(groups.values()), refused
