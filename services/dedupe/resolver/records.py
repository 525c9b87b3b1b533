"""The engine's input (`MatchRecord`) and its prepared, folded form (`PreparedRecord`)."""
from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from services.common.nhi import valid_nhi
from services.dedupe.resolver.names import COMMON_GIVEN
from services.dedupe.resolver.normalise import (
    STREET_WORDS,
    address_tokens,
    email_key,
    family_tokens,
    given_name_tokens,
    mobile_key,
    parse_date,
    postcode_key,
)

RecordKey = tuple[str, str]  # (agency_id, source_record_id)


@dataclass(frozen=True, slots=True)
class MatchRecord:
    """One agency's record of one affected person, as intake cleaned it."""

    agency_id: str
    source_record_id: str
    nhi: str | None = None
    given_names: str | None = None
    family_name: str | None = None
    date_of_birth: date | None = None
    email: str | None = None
    mobile: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    suburb: str | None = None
    city: str | None = None
    postcode: str | None = None

    @property
    def key(self) -> RecordKey:
        return (self.agency_id, self.source_record_id)

    @classmethod
    def from_clean(cls, agency_id: str, clean: dict[str, Any]) -> MatchRecord:
        """Build from intake's clean record (contract affected-record.v1)."""
        address = clean.get("address") or {}
        return cls(
            agency_id=str(agency_id),
            source_record_id=str(clean["source_record_id"]),
            nhi=clean.get("nhi"),
            given_names=clean.get("given_names"),
            family_name=clean.get("family_name"),
            date_of_birth=parse_date(clean.get("date_of_birth")),
            email=clean.get("email"),
            mobile=clean.get("mobile"),
            address_line1=address.get("line1"),
            address_line2=address.get("line2"),
            suburb=address.get("suburb"),
            city=address.get("city"),
            postcode=address.get("postcode"),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.date_of_birth:
            data["date_of_birth"] = self.date_of_birth.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MatchRecord:
        return cls(**{**data, "date_of_birth": parse_date(data.get("date_of_birth"))})


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's str hash is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@lru_cache(maxsize=1 << 16)
def _dob_digits(dob: date) -> str:
    return sys.intern(dob.strftime("%Y%m%d"))


# Street-type words, longest first, as they may end a squeezed street ('bedfordstreet').
_SUFFIXES = sorted(STREET_WORDS.items(), key=lambda kv: -len(kv[0]))


@lru_cache(maxsize=1 << 16)
def _street(tokens: tuple[str, ...]) -> str | None:
    street = "".join(t for t in tokens if not t.isdigit())
    for full, short in _SUFFIXES:
        if len(street) > len(full) + 2 and street.endswith(full):
            street = street[: -len(full)] + short
            break
    return sys.intern(street) if street else None


@lru_cache(maxsize=1 << 16)
def _numbers(tokens: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(t for t in tokens if t.isdigit())


# Dates systems put in when they have none: they agree with nothing.
_PLACEHOLDER_DATES = frozenset({date(1900, 1, 1), date(1899, 12, 31), date(1901, 1, 1), date(1800, 1, 1)})


def _plausible(dob: date | None) -> bool:
    """A date of birth a living person can have (not a system default, not before 1890)."""
    return dob is not None and dob.year >= 1890 and dob not in _PLACEHOLDER_DATES


def _intern(value: str | None) -> str | None:
    return sys.intern(value) if value else None


class PreparedRecord:
    """A record's match keys, computed once when it arrives.

    Token tuples come from cached normalisers and strings are interned, so records with
    common names or a shared address hold references to one copy, not their own.
    """

    __slots__ = (
        "key", "record", "given", "given_first", "family",
        "family_key", "dob_digits", "nhi", "mobile", "email",
        "street", "numbers", "postcode", "address_block",
    )

    def __init__(self, record: MatchRecord) -> None:
        self.key: RecordKey = record.key
        self.record = record
        self.given = given_name_tokens(record.given_names)
        self.given_first = self.given[0] if self.given else None
        self.family = family_tokens(record.family_name)
        self.family_key = _intern(" ".join(self.family)) if self.family else None
        self.dob_digits = _dob_digits(record.date_of_birth) if _plausible(record.date_of_birth) else None
        self.nhi = valid_nhi(record.nhi)
        self.mobile = mobile_key(record.mobile)
        self.email = email_key(record.email)
        address = address_tokens(record.address_line1, record.address_line2)
        # The street without house/flat numbers, spaces squeezed out ('bedford s treet' and
        # 'bedford street' meet), and the numbers on their own.
        self.street = _street(address)
        self.numbers = _numbers(address)
        self.postcode = postcode_key(record.postcode)
        # One string naming the dwelling: the address block, and the value whose frequency
        # weighs an exact address agreement (a rest home or hostel holds many people).
        self.address_block = (
            sys.intern(f"{self.street}|{' '.join(self.numbers)}|{self.postcode or ''}")
            if address else None
        )

    # Derived on demand rather than stored: a million records, a few fields fewer each.
    @property
    def dob(self) -> date | None:
        return self.record.date_of_birth if self.dob_digits else None

    @property
    def address(self) -> tuple[str, ...]:
        """Address tokens (from the normaliser's cache; rarely needed, so not stored)."""
        return address_tokens(self.record.address_line1, self.record.address_line2)

    @property
    def given_known(self) -> bool:
        return self.given_first in COMMON_GIVEN if self.given_first else False

    @property
    def proxy(self) -> int:
        """Stands in for "a distinct person" when counting how many people share a phone,
        email or address: a person's five records count once, a clinic's patients many times."""
        return hash((self.given_first, self.dob_digits))
