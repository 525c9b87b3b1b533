"""The review queue: open questions for a human, one per pair of persons.

A record pair raises a question when it was uncertain (between the thresholds) or a match
the guard refused. All such pairs between the same two persons are one question, asked
over the strongest of them: "same person" pins it (and the persons join), "keep apart"
makes it a conflict, which the guard then applies to every join between the two persons.
Two persons that a hard conflict already separates (given names or date of birth differ
between some of their records, a reviewer kept them apart) are not asked about over
merely uncertain pairs: at the precision target the answer is already "apart".

Expected cost: with posterior log-odds taken as weight − review threshold (so a pair at
the review threshold is even odds, one at the match threshold ~0.999), an uncertain
question costs P(same) missed merges; a refused match whose record sits in another
person costs P(it belongs here instead) wrong merges (`wrong_merge_cost` each).

These functions read the resolver's internal state (same package, read-only).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from services.dedupe.resolver.clustering import components
from services.dedupe.resolver.explain import ReviewItem
from services.dedupe.resolver.scoring import MATCH

if TYPE_CHECKING:
    from services.dedupe.resolver.resolver import Resolver, _Edge


def review_items(resolver: Resolver) -> list[ReviewItem]:
    """Open questions, highest expected cost first."""
    questions: dict[tuple[str, str], list[tuple[float, int, int, _Edge]]] = {}
    for r in resolver._edges:
        pr = resolver._pid(r)
        for s, edge in resolver._edges_of(r).items():
            if r > s:
                continue
            ps = resolver._pid(s)
            if pr != ps:
                questions.setdefault((min(pr, ps), max(pr, ps)), []).append((edge.weight, r, s, edge))
    items = []
    for pairs in questions.values():
        refused = [p for p in pairs if p[3].decision == MATCH]
        if not refused and _persons_apart(resolver, pairs[0][1], pairs[0][2]):
            continue
        _, r, s, edge = max(refused or pairs, key=lambda p: (p[0], -p[1], -p[2]))
        a, b = sorted((resolver._records[r].key, resolver._records[s].key))
        ra, rb = resolver._rid[a], resolver._rid[b]
        items.append(ReviewItem(
            a, b, resolver._pid(ra), resolver._pid(rb), resolver._evidence(r, s, edge),
            "guard" if refused else "uncertain", len(pairs),
            round(_expected_cost(resolver, r, s, edge), 6)))
    return sorted(items, key=lambda i: (-i.expected_cost, i.a, i.b))


def _expected_cost(resolver: Resolver, r: int, s: int, edge: _Edge) -> float:
    def p_same(weight: float) -> float:
        return 1.0 / (1.0 + 2.0 ** min(60.0, resolver.config.review_threshold - weight))

    if edge.decision != MATCH:
        return p_same(edge.weight)
    # A refused match: each record may sit in a person it matched less strongly.
    own = max((e.weight for x in (r, s) for y, e in resolver._edges_of(x).items()
               if e.decision == MATCH and resolver._pid(x) == resolver._pid(y)), default=None)
    if own is None:
        return p_same(edge.weight)  # both alone: a missed merge at worst
    share = 1.0 / (1.0 + 2.0 ** max(-60.0, min(60.0, own - edge.weight)))
    return share * resolver.config.wrong_merge_cost


def _persons_apart(resolver: Resolver, r: int, s: int) -> bool:
    """Whether a hard conflict (or a reviewer's keep-apart) separates the persons of r and s."""
    (component,) = components([r], resolver._match_neighbours)
    pr, ps = resolver._pid(r), resolver._pid(s)
    mine = [m for m in component if resolver._pid(m) == pr]
    if s not in component:
        (other,) = components([s], resolver._match_neighbours)
    else:
        other = component
    theirs = [m for m in other if resolver._pid(m) == ps]
    return any(resolver._hard_conflict(x, y) for x in mine for y in theirs)
