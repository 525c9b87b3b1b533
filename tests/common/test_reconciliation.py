"""Agency reconciliation's join (services/common/reconciliation.py): one row per record from what
intake, dedupe and dispatch each said, the outcome precedence, and a formula-safe CSV. The
services' parts on the real stack: tests/integration/test_reconciliation.py."""

import csv
import io

import pytest

from services.common.reconciliation import (
    COLUMNS,
    DedupeRecordStatus,
    DispatchNoticeStatus,
    IntakeRecordStatus,
    NoticeDelivery,
    OutOfOrder,
    combine,
    merge_pages,
    status_csv,
    summarise,
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


def test_the_coordinators_counts_are_the_rows_counted():
    rows = combine(
        [intake("rej", "rejected"), intake("a"), intake("b"), intake("c"), intake("d"), intake("new")],
        [dedupe("a", "notified", "n1", others=1), dedupe("b", "notified", "n2"),
         dedupe("c", "notified", "n3", others=2), dedupe("d", "held", others=1)],
        [notice("n1", ("email", "delivered")), notice("n2", ("email", "delivered"), ("sms", "sent")),
         notice("n3", ("none", "unreachable"))])
    summary = summarise("inc-1", "gp", rows)
    assert summary.records == 6
    assert summary.outcomes == {"rejected": 1, "withdrawn": 0, "received": 1, "pending": 0,
                                "in_review": 0, "held": 1, "notified": 2, "unreachable": 1}
    assert summary.merged_with_other_agencies == 3  # a, c and d: a count of records, not agencies
    assert [(d.channel, d.status, d.records) for d in summary.deliveries] == [
        ("email", "delivered", 2), ("sms", "sent", 1)]  # the unreachable one went on no channel
    assert summarise("inc-1", "gp", []).outcomes["notified"] == 0


def test_the_csv_is_formula_safe_with_one_row_per_record():
    text = status_csv(combine([intake("=HYPERLINK(\"x\")"), intake("@sum", "rejected", ["-1"])],
                              [dedupe("=HYPERLINK(\"x\")", "held")], []))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(COLUMNS)
    assert rows[1][0] == "'=HYPERLINK(\"x\")" and rows[1][1] == "held"
    assert rows[2][:2] == ["'@sum", "rejected"] and rows[2][-1] == "rejected: -1"
    assert len(rows) == 3


def _paged(items: list, size: int, log: list, name: str):
    """Pages of `size`, noting in `log` when each is fetched."""
    for start in range(0, len(items), size):
        log.append(f"{name}:{start // size}")
        yield items[start:start + size]


def _parts(n: int):
    """n records: every outcome, some only at intake (rejected, received), the notices of some."""
    states = ["pending", "in_review", "held", "notified", "withdrawn"]
    ids = [f"r-{i:04d}" for i in range(n)]
    ins = [intake(s, "rejected", ["nhi.checksum"]) if i % 7 == 0 else intake(s) for i, s in enumerate(ids)]
    ded = [dedupe(s, states[i % 5], f"n{i // 2}" if states[i % 5] == "notified" else None, others=i % 3)
           for i, s in enumerate(ids) if i % 7 and i % 11]
    notices = {f"n{i}": notice(f"n{i}", ("email", "delivered")) for i in range(0, n, 3)}
    return ins, ded, notices


def test_merging_page_by_page_gives_exactly_what_combine_gives():
    ins, ded, notices = _parts(240)
    whole = combine(ins, ded, notices.values())
    for intake_size, dedupe_size in ((1, 1), (7, 50), (50, 7), (240, 3), (1000, 1000)):
        asked: list[list[str]] = []

        def notices_of(ids: list[str], asked: list = asked) -> list:
            asked.append(ids)
            return [notices[i] for i in ids if i in notices]

        merged = list(merge_pages(_paged(ins, intake_size, [], "i"), _paged(ded, dedupe_size, [], "d"),
                                  notices_of))
        assert merged == whole, (intake_size, dedupe_size)
        assert status_csv(merged) == status_csv(whole)
        named = [i for ids in asked for i in ids]  # each notice asked for once, at most a page's worth
        assert len(named) == len(set(named)) and max(map(len, asked)) <= dedupe_size


def test_rows_come_before_the_last_pages_are_fetched():
    ins, ded, notices = _parts(100)
    log: list[str] = []
    rows = merge_pages(_paged(ins, 10, log, "i"), _paged(ded, 10, log, "d"),
                       lambda ids: [notices[i] for i in ids if i in notices])
    first = next(rows)
    assert first.source_record_id == "r-0000"
    assert log == ["i:0", "d:0"]  # one page of each part, not all ten of intake's
    rest = list(rows)
    assert len(rest) == 99 and "i:9" in log


def test_pages_out_of_order_are_refused_not_merged():
    ins = [intake("b"), intake("a")]
    with pytest.raises(OutOfOrder):
        list(merge_pages([ins], [], lambda ids: []))
    with pytest.raises(OutOfOrder):  # across pages too
        list(merge_pages([[intake("b")], [intake("a")]], [], lambda ids: []))
