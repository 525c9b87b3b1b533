"""Notice lineages as plain functions: who continues which lineage after merges and splits,
and who was told nothing."""

from services.dedupe.lineage import NOTHING, Lineage, Told, assign_lineages, first_lineage_id


def derive(base: str, key: tuple[str, str], attempt: int) -> str:
    return f"{base}/{key[1]}/{attempt}"


def lin(version: int, agencies=(), categories=(), holder=None) -> Lineage:  # noqa: ANN001
    return Lineage(version, frozenset(agencies), frozenset(categories), holder)


def told(lineage_id, version, agencies=(), categories=()) -> Told:  # noqa: ANN001
    return Told(lineage_id, version, frozenset(agencies), frozenset(categories))


def test_a_person_no_notice_covered_was_told_nothing():
    assert assign_lineages({"p-2": {}}, {"p-2": "L1"}, {"L1": lin(1, holder="p-2")}, derive) == {
        "p-2": NOTHING}


def test_a_re_identified_person_continues_the_lineage_that_covered_its_records():
    lineages = {"L1": lin(2, {"gp"}, {"clinical_notes"})}
    assert assign_lineages({"p-9": {"L1": ("gp", "g1")}}, {}, lineages, derive) == {
        "p-9": told("L1", 2, {"gp"}, {"clinical_notes"})}


def test_merged_lineages_the_smallest_goes_on_so_its_amendment_names_everything():
    lineages = {"L2": lin(3, {"lab"}, {"lab_results"}), "L1": lin(1, {"gp"}, {"clinical_notes"})}
    result = assign_lineages({"p": {"L2": ("lab", "l1"), "L1": ("gp", "g1")}}, {}, lineages,
                             derive)
    assert result == {"p": told("L1", 1, {"gp"}, {"clinical_notes"})}


def test_a_split_lineage_is_kept_by_its_holder_and_the_other_part_derives_its_own():
    lineages = {"L1": lin(2, {"gp", "lab"}, holder="p-b")}
    claims = {"p-a": {"L1": ("gp", "a")}, "p-b": {"L1": ("lab", "b")}}
    result = assign_lineages(claims, {"p-b": "L1"}, lineages, derive)
    assert result["p-b"] == told("L1", 2, {"gp", "lab"})  # it held it: it keeps it
    assert result["p-a"] == told("L1/a/0", 2, {"gp", "lab"})  # told: an amendment next
    # Without a holder among them, the part with the smallest covered record keeps it.
    result = assign_lineages(claims, {}, {"L1": lin(2)}, derive)
    assert (result["p-a"].lineage_id, result["p-b"].lineage_id) == ("L1", "L1/b/0")


def test_a_lineage_held_by_a_person_not_being_decided_is_never_taken():
    lineages = {"L1": lin(1, holder="p-kept"), "L1/x/0": lin(1, holder="someone-else")}
    result = assign_lineages({"p-new": {"L1": ("gp", "x")}}, {}, lineages, derive)
    assert result["p-new"].lineage_id == "L1/x/1"  # neither L1 nor a derived id in use


def test_a_first_notice_never_reuses_a_lineage_id():
    assert first_lineage_id("P-1", {}, derive) == "P-1"
    assert first_lineage_id("P-1", {"P-1": lin(1)}, derive) == "P-1//0"
    assert first_lineage_id("P-1", {"P-1": lin(1), "P-1//0": lin(1)}, derive) == "P-1//1"
