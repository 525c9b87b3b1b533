"""Intake's part of an agency's reconciliation (store.record_outcomes) on real PostgreSQL: each
record's newest version and whether that version is withdrawn, records only ever rejected with
their codes, and pages that, whatever their size, add up to the one big page."""

from datetime import UTC, datetime

import pytest
from sqlmodel import Session

from services.intake import store
from services.intake.models import Feed, FeedProblem
from services.intake.store import RecordOutcome, RecordVersion

pytestmark = [pytest.mark.postgres]

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
INC, GP, LAB = "inc-1", "gp", "lab"


def version(agency: str, sid: str, v: int) -> RecordVersion:
    return RecordVersion(INC, agency, sid, v, f"fp-{sid}-{v}", "sealed", f"feed-{agency}", T0)


def test_pages_of_every_size_add_up_to_each_records_outcome(intake_engine):
    with Session(intake_engine) as s, s.begin():
        for agency in (GP, LAB):
            s.add(Feed(feed_id=f"feed-{agency}", incident_id=INC, agency_id=agency, format="ndjson"))
        s.flush()
        store.add_record_versions(s, [version(GP, "r-01", 1), version(GP, "r-02", 1),
                                      version(GP, "r-02", 2), version(GP, "r-04", 1),
                                      version(GP, "r-05", 1), version(LAB, "r-03", 1)])
        store.withdraw_record(s, INC, GP, "r-04", T0)
        store.withdraw_record(s, INC, GP, "r-05", T0)
        store.add_record_versions(s, [version(GP, "r-05", 2)])  # sent again after its withdrawal
        for line, (sid, severity, code) in enumerate([
                ("r-03", "error", "nhi.checksum"), ("r-03", "error", "record.no_name"),  # only rejected
                ("r-01", "error", "nhi.checksum"),  # rejected once, accepted later: accepted
                ("r-06", "warning", "mobile.format"),  # a warning alone is no record
                ("r-07", "error", "date.invalid")]):
            s.add(FeedProblem(feed_id="feed-gp", line=line, source_record_id=sid, severity=severity,
                              code=code, message="-"))
    expected = [RecordOutcome("r-01", "accepted", 1, []), RecordOutcome("r-02", "accepted", 2, []),
                RecordOutcome("r-03", "rejected", None, ["nhi.checksum", "record.no_name"]),
                RecordOutcome("r-04", "withdrawn", 1, []), RecordOutcome("r-05", "accepted", 2, []),
                RecordOutcome("r-07", "rejected", None, ["date.invalid"])]
    with Session(intake_engine) as s:
        assert store.record_outcomes(s, INC, GP, "", 100) == (expected, None)
        for limit in (1, 2, 3, 5):
            got, after = [], ""
            while True:
                page, after = store.record_outcomes(s, INC, GP, after, limit)
                assert len(page) <= limit
                got += page
                if after is None:
                    break
            assert got == expected, limit
        lab, _ = store.record_outcomes(s, INC, LAB, "", 100)
        assert lab == [RecordOutcome("r-03", "accepted", 1, [])]  # the other agency's own r-03


# Code point order is B, C, a-1, b; ICU's English puts them a-1, b, B, C.
MIXED_CASE_IDS = ["b", "C", "a-1", "B"]


@pytest.fixture
def language_collated_intake(pg_admin_url):  # noqa: ANN201
    from sqlalchemy import text

    from services.common.db import make_engine
    from testkit import infra

    name, url = infra.create_language_collated_database(pg_admin_url, "intake")
    engine = make_engine(url)
    with engine.connect() as conn:  # the database really sorts otherwise
        assert conn.execute(text("SELECT array_agg(x ORDER BY x) FROM unnest("
                                 "ARRAY['b','C','a-1','B']) AS x")).scalar() == ["a-1", "b", "B", "C"]
    yield engine
    engine.dispose()
    infra.drop_database(pg_admin_url, name)


def test_pages_come_in_code_point_order_on_a_database_with_a_language_collation(
        language_collated_intake):
    """`panui feed status` merges intake's pages with dedupe's in code point order (Python's
    str order); a database sorting by language gave them in another and the merge stopped."""
    with Session(language_collated_intake) as s, s.begin():
        s.add(Feed(feed_id="feed-gp", incident_id=INC, agency_id=GP, format="ndjson"))
        s.flush()
        store.add_record_versions(s, [version(GP, sid, 1) for sid in MIXED_CASE_IDS if sid != "b"])
        s.add(FeedProblem(feed_id="feed-gp", line=9, source_record_id="b", severity="error",
                          code="nhi.checksum", message="-"))
    with Session(language_collated_intake) as s:
        whole, _ = store.record_outcomes(s, INC, GP, "", 100)
        assert [o.source_record_id for o in whole] == sorted(MIXED_CASE_IDS)
        for limit in (1, 2, 3):
            got, after = [], ""
            while after is not None:
                page, after = store.record_outcomes(s, INC, GP, after, limit)
                got += page
            assert got == whole, limit
