from datetime import date

from services.dedupe.resolver.comparisons import compare
from services.dedupe.resolver.config import ResolverConfig
from services.dedupe.resolver.scoring import MATCH, NON_MATCH, REVIEW, weigh
from tests.dedupe.resolver.conftest import prep

CONFIG = ResolverConfig()


def score(a, b, bucket_of=lambda field, value: 0):
    return weigh(compare(a, b), a, bucket_of, CONFIG)


def test_names_and_dob_exact_is_a_match_and_explained():
    s = score(prep(given_names="Aroha", family_name="Ngata"), prep(given_names="Aroha", family_name="Ngata"))
    assert s.decision == MATCH
    assert s.weight == sum(p.weight for p in s.parts)
    assert {p.field for p in s.parts} == {"nhi", "given", "middle", "family", "dob", "mobile", "email", "address"}


def test_same_nhi_alone_with_conflicting_names_goes_to_review():
    s = score(prep(nhi="ZZZ0016", given_names="Aroha", date_of_birth=date(1990, 1, 1)),
              prep(nhi="ZZZ0016", given_names="Hine", date_of_birth=date(1970, 5, 5)))
    assert s.decision == REVIEW


def test_uncertain_pair_is_review_not_match():
    # Loose given name and one-digit DOB: possible, not proven.
    s = score(prep(given_names="Jhn", family_name="Smyth", date_of_birth=date(1980, 3, 5)),
              prep(given_names="John", family_name="Smith", date_of_birth=date(1980, 3, 4)))
    assert s.decision in (REVIEW, NON_MATCH)
    assert s.decision != MATCH


def test_contact_weight_is_capped_for_households():
    a = prep(given_names="Aroha", mobile="+64211111111", email="home@x.nz", address_line1="1 Rimu St")
    b = prep(given_names="Hine", mobile="+64211111111", email="home@x.nz", address_line1="1 Rimu St")
    s = score(a, b)
    contact = sum(p.weight for p in s.parts if p.field in ("mobile", "email", "address"))
    assert contact <= CONFIG.contact_cap
    assert s.decision == NON_MATCH  # different given names: household guard


def test_common_value_weighs_less():
    a = prep(mobile="+64211111111")
    b = prep(mobile="+64211111111")
    rare = score(a, b, lambda f, v: 0)
    common = score(a, b, lambda f, v: 8 if f == "mobile" else 0)
    assert rare.weight > common.weight
