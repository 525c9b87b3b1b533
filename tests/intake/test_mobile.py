import random

import phonenumbers
import pytest

from services.intake.validation import normalise_mobile
from services.intake.validation.mobile import classify_nz_national


@pytest.mark.parametrize("raw, e164", [
    ("021 123 4567", "+64211234567"),
    ("0211234567", "+64211234567"),
    ("022-123-4567", "+64221234567"),
    ("027 123 4567", "+64271234567"),
    ("029 123 4567", "+64291234567"),
    ("(021) 123-4567", "+64211234567"),
    ("+64 21 123 4567", "+64211234567"),
    ("+64 (0)21 123 4567", "+64211234567"),
    ("+64211234567", "+64211234567"),
    ("0064 21 123 4567", "+64211234567"),
    ("64211234567", "+64211234567"),   # '+' eaten by a spreadsheet
    ("211234567", "+64211234567"),     # leading 0 eaten by a spreadsheet
    ("+61 412 345 678", "+61412345678"),  # overseas mobile, E.164
])
def test_valid_mobiles_normalise_to_e164(raw, e164):
    assert normalise_mobile(raw) == (e164, None)


@pytest.mark.parametrize("raw", ["09 523 4567", "04 499 1234", "+64 9 523 4567",
                                 "0800 123 456", "0508 123 456"])
def test_landlines_and_toll_free_are_not_mobiles(raw):
    assert normalise_mobile(raw) == (None, "mobile.not_a_mobile")


@pytest.mark.parametrize("raw", ["abc", "021 12345", "+", "0", "+64", "12", "021 123 4567 ext 2",
                                 "+44 7700 900123", "٠٢١١٢٣٤٥٦٧"])
def test_invalid_numbers(raw):
    assert normalise_mobile(raw) == (None, "mobile.invalid")


def test_overseas_landline_is_not_a_mobile():
    assert normalise_mobile("+44 20 7946 0958") == (None, "mobile.not_a_mobile")


def test_nz_fast_path_agrees_with_phonenumbers():
    """The fast path re-implements phonenumbers' NZ typing; prove they agree."""
    rnd = random.Random(7)
    prefixes = ["2", "20", "21", "22", "26", "27", "28", "29", "240", "3", "4", "6", "7",
                "9", "80", "800", "508", "50", "70", "83", "90", "1"]
    for _ in range(4000):
        national = rnd.choice(prefixes) + "".join(rnd.choice("0123456789")
                                                 for _ in range(rnd.randint(4, 9)))
        parsed = phonenumbers.parse("+64" + national, None)
        if not phonenumbers.is_valid_number(parsed):
            expected = "mobile.invalid"
        elif phonenumbers.number_type(parsed) in (phonenumbers.PhoneNumberType.MOBILE,
                                                  phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
            expected = None
        else:
            expected = "mobile.not_a_mobile"
        assert classify_nz_national(national) == expected, national
        got = normalise_mobile("0" + national)
        assert got[1] == expected, national
