"""retractions.py as plain functions: which withdrawals after a notice ask a coordinator."""

from services.dedupe.retractions import Told, retractions


def told(lineage: str, agency: str, rid: str, withdrawn: bool, version: int = 1) -> Told:
    return Told(lineage, (agency, rid), version, withdrawn)


def test_an_agency_with_a_live_record_left_is_not_retracted():
    assert retractions("inc", [told("L", "gp", "g1", True), told("L", "gp", "g2", False)]) == []


def test_one_agency_gone_and_all_gone_are_one_item_per_lineage():
    found = retractions("inc", [
        told("L1", "gp", "g1", False), told("L1", "lab", "l1", True), told("L1", "lab", "l2", True),
        told("L2", "gp", "g3", True)])
    assert [(r.lineage_id, r.kind, r.withdrawn_agencies, r.standing_agencies, r.withdrawn)
            for r in found] == [
        ("L1", "agency_not_involved", ("lab",), ("gp",), (("lab", "l1"), ("lab", "l2"))),
        ("L2", "sent_in_error", ("gp",), (), (("gp", "g3"),))]
    conflict = found[1].conflict()
    assert (conflict.kind, conflict.reason, conflict.a, conflict.b) == (
        "retraction", "all_withdrawn", ("gp", "g3"), ("gp", "g3"))


def test_the_review_id_is_bound_to_the_withdrawn_records_and_their_versions():
    base = [told("L", "gp", "g1", False), told("L", "lab", "l1", True)]
    (one,) = retractions("inc", base)
    (same,) = retractions("inc", list(reversed(base)))
    (newer,) = retractions("inc", [told("L", "gp", "g1", False),
                                   told("L", "lab", "l1", True, version=2)])
    (more,) = retractions("inc", [*base, told("L", "pharm", "p1", True)])
    assert one.review_id == same.review_id
    assert len({one.review_id, newer.review_id, more.review_id}) == 3
    assert retractions("other", base)[0].review_id != one.review_id
