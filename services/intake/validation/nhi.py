"""National Health Index number checks (DOMAIN.md §2; HISO 10046:2023).

Two formats are live: old AAANNNC (mod 11 check digit) and, for NHIs issued from
1 Oct 2025, AAANNAC (mod 23 check letter). Letters skip I and O.
"""
from __future__ import annotations

import re

_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # A=1 ... Z=24, no I or O
_VALUE = {c: i for i, c in enumerate(_LETTERS, start=1)} | {str(d): d for d in range(10)}
_WEIGHTS = (7, 6, 5, 4, 3, 2)

_OLD = re.compile(r"[A-HJ-NP-Z]{3}[0-9]{4}")
_NEW = re.compile(r"[A-HJ-NP-Z]{3}[0-9]{2}[A-HJ-NP-Z]{2}")


def _weighted_sum(nhi: str) -> int:
    v = _VALUE
    return (7 * v[nhi[0]] + 6 * v[nhi[1]] + 5 * v[nhi[2]]
            + 4 * v[nhi[3]] + 3 * v[nhi[4]] + 2 * v[nhi[5]])


def _old_check_ok(nhi: str) -> bool:
    r = _weighted_sum(nhi) % 11
    if r == 0:
        return False
    c = 11 - r
    return (0 if c == 10 else c) == int(nhi[6])


def _new_check_ok(nhi: str) -> bool:
    # c is 1..23, so the check letter is A..Y; Z can never be a check letter.
    c = 23 - _weighted_sum(nhi) % 23
    return _LETTERS[c - 1] == nhi[6]


def normalise_nhi(raw: str) -> str:
    """Upper-case and drop spaces; agencies often print NHIs as 'ZZZ 0016'."""
    return raw.replace(" ", "").upper()


def check_nhi(nhi: str) -> str | None:
    """Return None if `nhi` (already normalised) is valid, else a problem code."""
    if len(nhi) == 7:
        if _OLD.fullmatch(nhi):
            return None if _old_check_ok(nhi) else "nhi.check_failed"
        if _NEW.fullmatch(nhi):
            return None if _new_check_ok(nhi) else "nhi.check_failed"
    return "nhi.malformed"


def is_valid_nhi(raw: str) -> bool:
    return check_nhi(normalise_nhi(raw)) is None
