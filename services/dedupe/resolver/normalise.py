"""Match keys: the folded forms of record fields that comparisons and blocking use.

Records keep their values exactly as given (NFC); these keys exist only for matching.
"""
from __future__ import annotations

import re
import sys
import unicodedata
from datetime import date
from functools import lru_cache

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_DOUBLE_VOWEL = re.compile(r"([aeiou])\1+")
_APOSTROPHES = re.compile(r"['’`ʻ‘]")


def fold(text: str) -> str:
    """Lower-case and drop diacritics (Māui -> maui, Nguyễn -> nguyen)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


@lru_cache(maxsize=1 << 17)
def name_tokens(text: str | None) -> tuple[str, ...]:
    """Split a name into folded tokens: 'Te Whata-Ngata' -> ('te', 'whata', 'ngata').

    Double vowels collapse so that the macron and double-vowel spellings of Māori names
    meet (Māori -> maori, Maaori -> maori). Apostrophes vanish (O'Brien -> obrien).
    """
    if not text:
        return ()
    folded = _APOSTROPHES.sub("", fold(text))
    # Cached and interned: names repeat heavily, so records share the same token objects.
    return tuple(sys.intern(_DOUBLE_VOWEL.sub(r"\1", t)) for t in _NON_ALNUM.split(folded) if t)


# What agencies type when they do not know a name. A placeholder agrees with nothing: it is
# dropped from the match keys, so "Baby Ngata" is a record without a given name, not one
# whose given name is "Baby". Whole phrases (spaces squeezed out) and single words.
PLACEHOLDER_PHRASES = frozenset({
    "nolastname", "nofirstname", "nogivenname", "nosurname", "noname", "notstated", "notgiven",
    "notknown", "notrecorded", "notprovided", "unknown", "none", "na", "nil", "null", "anonymous",
    "withheld", "refused", "test", "testpatient", "patient", "dummy", "tba", "tbc",
})
PLACEHOLDER_WORDS = frozenset({
    "baby", "babe", "infant", "newborn", "unnamed", "unknown", "unk", "nfn", "fnu", "lnu", "nln",
    "boy", "girl", "twin", "male", "female", "xx", "xxx", "xxxx", "zz", "zzz",
})


@lru_cache(maxsize=1 << 17)
def person_name_tokens(text: str | None) -> tuple[str, ...]:
    """`name_tokens` without placeholders ('Baby Girl', 'Unknown', 'No Last Name' -> ())."""
    tokens = name_tokens(text)
    if not tokens or "".join(tokens) in PLACEHOLDER_PHRASES:
        return ()
    if any(t in PLACEHOLDER_WORDS for t in tokens):
        tokens = tuple(t for t in tokens if t not in PLACEHOLDER_WORDS)
    return tokens


# Titles typed into the given-name field ('Mrs Mary', 'Senora Catherine'): never a first
# name, so dropped there (not from family names, where 'Bishop' or 'Sister' may be real).
TITLE_WORDS = frozenset({
    "mr", "mrs", "miss", "ms", "mx", "mstr", "master", "dr", "sir", "dame", "lady", "madam",
    "madame", "sister", "brother", "rev", "senor", "senora", "senorita", "gentleman",
})


@lru_cache(maxsize=1 << 17)
def given_name_tokens(text: str | None) -> tuple[str, ...]:
    """`person_name_tokens` without leading titles: 'Mrs Mary Anne' -> ('mary', 'anne')."""
    tokens = person_name_tokens(text)
    while tokens and tokens[0] in TITLE_WORDS:
        tokens = tokens[1:]
    return tokens


# Particles that are part of a family name but say little on their own.
_SURNAME_PARTICLES = frozenset(
    {"te", "van", "von", "de", "der", "da", "di", "le", "la", "du", "mc", "mac", "st"}
)


@lru_cache(maxsize=1 << 17)
def family_tokens(text: str | None) -> tuple[str, ...]:
    tokens = person_name_tokens(text)
    significant = tuple(t for t in tokens if t not in _SURNAME_PARTICLES)
    return significant or tokens




def mobile_key(raw: str | None) -> str | None:
    """Intake already gives E.164; only strip spacing so '+64 21 ...' still meets '+6421...'."""
    if not raw:
        return None
    digits = re.sub(r"[\s\-().]", "", raw)
    return digits if digits.startswith("+") and digits[1:].isdigit() and len(digits) >= 8 else None


def email_key(raw: str | None) -> str | None:
    """Lower-case, drop a '+tag' in the local part. Dots are kept: only some providers ignore them."""
    if not raw or "@" not in raw:
        return None
    local, _, domain = raw.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if not local or "." not in domain:
        return None
    key = f"{local}@{domain}"
    return raw if raw == key else key  # keep the caller's string when already clean


STREET_WORDS = {
    "street": "st", "str": "st", "road": "rd", "avenue": "ave", "av": "ave", "place": "pl",
    "crescent": "cres", "cr": "cres", "crs": "cres", "drive": "dr", "terrace": "tce",
    "terr": "tce", "lane": "ln", "grove": "gr", "court": "ct", "highway": "hwy",
    "parade": "pde", "square": "sq", "close": "cl", "esplanade": "esp", "boulevard": "blvd",
    "mount": "mt", "saint": "st", "north": "n", "south": "s", "east": "e", "west": "w",
}
_UNIT_WORDS = frozenset({"flat", "unit", "apartment", "apt", "level", "lvl"})


@lru_cache(maxsize=1 << 16)
def address_tokens(line1: str | None, line2: str | None = None) -> tuple[str, ...]:
    """Street address as comparable tokens: 'Flat 2, 14 Kōwhai Road' -> ('2', '14', 'kowhai', 'rd')."""
    text = " ".join(p for p in (line1, line2) if p)
    if not text:
        return ()
    tokens = []
    for t in _NON_ALNUM.split(fold(text)):
        if not t or t in _UNIT_WORDS:
            continue
        tokens.append(sys.intern(STREET_WORDS.get(t, t)))
    return tuple(tokens)


def postcode_key(raw: str | None) -> str | None:
    if not raw:
        return None
    digits = raw.strip()
    return digits if len(digits) == 4 and digits.isdigit() else None


def parse_date(raw: str | date | None) -> date | None:
    """ISO date or None (intake has already dropped impossible dates)."""
    if raw is None or isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        return None
