"""Agency reconciliation's join (services/common/reconciliation.py): one row per record from what
intake, dedupe and dispatch each said, the outcome precedence, and a formula-safe CSV. The
services' parts on the real stack: tests/integration/test_reconciliation.py."""

import csv
import io

from services.common.reconciliation import (
    COLUMNS,
    DedupeRecordStatus,
    DispatchNoticeStatus,
    IntakeRecordStatus,
    NoticeDelivery,
    combine,
    status_csv,
)


def intake(sid: str, state: str = "accepted", codes: list[str] | None = None) -> IntakeRecordStatus:
    return IntakeRecordStatus(source_record_id=sid, state=state,
                              record_version=None if state == "rejected" else 1,
                              rejection_codes=codes or [])


def dedupe(sid: str, state: str, notice_id: str | None = None, others: int = 0,
           review: bool = False) -> DedupeRecordStatus:
    return DedupeRecordStatus(source_record_id=sid, record_version=2, state=state,
                              other_agencies=others, notice_id=notice_id, review_open=review)


def notice(notice_id: str, *deliveries: tuple[str, str], version: int = 1) -> DispatchNoticeStatus:
    return DispatchNoticeStatus(notice_id=notice_id, version=version, reference=f"PAN-{notice_id}",
                                deliveries=[NoticeDelivery(channel=c, status=s) for c, s in deliveries])


def test_every_outcome_from_the_three_parts():
    rows = {r.source_record_id: r for r in combine(
        [intake("rej", "rejected", ["nhi.malformed", "record.no_name"]), intake("wd", "withdrawn"),
         intake("new"), intake("pend"), intake("rev"), intake("held"), intake("sent"),
         intake("both"), intake("none"), intake("late")],
        [dedupe("wd", "withdrawn"), dedupe("pend", "pending", others=2), dedupe("rev", "in_review"),
         dedupe("held", "held"), dedupe("sent", "notified", "n1", others=1, review=True),
         dedupe("both", "notified", "n2"), dedupe("none", "notified", "n3"),
         dedupe("late", "notified", "n-not-yet-at-dispatch")],
        [notice("n1", ("email", "delivered")), notice("n2", ("email", "permanent-failure"),
                                                      ("sms", "sent"), version=2),
         notice("n3", ("none", "unreachable")), notice("n-of-another-agency", ("email", "sent"))])}
    assert list(rows) == sorted(rows)
    assert {s: r.outcome for s, r in rows.items()} == {
        "rej": "rejected", "wd": "withdrawn", "new": "received", "pend": "pending",
        "rev": "in_review", "held": "held", "sent": "notified", "both": "notified",
        "none": "unreachable", "late": "notified"}
    assert rows["rej"].detail == "rejected: nhi.malformed, record.no_name"
    assert rows["rej"].record_version is None and rows["new"].record_version == 1
    assert rows["pend"].detail.endswith("merged with records from 2 other agencies")
    sent = rows["sent"]
    assert (sent.notice_reference, sent.channels, sent.delivery_status) == ("PAN-n1", ["email"], ["delivered"])
    assert "merged with records from 1 other agency" in sent.detail and "reviewer" in sent.detail
    assert rows["both"].channels == ["email", "sms"]
    assert rows["both"].delivery_status == ["permanent-failure", "sent"]
    assert "amended (notice version 2)" in rows["both"].detail
    assert rows["none"].channels == [] and rows["none"].notice_reference == "PAN-n3"
    assert rows["late"].notice_reference is None and "delivery not started" in rows["late"].detail


def test_the_csv_is_formula_safe_with_one_row_per_record():
    text = status_csv(combine([intake("=HYPERLINK(\"x\")"), intake("@sum", "rejected", ["-1"])],
                              [dedupe("=HYPERLINK(\"x\")", "held")], []))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(COLUMNS)
    assert rows[1][0] == "'=HYPERLINK(\"x\")" and rows[1][1] == "held"
    assert rows[2][:2] == ["'@sum", "rejected"] and rows[2][-1] == "rejected: -1"
    assert len(rows) == 3
