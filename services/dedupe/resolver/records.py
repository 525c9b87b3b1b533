"""The engine's input (`MatchRecord`) and its prepared, folded form (`PreparedRecord`)."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from services.dedupe.resolver.names import COMMON_GIVEN
from services.dedupe.resolver.normalise import (
    address_tokens,
    email_key,
    family_tokens,
    mobile_key,
    name_tokens,
    parse_date,
    postcode_key,
    valid_nhi,
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


class PreparedRecord:
    """A record's match keys, computed once when it arrives."""

    __slots__ = (
        "key", "record", "given", "given_key", "given_first", "given_known", "family",
        "family_key", "dob", "dob_digits", "nhi", "mobile", "email", "address",
        "address_key", "postcode", "proxy",
    )

    def __init__(self, record: MatchRecord) -> None:
        self.key: RecordKey = record.key
        self.record = record
        self.given = name_tokens(record.given_names)
        self.given_key = " ".join(self.given) or None
        self.given_first = self.given[0] if self.given else None
        self.given_known = self.given_first in COMMON_GIVEN if self.given_first else False
        self.family = family_tokens(record.family_name)
        self.family_key = " ".join(self.family) or None
        self.dob = record.date_of_birth
        self.dob_digits = self.dob.strftime("%Y%m%d") if self.dob else None
        self.nhi = valid_nhi(record.nhi)
        self.mobile = mobile_key(record.mobile)
        self.email = email_key(record.email)
        self.address = address_tokens(record.address_line1, record.address_line2)
        self.address_key = " ".join(self.address) or None
        self.postcode = postcode_key(record.postcode)
        # Stands in for "a distinct person" when counting how many people share a phone,
        # email or address: a person's five records count once, a clinic's patients many times.
        self.proxy = hash((self.given_first, self.dob_digits))
