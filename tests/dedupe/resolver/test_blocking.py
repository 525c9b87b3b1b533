from services.dedupe.resolver.blocking import BlockIndex, index_keys, key_id
from tests.dedupe.resolver.conftest import prep


def shared_kinds(a, b):
    return {k[0] for k in set(index_keys(a)) & set(index_keys(b))}


def test_swapped_names_share_a_names_block():
    kinds = shared_kinds(prep(given_names="Wei", family_name="Zhang"),
                         prep(given_names="Zhang", family_name="Wei"))
    assert {"names+year", "names+daymonth"} <= kinds


def test_names_blocks_survive_one_damaged_date_component_or_a_missing_date():
    base = prep(given_names="Aroha", family_name="Ngata", date_of_birth="1980-03-04", postcode="6011")
    wrong_year = prep(given_names="Aroha", family_name="Ngata", date_of_birth="1981-03-04")
    wrong_day = prep(given_names="Aroha", family_name="Ngata", date_of_birth="1980-03-09")
    no_date = prep(given_names="Aroha", family_name="Ngata", date_of_birth=None, postcode="6011")
    assert "names+daymonth" in shared_kinds(base, wrong_year)
    assert "names+year" in shared_kinds(base, wrong_day)
    assert "names+postcode" in shared_kinds(base, no_date)


def test_no_block_is_made_of_names_alone():
    # A names-only block grows with the feed until it is over the cap and useless.
    keys = index_keys(prep(given_names="John", family_name="Smith", address_line1="1 Queen St"))
    assert "names" not in {k[0] for k in keys}
    assert all(len(k) >= 4 for k in keys if k[0].startswith("names+"))


def test_address_block_ignores_spacing_slips_and_needs_the_postcode():
    a = prep(address_line1="57 Bedford Street", postcode="6525")
    b = prep(address_line1="57 bedford s treet", postcode="6525")
    c = prep(address_line1="57 Bedford Street", postcode="1010")
    assert "address" in shared_kinds(a, b)
    assert "address" not in shared_kinds(a, c)


def test_oversized_block_is_not_used_and_reopens_when_it_shrinks():
    index = BlockIndex(cap=2)
    key = ("mobile", "+6493000000")
    ids, over = index.add(1, [key])
    index.add(2, [key])
    assert list(index.candidates(ids)) == [1, 2]
    _, over = index.add(3, [key])
    assert over == [key_id(key)]
    assert list(index.candidates(ids)) == []
    assert index.remove(3, [key_id(key)]) == [key_id(key)]
    assert sorted(index.candidates(ids)) == [1, 2]
    index.remove(2, [key_id(key)])
    assert index.members(key_id(key)) == (1,)  # back to a bare id
    index.remove(1, [key_id(key)])
    assert index.members(key_id(key)) == ()


def test_per_kind_caps():
    index = BlockIndex(cap=100, caps={"mobile": 1})
    key = ("mobile", "+6493000000")
    ids, _ = index.add(1, [key])
    _, over = index.add(2, [key])
    assert over == [key_id(key)] and list(index.candidates(ids)) == []


def test_holder_keys_never_block():
    index = BlockIndex(cap=10)
    ids, _ = index.add(1, [("family", "smith")])
    index.add(2, [("family", "smith")])
    assert list(index.candidates(ids)) == []
    assert index.members(key_id(("family", "smith"))) == [1, 2]
