"""Dates of birth: ISO YYYY-MM-DD or NZ dd/mm/yyyy in; ISO out; impossible ones dropped."""
from __future__ import annotations

import re
import time
from datetime import date

_ISO = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
# NZ order only: 03/04/2001 is 3 April. US month-first exports would be misread; they
# are an agency configuration error we cannot detect per record.
_NZ = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")
MAX_AGE_YEARS = 130


_today_cache: tuple[float, date] = (0.0, date.today())


def today() -> date:
    """date.today() costs ~1 µs; refreshing it once a minute is plenty for birth dates."""
    global _today_cache
    now = time.time()
    if now >= _today_cache[0]:
        _today_cache = (now + 60.0, date.today())
    return _today_cache[1]


def parse_date_of_birth(value: str, today: date) -> tuple[str | None, str | None]:
    """`value` is NFC-trimmed text. Return (ISO date or None, problem code or None)."""
    if _ISO.fullmatch(value):
        try:
            dob = date.fromisoformat(value)
        except ValueError:
            return None, "date_of_birth.impossible"
        iso = value
    else:
        m = _NZ.fullmatch(value)
        if not m:
            return None, "date_of_birth.unrecognised"
        try:
            dob = date(int(m[3]), int(m[2]), int(m[1]))
        except ValueError:
            return None, "date_of_birth.impossible"
        iso = dob.isoformat()
    if dob > today:
        return None, "date_of_birth.in_future"
    # Too old once the 130th birthday is before today (tuple compare copes with 29 Feb).
    if (dob.year + MAX_AGE_YEARS, dob.month, dob.day) < (today.year, today.month, today.day):
        return None, "date_of_birth.too_old"
    return iso, None
