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
