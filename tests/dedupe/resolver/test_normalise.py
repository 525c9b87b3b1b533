from datetime import date

from services.common.nhi import valid_nhi
from services.dedupe.resolver.normalise import (
    address_tokens,
    email_key,
    family_tokens,
    fold,
    mobile_key,
    name_tokens,
    parse_date,
    postcode_key,
)


def test_fold_drops_case_and_macrons():
    assert fold("Māui") == "maui"
    assert fold("NGĀWAKA") == "ngawaka"
    assert fold("Nguyễn") == "nguyen"


def test_macron_and_double_vowel_spellings_meet():
    assert name_tokens("Māori") == name_tokens("Maaori") == name_tokens("MAORI") == ("maori",)
    assert name_tokens("Tūī") == name_tokens("Tuui") == name_tokens("Tui")


def test_hyphenated_and_multiple_names_split():
    assert name_tokens("Te Whata-Ngata") == ("te", "whata", "ngata")
    assert name_tokens("O'Brien") == ("obrien",)
    assert name_tokens("  ") == ()
    assert name_tokens(None) == ()


def test_family_tokens_drop_particles_but_keep_a_lone_one():
    assert family_tokens("Te Whata") == ("whata",)
    assert family_tokens("van der Berg") == ("berg",)
    assert family_tokens("Te") == ("te",)


def test_valid_nhi_old_and_new_formats():
    for good in ("ZZZ0016", "ZAC5361", "ZZZ00AC", "ZBN77VL", "zzz 0024"):
        assert valid_nhi(good) is not None
    for bad in ("ZZZ0044", "ZZZ0017", "ZZZ00AA", "ZZZ00AX", "ZHW58CN", "ZZZ001", None, ""):
        assert valid_nhi(bad) is None


def test_mobile_key_strips_spacing_only():
    assert mobile_key("+64 21 123 4567") == "+64211234567"
    assert mobile_key("021 123 4567") is None  # not E.164: intake's job
    assert mobile_key(None) is None


def test_email_key_lowercases_and_drops_plus_tag():
    assert email_key("Aroha.Ngata+clinic@Example.CO.NZ") == "aroha.ngata@example.co.nz"
    assert email_key("not-an-email") is None
    assert email_key("a@localhost") is None


def test_address_tokens_normalise_street_words_and_units():
    assert address_tokens("Flat 2, 14 Kōwhai Road") == ("2", "14", "kowhai", "rd")
    assert address_tokens("2/14 Kowhai Rd") == ("2", "14", "kowhai", "rd")
    assert address_tokens(None) == ()


def test_postcode_and_date():
    assert postcode_key("6011") == "6011"
    assert postcode_key("601") is None
    assert parse_date("1980-03-04") == date(1980, 3, 4)
    assert parse_date("1980-02-30") is None
