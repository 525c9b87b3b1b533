"""Agency reconciliation: what became of each of one agency's records, keyed by the agency's own
`source_record_id`, with no personal data and nothing about any other agency but a count.

A record's story is spread over the three services, so each answers the part only it knows,
paged by a cursor, to the agency itself (docs/decisions.md, "Agency reconciliation"):
- intake `GET /v1/incidents/{id}/reconciliation/records` (the agency's API key): accepted at
  which version, withdrawn, or rejected and with which problem codes;
- dedupe `GET /v1/incidents/{id}/reconciliation/records` (an agency status ticket): pending,
  in review, held, notified under which notice, withdrawn; how many *other* agencies' records
  are merged into the same person (a count, never who);
- dispatch `GET /v1/incidents/{id}/reconciliation/notices` (the ticket): each notice naming
  the agency, with its reference and the status of each channel's delivery.
`panui feed status` streams them: intake's and dedupe's pages come in the same order (by
source_record_id, code point order) and `merge_pages` joins them a stretch at a time with
`combine` (pure, the rule), asking dispatch for just the notices that stretch names
(`POST .../reconciliation/notices/lookup`); `write_status_csv` writes the rows as they come, so
the download holds about one page per service whatever the incident's size. The services never
call each other for it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Literal, TextIO, get_args

from pydantic import BaseModel, Field

from services.common.csvsafe import SafeWriter

PAGE_LIMIT_MAX = 10_000
SOURCE_ID = Field(min_length=1, max_length=128)


class IntakeRecordStatus(BaseModel):
    source_record_id: str = SOURCE_ID
    state: Literal["accepted", "withdrawn", "rejected"]
    record_version: int | None = Field(description="the newest accepted version; null if rejected")
    rejection_codes: list[str] = Field(
        description="rejected: the problem codes of the record's errors (e.g. nhi.checksum)")


class DedupeRecordStatus(BaseModel):
    source_record_id: str = SOURCE_ID
    record_version: int = Field(ge=1)
    state: Literal["pending", "in_review", "held", "notified", "withdrawn"]
    other_agencies: int = Field(ge=0, description="how many other agencies' records are merged "
                                "into this record's person (never which)")
    notice_id: str | None = Field(description="notified: the newest notice covering the record")
    review_open: bool = Field(description="an open review item names the record (a notice may "
                              "already have gone: reviews never hold a release)")


class NoticeDelivery(BaseModel):
    channel: Literal["email", "sms", "postal", "none"]
    status: str = Field(description="the delivery's status (delivery-event.v1); channel 'none' "
                        "with status 'unreachable': no channel reached the person")


class DispatchNoticeStatus(BaseModel):
    notice_id: str
    version: int = Field(ge=1)
    reference: str | None = Field(description="the reference printed on the notice")
    deliveries: list[NoticeDelivery]


class IntakeRecordPage(BaseModel):
    incident_id: str
    agency_id: str
    records: list[IntakeRecordStatus]
    next_after: str | None = Field(description="pass as `after` for the next page; null: the last")


class DedupeRecordPage(BaseModel):
    incident_id: str
    agency_id: str
    records: list[DedupeRecordStatus]
    next_after: str | None


class DispatchNoticePage(BaseModel):
    incident_id: str
    agency_id: str
    notices: list[DispatchNoticeStatus]
    next_after: str | None = Field(description="a notice id: pass as `after`; null: the last")


class DispatchNoticeLookup(BaseModel):
    notice_ids: list[str] = Field(max_length=PAGE_LIMIT_MAX, description="notice ids from "
                                  "dedupe's part; those not naming your agency are left out")


class DispatchNoticeList(BaseModel):
    incident_id: str
    agency_id: str
    notices: list[DispatchNoticeStatus]


class StatusTicket(BaseModel):
    ticket: str = Field(description="bearer token for dedupe's and dispatch's reconciliation routes")
    incident_id: str
    agency_id: str
    expires_at: int = Field(description="unix seconds")


Outcome = Literal["rejected", "withdrawn", "received", "pending", "in_review", "held", "notified",
                  "unreachable"]
COLUMNS = ("source_record_id", "outcome", "record_version", "notice_reference", "channels",
           "delivery_status", "merged_with_other_agencies", "detail")


class StatusRow(BaseModel):
    source_record_id: str
    outcome: Outcome
    record_version: int | None = None
    notice_reference: str | None = None
    channels: list[str] = Field(default_factory=list)
    delivery_status: list[str] = Field(default_factory=list)  # one per channel, same order
    merged_with_other_agencies: int = 0
    detail: str = ""


_DETAIL = {
    "received": "accepted by intake; not yet resolved",
    "pending": "resolved; waiting for the release",
    "in_review": "a reviewer is deciding whether it is the same person as another record",
    "held": "held: no notice is sent while the hold stands (s 116)",
    "unreachable": "no channel reached the person: on the public-notice list (s 115)",
    "withdrawn": "withdrawn by your agency",
}


def _merged(n: int) -> str:
    return f"merged with records from {n} other agenc{'y' if n == 1 else 'ies'}" if n else ""


def row_of(intake: IntakeRecordStatus | None, dedupe: DedupeRecordStatus | None,
           notices: Mapping[str, DispatchNoticeStatus]) -> StatusRow:
    """One record's outcome from what each service said (either may be missing: not there yet)."""
    source_id = (intake or dedupe).source_record_id  # type: ignore[union-attr]
    if intake is not None and intake.state == "rejected":
        return StatusRow(source_record_id=source_id, outcome="rejected",
                         detail="rejected: " + ", ".join(intake.rejection_codes or ["invalid"]))
    version = dedupe.record_version if dedupe else intake.record_version  # type: ignore[union-attr]
    merged = dedupe.other_agencies if dedupe else 0
    if (intake is not None and intake.state == "withdrawn") or (dedupe and dedupe.state == "withdrawn"):
        return StatusRow(source_record_id=source_id, outcome="withdrawn", record_version=version,
                         detail=_DETAIL["withdrawn"])
    if dedupe is None:
        return StatusRow(source_record_id=source_id, outcome="received", record_version=version,
                         detail=_DETAIL["received"])
    details = [_merged(merged)]
    if dedupe.review_open and dedupe.state != "in_review":
        details.append(_DETAIL["in_review"])
    if dedupe.state != "notified":
        return StatusRow(source_record_id=source_id, outcome=dedupe.state, record_version=version,
                         merged_with_other_agencies=merged,
                         detail="; ".join(d for d in (_DETAIL[dedupe.state], *details) if d))
    notice = notices.get(dedupe.notice_id or "")
    if notice is None:  # released by dedupe, not yet stored by dispatch
        return StatusRow(source_record_id=source_id, outcome="notified", record_version=version,
                         merged_with_other_agencies=merged,
                         detail="; ".join(d for d in ("notice released; delivery not started",
                                                      *details) if d))
    sent = [d for d in notice.deliveries if d.channel != "none"]
    unreachable = any(d.channel == "none" for d in notice.deliveries)
    outcome: Outcome = "unreachable" if unreachable else "notified"
    if unreachable:
        details.insert(0, _DETAIL["unreachable"])
    if notice.version > 1:
        details.append(f"amended (notice version {notice.version})")
    return StatusRow(source_record_id=source_id, outcome=outcome, record_version=version,
                     notice_reference=notice.reference, channels=[d.channel for d in sent],
                     delivery_status=[d.status for d in sent], merged_with_other_agencies=merged,
                     detail="; ".join(d for d in details if d))


def combine(intake: Iterable[IntakeRecordStatus], dedupe: Iterable[DedupeRecordStatus],
            notices: Iterable[DispatchNoticeStatus]) -> list[StatusRow]:
    """One row per source_record_id that either intake or dedupe knows, by source_record_id."""
    by_intake = {r.source_record_id: r for r in intake}
    by_dedupe = {r.source_record_id: r for r in dedupe}
    by_notice = {n.notice_id: n for n in notices}
    return [row_of(by_intake.get(s), by_dedupe.get(s), by_notice)
            for s in sorted(by_intake.keys() | by_dedupe.keys())]


class OutOfOrder(ValueError):
    """A service's pages were not in source_record_id order: they cannot be merged page by page."""


def _ascending(pages: Iterable[Sequence[IntakeRecordStatus | DedupeRecordStatus]], service: str
               ) -> Iterator[Sequence[IntakeRecordStatus | DedupeRecordStatus]]:
    last = None
    for page in pages:
        for r in page:
            if last is not None and not last < r.source_record_id:
                raise OutOfOrder(f"{service}'s records are not in source_record_id order")
            last = r.source_record_id
        yield page


def merge_pages(intake_pages: Iterable[Sequence[IntakeRecordStatus]],
                dedupe_pages: Iterable[Sequence[DedupeRecordStatus]],
                notices_of: Callable[[list[str]], Iterable[DispatchNoticeStatus]]) -> Iterator[StatusRow]:
    """`combine`'s rows, in its order, from intake's and dedupe's pages (each ascending by
    source_record_id), pulled lazily: a stretch of ids is joined as soon as both parts have
    passed it, with the notices `notices_of` gives for the notice ids it names. Holds about a
    page of each part. Raises OutOfOrder if a part's pages are not in order."""
    streams = [iter(_ascending(intake_pages, "intake")), iter(_ascending(dedupe_pages, "dedupe"))]
    buffers: list[list] = [[], []]
    done = [False, False]
    while True:
        for k in (0, 1):
            while not done[k] and not buffers[k]:  # empty pages are skipped, not an end
                page = next(streams[k], None)
                if page is None:
                    done[k] = True
                else:
                    buffers[k] = list(page)
        if all(done) and not any(buffers):
            return
        # Every id up to the smallest last id of a part still going is complete in both.
        horizon = min((buffers[k][-1].source_record_id for k in (0, 1) if not done[k]), default=None)
        taken: list[list] = [[], []]
        for k in (0, 1):
            cut = len(buffers[k]) if horizon is None else _upto(buffers[k], horizon)
            taken[k], buffers[k] = buffers[k][:cut], buffers[k][cut:]
        wanted = sorted({d.notice_id for d in taken[1] if d.state == "notified" and d.notice_id})
        notices = notices_of(wanted) if wanted else []
        yield from combine(taken[0], taken[1], notices)


def _upto(records: list, horizon: str) -> int:
    """How many of the ascending records have source_record_id <= horizon."""
    lo, hi = 0, len(records)
    while lo < hi:
        mid = (lo + hi) // 2
        if records[mid].source_record_id <= horizon:
            lo = mid + 1
        else:
            hi = mid
    return lo


class DeliveryCount(BaseModel):
    channel: str
    status: str
    records: int = Field(description="records whose notice went on this channel with this status")


class ReconciliationSummary(BaseModel):
    """One agency's reconciliation in counts (the coordinator's console): no record ids."""

    incident_id: str
    agency_id: str
    records: int = Field(description="rows of the agency's reconciliation (one per source_record_id)")
    outcomes: dict[str, int] = Field(description="records by outcome, every outcome (zero included)")
    merged_with_other_agencies: int = Field(
        description="records whose person also has records from other agencies (never which)")
    deliveries: list[DeliveryCount] = Field(
        description="notified records by channel and delivery status, by channel then status")


class StatusRowPage(BaseModel):
    incident_id: str
    agency_id: str
    rows: list[StatusRow]
    next_after: str | None = Field(description="pass as `after` for the next page; null: the last")


def summarise(incident_id: str, agency_id: str, rows: Iterable[StatusRow]) -> ReconciliationSummary:
    """The counts of an agency's rows (as `combine` or `merge_pages` give them), read once."""
    outcomes = dict.fromkeys(get_args(Outcome), 0)
    deliveries: dict[tuple[str, str], int] = {}
    records = merged = 0
    for row in rows:
        records += 1
        outcomes[row.outcome] += 1
        merged += row.merged_with_other_agencies > 0
        for channel, status in zip(row.channels, row.delivery_status, strict=True):
            deliveries[(channel, status)] = deliveries.get((channel, status), 0) + 1
    return ReconciliationSummary(
        incident_id=incident_id, agency_id=agency_id, records=records, outcomes=outcomes,
        merged_with_other_agencies=merged,
        deliveries=[DeliveryCount(channel=c, status=s, records=n)
                    for (c, s), n in sorted(deliveries.items())])


def write_status_csv(rows: Iterable[StatusRow], out: TextIO) -> dict[str, int]:
    """Formula-safe (services/common/csvsafe.py): source_record_ids come from the agency's files.
    Writes each row as it comes; returns how many rows had each outcome."""
    writer = SafeWriter(out)
    writer.writerow(COLUMNS)
    counts: dict[str, int] = {}
    for r in rows:
        writer.writerow((r.source_record_id, r.outcome, "" if r.record_version is None else r.record_version,
                         r.notice_reference or "", ";".join(r.channels), ";".join(r.delivery_status),
                         r.merged_with_other_agencies, r.detail))
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    return counts


def status_csv(rows: Iterable[StatusRow]) -> str:
    out = io.StringIO()
    write_status_csv(rows, out)
    return out.getvalue()
