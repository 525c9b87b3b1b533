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
