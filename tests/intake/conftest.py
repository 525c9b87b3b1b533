from datetime import date

import pytest

TODAY = date(2026, 6, 1)


@pytest.fixture
def good_record() -> dict:
    """A typical, fully valid synthetic record (test NHI, example.co.nz, 021 number)."""
    return {
        "source_record_id": "GP-000123",
        "nhi": "ZZZ0016",
        "given_names": "Aroha",
        "family_name": "Te Whare",
        "date_of_birth": "1985-04-03",
        "email": "aroha@example.co.nz",
        "mobile": "021 123 4567",
        "address": {"line1": "12 Example Street", "suburb": "Te Aro",
                    "city": "Wellington", "postcode": "6011"},
        "data_categories": ["lab_results", "clinical_notes"],
        "document_count": 3,
        "preferred_language": "mi",
    }



@pytest.fixture
def intake_engine(pg_database):  # noqa: ANN001, ANN201
    """An engine on a fresh PostgreSQL database holding intake's tables."""
    from services.common.db import make_engine

    engine = make_engine(pg_database("intake"))
    yield engine
    engine.dispose()
