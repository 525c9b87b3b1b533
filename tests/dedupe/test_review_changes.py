"""The review queue's diff as a plain function (reviews.py): which of the resolver's pairs are
new, which stored rows to revise, which to mark resolved — and never a coordinator's decision."""

from services.dedupe.resolver import PairEvidence, ReviewItem
from services.dedupe.reviews import review_changes, review_id

INCIDENT = "inc-1"
GP, LAB, HOSP = ("gp", "gp-1"), ("lab", "lab-1"), ("hosp", "h-1")


def item(a, b, why="uncertain") -> ReviewItem:  # noqa: ANN001
    evidence = PairEvidence(min(a, b), max(a, b), 4.5, "review", "between thresholds", (),
                            10.0, 2.0)
    return ReviewItem(min(a, b), max(a, b), "P-a", "P-b", evidence, why)


def rid(a, b) -> str:  # noqa: ANN001
    return review_id(INCIDENT, a, b)


def test_review_ids_are_stable_and_order_free():
    assert rid(GP, LAB) == rid(LAB, GP) != rid(GP, HOSP)
    assert rid(GP, LAB) != review_id("inc-2", GP, LAB)
    assert rid(GP, LAB).startswith("rev-")


def test_new_pairs_are_inserted_open_with_evidence_of_levels_and_weights():
    changes = review_changes(INCIDENT, [item(GP, LAB)], {})
    (new,) = changes.new
    assert (new.review_id, new.a, new.b, new.reason) == (rid(GP, LAB), GP, LAB, "uncertain")
    assert new.evidence["weight"] == 4.5 and new.evidence["comparisons"] == []
    assert changes.revised == [] and changes.resolved == []


def test_an_open_row_with_the_same_reason_is_left_alone():
    changes = review_changes(INCIDENT, [item(GP, LAB)], {rid(GP, LAB): ("open", "uncertain")})
    assert not changes


def test_a_new_reason_or_a_pair_needing_a_decision_again_is_revised():
    changes = review_changes(INCIDENT, [item(GP, LAB, why="guard"), item(GP, HOSP)], {
        rid(GP, LAB): ("open", "uncertain"),
        rid(GP, HOSP): ("resolved", "uncertain"),
    })
    assert [r.review_id for r in changes.revised] == [rid(GP, LAB), rid(GP, HOSP)]
    assert [r.reason for r in changes.revised] == ["guard", "uncertain"]
    assert changes.new == []


def test_decided_rows_are_never_rewritten():
    changes = review_changes(INCIDENT, [item(GP, LAB, why="guard"), item(GP, HOSP)], {
        rid(GP, LAB): ("merge", "uncertain"),
        rid(GP, HOSP): ("keep_apart", "uncertain"),
    })
    assert not changes


def test_open_pairs_the_resolver_no_longer_has_are_resolved_decided_ones_kept():
    changes = review_changes(INCIDENT, [], {
        rid(GP, LAB): ("open", "uncertain"),
        rid(GP, HOSP): ("merge", "uncertain"),
        rid(LAB, HOSP): ("resolved", "guard"),
    })
    assert changes.resolved == [rid(GP, LAB)]
    assert changes.new == [] and changes.revised == []
