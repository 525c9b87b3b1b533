from services.dedupe.resolver.names import COMMON_GIVEN, equivalent, family_equivalent, names_in_groups_of


def test_transliterations_and_nicknames_are_equivalent():
    assert equivalent("wiremu", "william")
    assert equivalent("mere", "mary")
    assert equivalent("bob", "robert")
    assert equivalent("hemi", "james")
    assert equivalent("sione", "john")
    assert equivalent("rawiri", "david")  # table keys are folded: Rāwiri -> rawiri


def test_unrelated_names_are_not_equivalent():
    assert not equivalent("william", "robert")
    assert not equivalent("mark", "mary")
    assert not equivalent("john", "john")  # equal is 'exact', not 'equivalent'


def test_names_in_groups_of_includes_variants():
    assert "margaret" in names_in_groups_of("peggy")


def test_common_given_names_include_table_names():
    assert {"mark", "mary", "wiremu"} <= COMMON_GIVEN


def test_family_romanisations():
    assert family_equivalent("li", "le")  # keys are folded: Lee -> le
    assert family_equivalent("huang", "wong")
    assert not family_equivalent("smith", "smyth")
