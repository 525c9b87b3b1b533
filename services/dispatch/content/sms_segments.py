"""SMS segment counting (3GPP TS 23.038 GSM-7 default alphabet vs UCS-2).

Cost and delivery depend on the number of segments, so we count them exactly the way a
handset/SMSC splits a message:
- GSM-7: 160 septets single, 153 per part; extension-table characters take 2 septets and an
  escape pair is never split across parts.
- UCS-2 (anything outside GSM-7, e.g. macrons ā ē ī ō ū): 70 UTF-16 code units single, 67 per
  part; a surrogate pair is never split across parts.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum

# GSM 03.38 basic character set (the 128 code points, incl. LF and CR).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
) - {"\x1b"}  # ESC is the extension escape, not a printable character
# Extension table: each costs ESC + char = 2 septets.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


class SmsEncoding(StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True)
class SegmentCount:
    encoding: SmsEncoding
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    non_gsm_characters: frozenset[str]  # why the message went UCS-2 (empty for GSM-7)


def normalise(text: str) -> str:
    """NFC so that 'a' + combining macron counts (and is sent) as one character 'ā'."""
    return unicodedata.normalize("NFC", text)


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _gsm7_costs(text: str) -> list[int]:
    return [2 if ch in GSM7_EXTENSION else 1 for ch in text]


def _ucs2_costs(text: str) -> list[int]:
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _pack(costs: list[int], single: int, part: int) -> int:
    total = sum(costs)
    if total == 0:
        return 0
    if total <= single:
        return 1
    # Greedy fill: a multi-unit character (escape pair / surrogate pair) never straddles parts.
    parts, used = 1, 0
    for cost in costs:
        if used + cost > part:
            parts += 1
            used = 0
        used += cost
    return parts


def count_segments(text: str) -> SegmentCount:
    text = normalise(text)
    if is_gsm7(text):
        costs = _gsm7_costs(text)
        return SegmentCount(
            SmsEncoding.GSM7, sum(costs), _pack(costs, GSM7_SINGLE, GSM7_PART), frozenset()
        )
    costs = _ucs2_costs(text)
    offenders = frozenset(ch for ch in text if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION)
    return SegmentCount(
        SmsEncoding.UCS2, sum(costs), _pack(costs, UCS2_SINGLE, UCS2_PART), offenders
    )


# Typographic characters that sneak in from word processors and needlessly force UCS-2.
# Macrons are deliberately NOT here: names and te reo must be sent as written.
_DOWNGRADES = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u202f": " ",
}


def downgrade_typography(text: str) -> str:
    return "".join(_DOWNGRADES.get(ch, ch) for ch in normalise(text))
