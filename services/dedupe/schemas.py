"""Request and response bodies of dedupe's coordinator API (api.py)."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
    in_review: int


class ReviewView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    review_id: str
    a: tuple[str, str] = Field(description="(agency_id, source_record_id)")
    b: tuple[str, str]
    reason: str = Field(description="uncertain: between thresholds; guard: a match refused")
    status: str
    evidence: dict = Field(description="Comparison levels and weights — never values")
    decided_at: datetime | None


class ReviewDecision(BaseModel):
    decision: Literal["merge", "keep_apart"]


class ReleaseRequested(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    incident_id: str
    manual_release_requested_at: datetime
    released_at: datetime | None


ReviewStatus = Literal["open", "merge", "keep_apart", "resolved", "all"]


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
