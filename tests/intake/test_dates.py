from datetime import date

import pytest

from services.intake.validation import parse_date_of_birth

TODAY = date(2026, 6, 1)


@pytest.mark.parametrize("raw, iso", [
    ("1985-04-03", "1985-04-03"),
    ("03/04/1985", "1985-04-03"),   # NZ order: 3 April
    ("3/4/1985", "1985-04-03"),
    ("29/02/2000", "2000-02-29"),
    ("2026-06-01", "2026-06-01"),   # born today
    ("1896-06-01", "1896-06-01"),   # exactly 130 today
])
def test_accepted(raw, iso):
    assert parse_date_of_birth(raw, TODAY) == (iso, None)


@pytest.mark.parametrize("raw, code", [
    ("31/02/1985", "date_of_birth.impossible"),
    ("1985-02-31", "date_of_birth.impossible"),
    ("29/02/2001", "date_of_birth.impossible"),
    ("04/31/1985", "date_of_birth.impossible"),  # US order is not accepted
    ("2026-06-02", "date_of_birth.in_future"),
    ("1896-05-31", "date_of_birth.too_old"),
    ("1985-4-3", "date_of_birth.unrecognised"),
    ("3 April 1985", "date_of_birth.unrecognised"),
    ("19850403", "date_of_birth.unrecognised"),
    ("1985-04-03T00:00:00", "date_of_birth.unrecognised"),
    ("١٩٨٥-04-03", "date_of_birth.unrecognised"),  # non-ASCII digits
])
def test_dropped(raw, code):
    assert parse_date_of_birth(raw, TODAY) == (None, code)
