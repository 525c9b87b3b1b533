"""Request and response bodies of dedupe's coordinator API (api.py)."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.ids import Id


class AgencyProgress(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    agency_id: str
    name: str
    expected: bool
    complete: bool
    records: int = Field(description="Live (not withdrawn) records received")
    withdrawn: int
    missing: int = Field(description="Records the agency's completion counts (live and "
                         "withdrawn) that have not arrived: the release waits for them until "
                         "the hold deadline")


class Progress(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    incident_id: str
    released_at: datetime | None
    release_reason: str | None
    hold_deadline: datetime | None
    agencies: list[AgencyProgress]
    records_missing: int = Field(description="Sum of the agencies' missing records")
    persons: int = Field(description="Distinct persons the records resolve to")
    pending_release: int
    notified: int
    on_hold: int
    in_review: int = Field(description="Open review items of every kind")
    held_for_contact: int = Field(description="Persons held because every channel they have "
                                  "is contested between agencies: they wait for a decision")
    contact_conflicts: int = Field(description="Open contact_conflict items (those persons' "
                                   "notices go out on their uncontested channels meanwhile)")
    hold_conflicts: int = Field(description="Open hold_conflict items (one agency's s 116 hold "
                                "holds a person other agencies hold no hold for)")
    retractions: int = Field(description="Open retraction items (records withdrawn after a "
                             "notice told the person about them)")


ReviewKind = Literal["pair", "contact_conflict", "hold_conflict", "retraction"]
Decision = Literal["merge", "keep_apart", "use_contact", "keep_fallback", "release", "keep_held",
                   "send_correction", "no_action"]
RecordRef = tuple[Id, Id]


class ReviewView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    review_id: str
    kind: ReviewKind = Field(description="pair: are these two records one person (merge | "
                             "keep_apart); contact_conflict: agencies give this person different "
                             "emails or mobiles (use_contact with `record` | keep_fallback); "
                             "hold_conflict: one agency's s 116 hold holds a person other "
                             "agencies hold no hold for (release | keep_held); retraction: "
                             "records a notice told the person about were withdrawn "
                             "(send_correction | no_action; coordinator only, once)")
    a: tuple[str, str] = Field(description="(agency_id, source_record_id)")
    b: tuple[str, str]
    reason: str = Field(description="uncertain: between thresholds; guard: a match refused; "
                        "email_differs, mobile_differs; hold_not_shared; all_withdrawn (the "
                        "notice was sent in error), agency_withdrawn (an agency was named "
                        "wrongly)")
    status: str = Field(description="open, resolved (no longer needed), or the decision")
    evidence: dict = Field(description="Comparison levels and weights, or the records, agencies "
                           "and field in conflict (records giving one value share a group) — "
                           "never values")
    chosen: tuple[str, str] | None = Field(
        default=None, description="use_contact: the record whose contact is used")
    decided_at: datetime | None
    correction_notice_id: str | None = Field(
        default=None, description="send_correction: the correction notice made (its delivery "
        "is dispatch's: the notice's deliveries)")


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Decision = Field(description="One the item's kind takes (see ReviewView.kind); "
                               "another is refused with 422")
    record: RecordRef | None = Field(
        default=None, description="use_contact only: (agency_id, source_record_id) of the "
        "item's record whose contact to use")


class ReleaseRequested(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    incident_id: str
    manual_release_requested_at: datetime
    released_at: datetime | None


ReviewStatus = Literal["open", "resolved", "merge", "keep_apart", "use_contact", "keep_fallback",
                       "release", "keep_held", "send_correction", "no_action", "all"]


class RevealedRecord(BaseModel):
    agency_id: str
    source_record_id: str
    held: bool = Field(description="false: the record was withdrawn or is not held (no values)")
    values: dict[str, str | None] = Field(
        description="nhi, given_names, family_name, date_of_birth, email, mobile, address; "
        "null: absent")


class RevealedPair(BaseModel):
    """The two records' values, for this pair only; the reveal is in the audit log."""

    review_id: str
    a: RevealedRecord
    b: RevealedRecord
