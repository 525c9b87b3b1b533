from datetime import date

import pytest

from services.dedupe.resolver import MatchRecord
from services.dedupe.resolver.records import PreparedRecord

_counter = iter(range(10**9))


def make(agency: str = "gp-1", sid: str | None = None, **fields) -> MatchRecord:
    fields.setdefault("given_names", "Aroha")
    fields.setdefault("family_name", "Ngata")
    dob = fields.get("date_of_birth", date(1980, 3, 4))
    if isinstance(dob, str):
        dob = date.fromisoformat(dob)
    fields["date_of_birth"] = dob
    return MatchRecord(agency_id=agency, source_record_id=sid or f"r{next(_counter)}", **fields)


def prep(**fields) -> PreparedRecord:
    return PreparedRecord(make(**fields))


@pytest.fixture
def record():
    return make
