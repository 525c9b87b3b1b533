"""Mobile numbers: normalise to E.164, keep only numbers that can take an SMS.

`phonenumbers` is the reference, but one parse costs ~60 µs, several times intake's whole
per-record budget. NZ numbers (nearly all of a feed) take a fast path that applies
phonenumbers' own NZ metadata patterns, in the order its type check uses; other
countries fall back to the library. tests/intake/test_mobile.py checks the fast path
against the library, so a phonenumbers upgrade that changes NZ ranges is caught.
"""
from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType

_NZ = PhoneMetadata.metadata_for_region("NZ")


def _desc(d):
    if d is None or d.national_number_pattern is None:
        return None
    return re.compile(d.national_number_pattern), frozenset(d.possible_length or ())


def _matches(desc, national: str) -> bool:
    pattern, lengths = desc
    return len(national) in lengths and pattern.fullmatch(national) is not None


_GENERAL = _desc(_NZ.general_desc)
# Same precedence as phonenumbers' number_type: a number matching an earlier type is
# not a mobile even if the mobile pattern also matches.
_NOT_MOBILE = [
    x for x in (
        _desc(_NZ.premium_rate), _desc(_NZ.toll_free), _desc(_NZ.shared_cost),
        _desc(_NZ.voip), _desc(_NZ.personal_number), _desc(_NZ.pager), _desc(_NZ.uan),
        _desc(_NZ.voicemail), _desc(_NZ.fixed_line),
    ) if x is not None
]
_MOBILE = _desc(_NZ.mobile)


def classify_nz_national(national: str) -> str | None:
    """None if `national` (NZ significant number, no trunk 0) is a mobile, else a code."""
    if not _matches(_GENERAL, national):
        return "mobile.invalid"
    for desc in _NOT_MOBILE:
        if _matches(desc, national):
            return "mobile.not_a_mobile"
    return None if _matches(_MOBILE, national) else "mobile.invalid"


# NZ number types are decided by the leading digits and the length (every pattern in the
# metadata is a prefix followed by \d{n}), so memoise on (first 6 digits, length).
_memo: dict[tuple[str, int], str | None] = {}


def _classify_fast(national: str) -> str | None:
    key = (national[:6], len(national))
    try:
        return _memo[key]
    except KeyError:
        pass
    code = classify_nz_national(national)
    if len(_memo) < 100_000:
        _memo[key] = code
    return code


# Separators people and spreadsheets put in numbers, including the "(0)" trunk marker
# in "+64 (0)21 ...".
_SEPARATORS = re.compile(r"[\s\-.()/\u2010-\u2015]+")
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


def _nz_national(number: str) -> str | None:
    """The NZ significant number for NZ-looking input (digits, optional +), else None."""
    first = number[0]
    if first == "0":
        if number[1:2] != "0":
            return number[1:]
        if not number.startswith("0064"):
            return None
        national = number[4:]
    elif first == "+":
        if not number.startswith("+64"):
            return None
        national = number[3:]
    elif first == "2":
        # Leading 0 eaten by a spreadsheet's numeric cell: 211234567.
        return number
    elif number.startswith("642"):
        # "+64 21..." with the plus eaten; no NZ national number starts with 64.
        national = number[2:]
    else:
        return None
    return national[1:] if national[:1] == "0" else national


def normalise_mobile(raw: str) -> tuple[str | None, str | None]:
    """Return (E.164 mobile or None, problem code or None)."""
    number = raw.replace(" ", "")
    if not number.isdigit() and not (number[:1] == "+" and number[1:].isdigit()):
        number = _SEPARATORS.sub("", number)
        if not (number[1:].isdigit() and number[0] in "+0123456789" and number.isascii()):
            return None, "mobile.invalid"
    elif not number.isascii():  # isdigit() accepts other scripts' digits
        return None, "mobile.invalid"
    national = _nz_national(number)
    if national is not None:
        code = _classify_fast(national) if national else "mobile.invalid"
        return (None, code) if code else ("+64" + national, None)
    if number.startswith("00"):
        number = "+" + number[2:]
    if not number.startswith("+"):
        return None, "mobile.invalid"
    return _normalise_international(number)


def _normalise_international(number: str) -> tuple[str | None, str | None]:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None, "mobile.invalid"
    if not phonenumbers.is_valid_number(parsed):
        return None, "mobile.invalid"
    if phonenumbers.number_type(parsed) not in _MOBILE_TYPES:
        return None, "mobile.not_a_mobile"
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), None
