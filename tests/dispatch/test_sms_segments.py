import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dispatch.content.sms_segments import (
    SmsEncoding,
    count_segments,
    downgrade_typography,
)


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", SmsEncoding.GSM7, 0, 0),
        ("a" * 160, SmsEncoding.GSM7, 160, 1),
        ("a" * 161, SmsEncoding.GSM7, 161, 2),
        ("a" * 306, SmsEncoding.GSM7, 306, 2),
        ("a" * 307, SmsEncoding.GSM7, 307, 3),
        ("€" * 80, SmsEncoding.GSM7, 160, 1),  # extension chars cost 2
        ("€" * 80 + "a", SmsEncoding.GSM7, 161, 2),
        ("[]{}", SmsEncoding.GSM7, 8, 1),
        ("ā" * 70, SmsEncoding.UCS2, 70, 1),
        ("ā" * 71, SmsEncoding.UCS2, 71, 2),
        ("ā" + "a" * 133, SmsEncoding.UCS2, 134, 2),
        ("ā" + "a" * 134, SmsEncoding.UCS2, 135, 3),
        ("😀" * 35, SmsEncoding.UCS2, 70, 1),  # astral chars are 2 UTF-16 units
    ],
)
def test_counts(text, encoding, units, segments):
    c = count_segments(text)
    assert (c.encoding, c.units, c.segments) == (encoding, units, segments)


def test_one_macron_switches_whole_message_to_ucs2():
    plain = "Kia ora Maui, " + "x" * 100
    assert count_segments(plain).segments == 1
    withmacron = plain.replace("Maui", "Māui")
    c = count_segments(withmacron)
    assert c.encoding is SmsEncoding.UCS2
    assert c.segments == 2
    assert c.non_gsm_characters == {"ā"}


def test_combining_macron_is_normalised_to_one_character():
    decomposed = "Ma\u0304ui"
    assert count_segments(decomposed).units == 4


def test_escape_pair_never_split_across_parts():
    # 152 plain + '€' (2) would straddle the 153 boundary, so the euro moves to part 2.
    text = "a" * 152 + "€" + "a" * 152
    c = count_segments(text)
    assert c.units == 306
    assert c.segments == 3


def test_surrogate_pair_never_split_across_parts():
    text = "ā" * 66 + "😀" + "ā" * 66
    assert count_segments(text).segments == 3


def test_gsm_specials_that_look_non_ascii_stay_gsm():
    assert count_segments("£¥èéùìòÇØøÅåÆæßÉÄÖÑÜ§¿äöñüà@").encoding is SmsEncoding.GSM7


def test_downgrade_typography_keeps_macrons():
    assert downgrade_typography("It’s “here” – Māori…") == 'It\'s "here" - Māori...'


@given(st.text(alphabet="abc€[]", max_size=600))
def test_gsm_segments_bound_units(text):
    c = count_segments(text)
    if c.units <= 160:
        assert c.segments == (1 if c.units else 0)
    else:
        # A part may hold 152 when an escape pair would straddle the boundary.
        assert (c.segments - 1) * 152 < c.units <= c.segments * 153
