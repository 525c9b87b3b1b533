"""Cluster-level coherence and the kinds of evidence issue 11 found missing: each test is one
kind (a false merge that must not happen, or a miss that must not)."""
import itertools

import pytest

from services.dedupe.resolver import Resolver
from tests.dedupe.resolver.conftest import make

HOME = {"address_line1": "14 Kōwhai Road", "postcode": "6011"}


def same_person(resolver, *records):
    return len({resolver.person_of(*r.key) for r in records}) == 1


def resolved_in_every_order(records):
    """(order, resolver) for each order the records can arrive in, the weights learnt as at
    release."""
    for order in itertools.permutations(records):
        r = Resolver()
        for record in order:
            r.add(record)
        r.learn_weights(levels=False)  # as at release
        yield order, r


def test_nickname_chains_stay_apart():
    # Bill ~ William ~ Liam: Liam, with his own mobile and email, is someone else.
    william = make("gp-1", given_names="William", family_name="Tane", date_of_birth="1990-02-03",
                   mobile="+64211000001", **HOME)
    bill = make("lab-1", given_names="Bill", family_name="Tane", date_of_birth="1990-02-03",
                mobile="+64211000001", **HOME)
    liam = make("gp-2", given_names="Liam", family_name="Tane", date_of_birth="1990-02-03",
                mobile="+64211000002", email="liam.tane@example.nz", **HOME)
    for order in ([william, bill, liam], [liam, william, bill], [bill, liam, william]):
        r = Resolver()
        for record in order:
            r.add(record)
        assert same_person(r, william, bill)
        assert not same_person(r, william, liam)
        assert not same_person(r, bill, liam)


def test_twins_sharing_a_middle_name_stay_apart():
    jack = make("gp-1", given_names="Jack Thomas", family_name="Smith", date_of_birth="2012-06-01", **HOME)
    oliver = make("gp-1", given_names="Oliver Thomas", family_name="Smith", date_of_birth="2012-06-01", **HOME)
    r = Resolver()
    r.add_many([jack, oliver])
    assert not same_person(r, jack, oliver)


def test_an_initial_matching_both_twins_joins_neither():
    james = make("gp-1", given_names="James", family_name="Tipene", date_of_birth="2012-06-01",
                 mobile="+64211000009", **HOME)
    john = make("gp-2", given_names="John", family_name="Tipene", date_of_birth="2012-06-01",
                mobile="+64211000009", **HOME)
    j = make("lab-1", given_names="J", family_name="Tipene", date_of_birth="2012-06-01",
             mobile="+64211000009", **HOME)
    r = Resolver()
    r.add_many([james, john, j])
    assert len(r.persons()) == 3
    assert r.review_items()


def test_initials_with_a_shared_contact_merge():
    full = make("gp-1", given_names="Paul Theodore", family_name="Priest", date_of_birth="1943-07-18",
                mobile="+64211000010")
    initials = make("lab-1", given_names="P. T.", family_name="Priest", date_of_birth="1943-07-18",
                    mobile="+64211000010")
    r = Resolver()
    r.add_many([full, initials])
    assert same_person(r, full, initials)


def _namesakes_in_part(given: str, family: str, n: int = 16) -> list:
    """n distinct people sharing the given name (other surnames) and n sharing the surname
    (other given names), so neither name alone is rare."""
    others = [make("gp-9", given_names=given, family_name=f"Fam{chr(97 + i)}x{chr(97 + i)}",
                   date_of_birth=f"19{50 + i}-01-{10 + i}") for i in range(n)]
    others += [make("gp-9", given_names=f"Giv{chr(97 + i)}y{chr(97 + i)}", family_name=family,
                    date_of_birth=f"19{50 + i}-02-{10 + i}") for i in range(n)]
    return others


def test_a_name_only_pair_with_a_consistent_middle_initial_merges():
    # Census-style: a wage record (no date of birth) gives the middle initial, a benefits
    # record (no address) spells it out. First name and surname are each common, so they
    # alone stay short of the unplaced threshold; the agreeing initial (~3.5 bits) is what
    # carries the pair, and the record attaches to the one person it fits.
    wage = make("w2-1", given_names="Janine L", family_name="Okafor", date_of_birth=None,
                address_line1="12 Rimu Street")
    benefits = make("ss-1", given_names="Janine Louise", family_name="Okafor", date_of_birth="1971-05-06")
    r = Resolver()
    r.add_many([*_namesakes_in_part("Janine", "Okafor"), wage, benefits])
    assert same_person(r, wage, benefits)


def test_a_name_only_pair_with_another_middle_initial_stays_apart():
    wage = make("w2-1", given_names="Janine K", family_name="Okafor", date_of_birth=None,
                address_line1="12 Rimu Street")
    benefits = make("ss-1", given_names="Janine Louise", family_name="Okafor", date_of_birth="1971-05-06")
    r = Resolver()
    r.add_many([*_namesakes_in_part("Janine", "Okafor"), wage, benefits])
    assert not same_person(r, wage, benefits)


def _wages(*names):
    # W-2s (no date of birth) at one address, each spelling the middle name its own way,
    # so no two are exact copies.
    return [make(f"w2-{i}", given_names=n, family_name="Okafor", date_of_birth=None,
                 address_line1="12 Rimu Street") for i, n in enumerate(names)]


def test_one_persons_wage_records_attach_together():
    # Census-style: two W-2s and a benefits record (no address). Each W-2 matches the
    # benefits record and the other W-2, so alone each points at two groups; as a set
    # (they share the address) they point at one person.
    benefits = make("ss-1", given_names="Janine Louise", family_name="Okafor", date_of_birth="1971-05-06")
    wages = _wages("Janine L", "Janine Louise")
    r = Resolver()
    r.add_many([*_namesakes_in_part("Janine", "Okafor"), benefits, *wages])
    assert same_person(r, benefits, *wages)


def test_a_namesakes_wage_record_at_another_address_does_not_join_through_the_set():
    benefits = make("ss-1", given_names="Janine Louise", family_name="Okafor", date_of_birth="1971-05-06")
    wages = _wages("Janine L", "Janine Louise")
    namesake = make("w2-9", given_names="Janine L", family_name="Okafor", date_of_birth=None,
                    address_line1="3 Kauri Road")
    r = Resolver()
    r.add_many([*_namesakes_in_part("Janine", "Okafor"), benefits, *wages, namesake])
    assert same_person(r, benefits, *wages)
    assert not same_person(r, benefits, namesake)


def test_wage_records_pointing_at_two_namesakes_join_neither():
    # The same two W-2s, but two complete Janine L. Okafors born on different days: the set
    # reaches two persons, so it bridges nobody.
    first = make("ss-1", given_names="Janine Louise", family_name="Okafor", date_of_birth="1971-05-06")
    second = make("ss-1", given_names="Janine Lee", family_name="Okafor", date_of_birth="1988-11-23")
    wages = _wages("Janine L", "Janine L.")
    r = Resolver()
    r.add_many([*_namesakes_in_part("Janine", "Okafor"), first, second, *wages])
    assert not same_person(r, first, second)
    for wage in wages:
        assert not same_person(r, wage, first) and not same_person(r, wage, second)


def test_surname_change_merges_with_strong_other_evidence():
    # Full given names (middle name too) and date of birth agree; only the surname changed.
    maiden = make("gp-1", given_names="Aroha Mere", family_name="Ngata", date_of_birth="1985-09-17")
    married = make("hospital-1", given_names="Aroha Mere", family_name="Wilson", date_of_birth="1985-09-17")
    r = Resolver()
    r.add_many([maiden, married])
    assert same_person(r, maiden, married)


def test_surname_change_alone_is_not_enough():
    a = make("gp-1", given_names="Aroha", family_name="Ngata", date_of_birth="1985-09-17")
    b = make("gp-2", given_names="Aroha", family_name="Wilson", date_of_birth="1985-09-17")
    r = Resolver()
    r.add_many([a, b])
    assert not same_person(r, a, b)


def test_a_wrong_digit_in_the_year_merges_when_names_and_a_contact_agree():
    a = make("gp-1", given_names="Hone", family_name="Kīngi", date_of_birth="1971-04-22",
             mobile="+64211000004")
    b = make("lab-1", given_names="Hone", family_name="Kingi", date_of_birth="1977-04-22",
             mobile="+64211000004")
    # The year off by one across a decade: two digits, one slip.
    c = make("gp-2", given_names="Tui", family_name="Kingi", date_of_birth="1989-04-22",
             email="tui@example.nz")
    d = make("portal-1", given_names="Tui", family_name="Kingi", date_of_birth="1990-04-22",
             email="tui@example.nz")
    r = Resolver()
    r.add_many([a, b, c, d])
    assert same_person(r, a, b)
    assert same_person(r, c, d)


def test_placeholder_names_agree_with_nothing():
    # Two newborns registered as 'Baby Ngata' on the same day at the same address, each
    # with its own NHI: the placeholder is not a shared given name.
    a = make("hospital-1", nhi="ZZZ0016", given_names="Baby", family_name="Ngata",
             date_of_birth="2026-05-05", **HOME)
    b = make("hospital-1", nhi="ZAC5361", given_names="Baby", family_name="Ngata",
             date_of_birth="2026-05-05", **HOME)
    unknown_1 = make("gp-1", given_names="Mere", family_name="Unknown", date_of_birth="1950-01-01")
    unknown_2 = make("gp-2", given_names="Mere", family_name="No Last Name", date_of_birth="1950-01-01")
    r = Resolver()
    r.add_many([a, b])
    assert not same_person(r, a, b)
    evidence = r.explain_pair(a.key, b.key)
    assert {p.field: p.level for p in evidence.parts}["given"] == "missing"
    r.add_many([unknown_1, unknown_2])
    assert {p.field: p.level for p in r.explain_pair(unknown_1.key, unknown_2.key).parts}["family"] == "missing"


def test_a_named_record_joins_its_placeholder_record():
    named = make("gp-1", nhi="ZZZ0016", given_names="Kauri", family_name="Ngata", date_of_birth="2026-05-05", **HOME)
    baby = make("hospital-1", nhi="ZZZ0016", given_names="Baby", family_name="Ngata",
                date_of_birth="2026-05-05", **HOME)
    r = Resolver()
    r.add_many([named, baby])
    assert same_person(r, named, baby)


def test_sparse_records_join_the_one_person_they_point_to():
    full = make("gp-1", given_names="Rēweti", family_name="Tautahi", date_of_birth="1962-11-30",
                mobile="+64211000005", **HOME)
    name_and_mobile = make("portal-1", given_names="Reweti", family_name="Tautahi", date_of_birth=None,
                           mobile="+64211000005")
    name_and_dob = make("lab-1", given_names="Reweti", family_name="Tautahi", date_of_birth="1962-11-30")
    r = Resolver()
    r.add_many([full, name_and_mobile, name_and_dob])
    assert same_person(r, full, name_and_mobile, name_and_dob)


def test_given_and_family_swapped_with_a_typo_still_meet():
    # Nothing but the date of birth and the names' initials to meet on.
    a = make("gp-1", given_names="Wei", family_name="Zhang", date_of_birth="1979-08-08")
    b = make("lab-1", given_names="Zhnag", family_name="Wei", date_of_birth="1979-08-08")
    r = Resolver()
    r.add(a)
    r.add(b)
    assert same_person(r, a, b)


def test_same_nhi_with_names_agreeing_overrides_a_wrong_date_of_birth():
    a = make("gp-1", nhi="ZZZ0016", given_names="Nicole", family_name="McKinnon", date_of_birth="1971-05-20")
    b = make("lab-1", nhi="ZZZ0016", given_names="Nicole", family_name="McKinnon", date_of_birth="1917-02-05")
    r = Resolver()
    r.add_many([a, b])
    assert same_person(r, a, b)


def test_an_undated_record_with_a_typo_joins_the_person_at_its_address():
    dated = make("gp-1", given_names="Scott Michael", family_name="Jensen", date_of_birth="1986-02-21",
                 address_line1="426 Buck Court", postcode="6011")
    undated = make("lab-1", given_names="Scot", family_name="Jensen", date_of_birth=None,
                   address_line1="426 Buck Ct", postcode="6011")
    r = Resolver()
    r.add_many([dated, undated])
    assert same_person(r, dated, undated)


# ---------------------------------------------------------------- issue 11, round 3


def test_a_record_by_a_middle_name_both_twins_share_joins_neither():
    # Twins Jack Thomas and Oliver Thomas; 'Thomas' (one of them by his middle name) fits
    # both, so it is a question, not a coin toss by weight.
    jack = make("gp-1", given_names="Jack Thomas", family_name="Rāwiri", date_of_birth="2011-03-09", **HOME)
    oliver = make("gp-1", given_names="Oliver Thomas", family_name="Rāwiri", date_of_birth="2011-03-09",
                  **HOME)
    thomas = make("portal-1", given_names="Thomas", family_name="Rawiri", date_of_birth="2011-03-09",
                  **HOME)
    r = Resolver()
    r.add_many([jack, oliver, thomas])
    assert len(r.persons()) == 3
    assert any({i.a, i.b} & {thomas.key} for i in r.review_items())


def test_a_record_by_its_middle_name_joins_the_one_person_it_fits():
    full = make("gp-1", given_names="Jack Thomas", family_name="Rāwiri", date_of_birth="2011-03-09", **HOME)
    by_middle = make("portal-1", given_names="Thomas", family_name="Rawiri", date_of_birth="2011-03-09",
                     **HOME)
    r = Resolver()
    r.add(by_middle)
    r.add(full)
    assert same_person(r, full, by_middle)


def test_an_undated_namesake_with_his_own_contacts_stays_apart():
    # Father and son of one name at one address; the son's lab record has no date of
    # birth, and each has his own mobile and email.
    father = make("gp-1", given_names="Tama", family_name="Parata", date_of_birth="1961-07-02",
                  mobile="+64211000021", email="tama.p@example.nz", **HOME)
    son = make("lab-1", given_names="Tama", family_name="Parata", date_of_birth=None,
               mobile="+64211000022", email="tama.parata@example.nz", **HOME)
    r = Resolver()
    r.add_many([father, son])
    assert not same_person(r, father, son)
    assert r.explain_pair(father.key, son.key).decision == "non-match"


def test_a_middle_name_used_as_given_with_other_contacts_stays_apart():
    # 'Thomas' with his own mobile and email is not 'Jack Thomas' going by his middle name.
    jack = make("gp-1", given_names="Jack Thomas", family_name="Rāwiri", date_of_birth="2011-03-09",
                mobile="+64211000031", email="jack.r@example.nz", **HOME)
    thomas = make("portal-1", given_names="Thomas", family_name="Rawiri", date_of_birth="2011-03-09",
                  mobile="+64211000032", email="thomas.r@example.nz", **HOME)
    r = Resolver()
    r.add_many([jack, thomas])
    assert not same_person(r, jack, thomas)


def test_a_parent_named_first_for_the_child_with_his_own_contacts_joins_no_order():
    # From the 20k incident run's one notice over two people (1 December, before round 3): a
    # parent's portal account with no NHI and no date of birth, 'Tui Ioane' (the child's name
    # first), same family name and dwelling, his own mobile and email. Against the child's
    # records given=exact, family=exact, address=exact (+23) outweighed the differing mobile
    # and email (-0.5 each): a weak match to every one of them, so he joined the child and the
    # child's notice covered him. Mobile and email both differing on an undated pair is now a
    # conflict; the one record without an email he still weakly matches is not enough.
    home = {"address_line1": "4/27 Tōtara Avenue", "postcode": "4010"}
    child = [
        make("gp-1", nhi="ZKQ3151", given_names="Tui", family_name="Leota", date_of_birth="2016-04-11",
             mobile="+64211000101", email="tui.leota@example.nz", **home),
        make("lab-1", nhi="ZKQ3151", given_names="Tui", family_name="Leota", date_of_birth="2016-04-11",
             mobile="+64211000102", **home),
        make("portal-1", given_names="Tui", family_name="Leota", date_of_birth="2016-04-11",
             mobile="+64211000103", email="tui.l@example.nz", **home),
    ]
    parent = make("portal-1", given_names="Tui Ioane", family_name="Leota", date_of_birth=None,
                  mobile="+64211000109", email="ioane.leota@example.nz", **home)
    for order, r in resolved_in_every_order([*child, parent]):
        assert same_person(r, *child), order
        assert not same_person(r, child[0], parent), order


# The wrong merge of the session-10 20k run (issue 11). Making this pair a review item alone
# cost precision on the independent set (seed 101): an undated record then had one weak edge
# left instead of two and was attached to another person; the review pair now still counts
# against attaching (test below).
def test_a_parent_named_first_for_the_child_with_his_own_mobile_joins_no_lone_record():
    # The round-3 case with the child held once: one record, a mobile of its own and no
    # email. Only one contact can be compared, so mobile AND email never both differ; given
    # exact +7.5, family exact +8.5, address exact +7 then outweighed the differing mobile
    # (-0.5) into a weak match (22 >= 18) with nothing else for the weak edge to doubt, and
    # the parent joined the child without a review item. Undated, no shared NHI or contact,
    # and the one contact both hold differs: the pair is a question, not a merge.
    home = {"address_line1": "9 Rimu Street", "postcode": "4410"}
    child = make("gp-1", nhi="ZKQ3268", given_names="Sefo", family_name="Faleolo",
                 date_of_birth="2015-09-02", mobile="+64211000201", **home)
    parent = make("portal-1", given_names="Sefo Ioane", family_name="Faleolo", date_of_birth=None,
                  mobile="+64211000209", email="ioane.faleolo@example.nz", **home)
    for order, r in resolved_in_every_order([child, parent]):
        assert not same_person(r, child, parent), order
        pairs = {frozenset((i.a, i.b)) for i in r.review_items()}
        assert frozenset((child.key, parent.key)) in pairs, order


def test_an_undated_record_whose_second_lead_is_a_review_still_attaches_to_neither():
    # Seed 101's "Yang He" (session 10): undated, a weak match to a namesake in his postcode and
    # another to a namesake at his own address who holds another mobile. The second became a review pair
    # (the test above); with only match edges counted, the one weak edge left then attached
    # him to the first namesake. A review pair with conflicting evidence still counts as a
    # place his edges lead, so he stays apart and both questions go to review.
    elsewhere = make("gp-1", given_names="Yang", family_name="He", date_of_birth="1961-02-17",
                     address_line1="40 Kauri Road", postcode="0612")
    at_home = make("lab-1", given_names="Yang", family_name="He", date_of_birth="1994-07-30",
                   mobile="+64211000302", address_line1="12 Totara Street", postcode="0612")
    undated = make("portal-1", given_names="Yang", family_name="He", date_of_birth=None,
                   mobile="+64211000301", address_line1="12 Totara Street", postcode="0612")
    for order, r in resolved_in_every_order([elsewhere, at_home, undated]):
        assert r.explain_pair(undated.key, elsewhere.key).decision == "match", order
        assert r.explain_pair(undated.key, at_home.key).decision == "review", order
        assert not same_person(r, undated, elsewhere), order
        assert not same_person(r, undated, at_home), order


# Known wrong merge, not fixed (issue 11, session 11). Refusing a weak join that puts a
# contact-doubt pair in one person fixes it, but cost NZ gen 20k recall 0.9753 -> 0.9741 and
# review 16.4 -> 17.1 per 1,000 (people who change mobiles). Strict: the xfail comes off
# when a change fixes it.
@pytest.mark.xfail(strict=True, reason="the weak join to the child's contact-less record is kept")
def test_an_undated_parent_joins_no_child_one_of_whose_records_holds_another_mobile():
    # The wrong merge above with the child held twice, one record without contacts: the
    # parent's weak edge to that record leads to one person only, but the child's other
    # record holds another mobile (a review pair with the parent). Every member should
    # count: a weak join never putting such a pair in one person.
    home = {"address_line1": "9 Rimu Street", "postcode": "4410"}
    child = [
        make("gp-1", nhi="ZKQ3268", given_names="Sefo", family_name="Faleolo",
             date_of_birth="2015-09-02", mobile="+64211000201", **home),
        make("lab-1", nhi="ZKQ3268", given_names="Sefo", family_name="Faleolo",
             date_of_birth="2015-09-02", **home),
    ]
    parent = make("portal-1", given_names="Sefo Ioane", family_name="Faleolo", date_of_birth=None,
                  mobile="+64211000209", email="ioane.faleolo@example.nz", **home)
    for order, r in resolved_in_every_order([*child, parent]):
        assert same_person(r, *child), order
        assert r.explain_pair(parent.key, child[1].key).decision == "match", order
        assert not same_person(r, child[0], parent), order
        assert r.review_items(), order
