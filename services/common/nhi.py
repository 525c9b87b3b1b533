"""National Health Index numbers (DOMAIN.md §2; HISO 10046:2023): the one implementation of the
check character, used by intake's validation, the resolver and the test-data generators.

Two formats are live: old AAANNNC (mod 11 check digit) and, for NHIs issued from
1 Oct 2025, AAANNAC (mod 23 check letter). Letters skip I and O.
"""
from __future__ import annotations

import re

LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # A=1 ... Z=24, no I or O
_VALUE = {c: i for i, c in enumerate(LETTERS, start=1)} | {str(d): d for d in range(10)}

_OLD = re.compile(r"[A-HJ-NP-Z]{3}[0-9]{4}")
_NEW = re.compile(r"[A-HJ-NP-Z]{3}[0-9]{2}[A-HJ-NP-Z]{2}")


def weighted_sum(nhi: str) -> int:
    """Characters 1–6 weighted 7,6,5,4,3,2."""
    v = _VALUE
    return (7 * v[nhi[0]] + 6 * v[nhi[1]] + 5 * v[nhi[2]]
            + 4 * v[nhi[3]] + 3 * v[nhi[4]] + 2 * v[nhi[5]])


def check_character(first_six: str) -> str | None:
    """The check character that completes `first_six` (either format), or None when no check
    character is valid (old format, remainder 0)."""
    total = weighted_sum(first_six)
    if first_six[5].isdigit():  # old format AAANNN + digit
        r = total % 11
        if r == 0:
            return None
        c = 11 - r
        return str(0 if c == 10 else c)
    return LETTERS[23 - total % 23 - 1]  # c is 1..23: A..Y, never Z


def normalise_nhi(raw: str) -> str:
    """Upper-case and drop spaces; agencies often print NHIs as 'ZZZ 0016'."""
    return raw.replace(" ", "").upper()


def check_nhi(nhi: str) -> str | None:
    """Return None if `nhi` (already normalised) is valid, else a problem code."""
    if len(nhi) == 7 and (_OLD.fullmatch(nhi) or _NEW.fullmatch(nhi)):
        return None if check_character(nhi[:6]) == nhi[6] else "nhi.check_failed"
    return "nhi.malformed"


def is_valid_nhi(raw: str) -> bool:
    return check_nhi(normalise_nhi(raw)) is None


def valid_nhi(raw: str | None) -> str | None:
    """The normalised NHI, or None when it is absent, malformed or fails its check character."""
    if not raw:
        return None
    nhi = normalise_nhi(raw)
    return nhi if check_nhi(nhi) is None else None
