import pytest

from services.intake.validation import check_nhi, is_valid_nhi, normalise_nhi

# Check-digit vectors from DOMAIN.md §2 (non-Z values are used only as vectors).
VALID_OLD = ["ZZZ0016", "ZZZ0024", "ZAC5361", "JBX3656", "EPT6335", "CGC2720"]
INVALID_OLD = ["ZZZ0044", "DAB8233", "ZZZ0017"]
VALID_NEW = ["ZZZ00AC", "ZBN77VL", "ZSC21TN", "ZVU27KE", "ZHW58CV"]
INVALID_NEW = ["ZZZ00AA", "ZZZ00AX", "ZHW58CN"]  # last two pass the wrong mod-24 rule


@pytest.mark.parametrize("nhi", VALID_OLD + VALID_NEW)
def test_valid_nhis_pass(nhi):
    assert check_nhi(nhi) is None
    assert is_valid_nhi(nhi.lower())


@pytest.mark.parametrize("nhi", INVALID_OLD + INVALID_NEW)
def test_invalid_check_character_fails(nhi):
    assert check_nhi(nhi) == "nhi.check_failed"


@pytest.mark.parametrize("nhi", ["", "ZZZ001", "ZZZ00166", "ZIZ0016", "ZOZ0016",
                                 "1ZZ0016", "ZZZ0A16", "ZZZ00A1", "ZZZ00AI", "ZZZ-0016"])
def test_malformed(nhi):
    assert check_nhi(nhi) == "nhi.malformed"


def test_old_format_remainder_zero_is_invalid():
    # When the weighted sum is divisible by 11 no check digit is valid.
    from services.common.nhi import LETTERS, weighted_sum
    prefix = next(a + b + c + "000" for a in LETTERS for b in LETTERS for c in LETTERS
                  if weighted_sum(a + b + c + "000") % 11 == 0)
    assert all(check_nhi(prefix + str(d)) == "nhi.check_failed" for d in range(10))


def test_new_format_check_letter_is_never_z():
    from services.common.nhi import LETTERS
    for a in "ZY":
        for n in range(100):
            body = f"ZZ{a}{n:02d}A"
            letters = [c for c in LETTERS if check_nhi(body + c) is None]
            assert len(letters) == 1 and letters[0] != "Z"


def test_normalise_upper_cases_and_drops_spaces():
    assert normalise_nhi(" zzz 0016 ".strip()) == "ZZZ0016"
