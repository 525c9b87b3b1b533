"""Dedupe's part of an agency's reconciliation (store.record_outcomes) on real PostgreSQL, on a
database whose default collation is a language's (ICU en-NZ), as a production database may be:
pages come in code point order of source_record_id — the order `panui feed status` merges them
in with intake's (services/common/reconciliation.py) — and add up to the whole, and a record in
review is found in whichever page holds it."""

import pytest
from sqlalchemy import text
from sqlmodel import Session

from services.common.db import make_engine
from services.dedupe import store
from services.dedupe.models import RecordState, ReviewState
from testkit import infra

pytestmark = [pytest.mark.postgres]

INC, GP, LAB = "inc-1", "gp", "lab"
# Code point order is B, C, a-1, b; ICU's English puts them a-1, b, B, C.
MIXED_CASE_IDS = ["b", "C", "a-1", "B"]


@pytest.fixture
def language_collated_dedupe(pg_admin_url):  # noqa: ANN201
    name, url = infra.create_language_collated_database(pg_admin_url, "dedupe")
    engine = make_engine(url)
    with engine.connect() as conn:  # the database really sorts otherwise
        assert conn.execute(text("SELECT array_agg(x ORDER BY x) FROM unnest("
                                 "ARRAY['b','C','a-1','B']) AS x")).scalar() == ["a-1", "b", "B", "C"]
    yield engine
    engine.dispose()
    infra.drop_database(pg_admin_url, name)


def _record(agency: str, sid: str) -> RecordState:
    return RecordState(incident_id=INC, agency_id=agency, source_record_id=sid, record_version=1,
                       message_id=f"m-{agency}-{sid}", sealed="sealed", data_categories=["clinical_notes"],
                       person_id=f"p-{agency}-{sid}")


def test_pages_come_in_code_point_order_on_a_database_with_a_language_collation(
        language_collated_dedupe):
    with Session(language_collated_dedupe) as s, s.begin():
        s.add_all([_record(GP, sid) for sid in MIXED_CASE_IDS] + [_record(LAB, "x")])
        s.add(ReviewState(review_id="rv-1", incident_id=INC, a_agency_id=GP, a_source_record_id="a-1",
                          b_agency_id=LAB, b_source_record_id="x", reason="uncertain", evidence={}))
    with Session(language_collated_dedupe) as s:
        whole, after = store.record_outcomes(s, INC, GP, "", 100)
        assert after is None
        assert [o.source_record_id for o in whole] == sorted(MIXED_CASE_IDS)  # B, C, a-1, b
        assert [o.state for o in whole] == ["pending", "pending", "in_review", "pending"]
        for limit in (1, 2, 3):
            got, after = [], ""
            while after is not None:
                page, after = store.record_outcomes(s, INC, GP, after, limit)
                got += page
            assert got == whole, limit
