import pytest

from services.intake.validation import normalise_email


@pytest.mark.parametrize("raw, clean", [
    ("Aroha.Test@Example.CO.NZ", "Aroha.Test@example.co.nz"),  # only the domain is folded
    ("a+tag@example.com", "a+tag@example.com"),
    ("mere@māori.example.nz", "mere@māori.example.nz"),
    ("j@xn--mori-qsa.nz", "j@xn--mori-qsa.nz"),
])
def test_valid(raw, clean):
    assert normalise_email(raw) == (clean, None)


@pytest.mark.parametrize("raw", ["a@b", "a@b.c", "x@@y.nz", "a b@c.nz", "a@b..nz", "a@-b.nz",
                                 "a.@b.nz", "Jane <j@x.nz>", "@x.nz", "x@.nz", "a@b.nz.",
                                 "a@localhost", "plainaddress", "a\u00a0b@x.nz",
                                 "x" * 65 + "@example.nz"])
def test_invalid(raw):
    assert normalise_email(raw) == (None, "email.invalid")


def test_limits_are_checked_again_after_lower_casing():
    # "İ" lower-cases to two characters: 207 as sent, 347 once the domain is folded.
    grown = "aroha.testperson@" + ".".join(["İ" * 10] * 14) + ".nz"
    assert len(grown) <= 254
    assert normalise_email(grown) == (None, "email.invalid")
    assert normalise_email("a@" + ".".join(["İ" * 10] * 11) + ".nz")[1] is None  # 242 folded
