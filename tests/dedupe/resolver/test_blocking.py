from services.dedupe.resolver.blocking import BlockIndex, index_keys, key_id
from tests.dedupe.resolver.conftest import prep


def test_swapped_names_share_a_names_block():
    a = index_keys(prep(given_names="Wei", family_name="Zhang"))
    b = index_keys(prep(given_names="Zhang", family_name="Wei"))
    assert any(k[0] == "names" for k in set(a) & set(b))


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


def test_holder_keys_never_block():
    index = BlockIndex(cap=10)
    ids, _ = index.add(1, [("family", "smith")])
    index.add(2, [("family", "smith")])
    assert list(index.candidates(ids)) == []
    assert index.members(key_id(("family", "smith"))) == [1, 2]
