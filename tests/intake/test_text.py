import pytest

from services.intake.validation import clean_text


def test_nfc_composes_decomposed_macrons():
    assert clean_text("Ma\u0304ui", 200) == ("Māui", None)
    assert clean_text("  Ma\u0304ori  ", 200) == ("Māori", None)


def test_trims_and_empty_is_missing():
    assert clean_text("  Aroha\r", 200) == ("Aroha", None)
    assert clean_text("   ", 200) == (None, None)
    assert clean_text("", 200) == (None, None)


@pytest.mark.parametrize("raw", ["Aro\x00ha", "Aro\tha", "Aro\nha", "Aro\x7fha", "Aro\x85ha",
                                 "Te\x1bWhare"])
def test_control_characters_rejected(raw):
    assert clean_text(raw, 200) == (None, "text.control_characters")


def test_lone_surrogate_rejected():
    assert clean_text("Aro\ud800ha", 200) == (None, "text.invalid_unicode")


def test_length_limit_counts_characters_after_nfc():
    assert clean_text("a" * 200, 200) == ("a" * 200, None)
    assert clean_text("a" * 201, 200) == (None, "field.too_long")
    assert clean_text("a\u0304" * 200, 200)[1] is None  # 400 code points, 200 after NFC


def test_non_breaking_space_is_kept():
    assert clean_text("Te\u00a0Whare", 200) == ("Te\u00a0Whare", None)
