"""Dedupe's own tables: what it knows of each incident, the records it has seen (latest
version each, personal fields still sealed), each person's release state, the notices it
released, and the review queue of uncertain pairs."""

from datetime import datetime

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from services.common.clock import utcnow
from services.common.db import UTCDateTime, code_point_string


class IncidentState(SQLModel, table=True):
    """An incident as dedupe sees it: from incidents.v1, plus completions and release."""

    __tablename__ = "incident_state"

    incident_id: str = Field(primary_key=True, max_length=128)
    revision: int = 0
    agency_names: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    expected_agency_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    release_policy: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # agency_id → record count announced by its contribution-complete message (live
    # records), and the withdrawn ones it announced
    completed: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    completed_withdrawn: dict = Field(default_factory=dict,
                                      sa_column=Column(JSON, nullable=False))
    # agency_id → records its completion announced that have not arrived (release.py)
    missing: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The affected-records partition the incident lives on: whoever owns it releases it.
    partition: int | None = None
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # complete | deadline | deadline-missing | manual
    release_reason: str | None = Field(default=None, max_length=16)
    manual_release_requested_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RecordState(SQLModel, table=True):
    """The latest version of one agency's record, as received (personal fields still sealed)."""

    __tablename__ = "record_state"
    __table_args__ = (
        UniqueConstraint("incident_id", "agency_id", "source_record_id"),
        Index("ix_record_state_person", "incident_id", "person_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(index=True, max_length=128)
    agency_id: str = Field(max_length=128)
    source_record_id: str = Field(max_length=128, sa_type=code_point_string(128))  # paged by it
    record_version: int
    message_id: str = Field(max_length=64)
    sealed: str
    data_categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    document_count: int | None = None  # None: the agency gave no count
    preferred_language: str = Field(default="en", max_length=2)
    on_hold: bool = False
    withdrawn: bool = False
    person_id: str | None = Field(default=None, max_length=128)
    # The notice lineage (notice person id) whose notice covered this record, at the record
    # version it covered: a person is told about the records a notice covered (lineage.py).
    told_lineage: str | None = Field(default=None, max_length=128)
    told_version: int = 0
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PersonState(SQLModel, table=True):
    """One resolved person in one incident and where their notice stands.

    `person_id` is the resolver's id for the current set of records; `notice_person_id`
    is the id the person's notices carry, fixed at the first notice so amendments line up
    even when later records change the resolver's id."""

    __tablename__ = "person_state"

    incident_id: str = Field(primary_key=True, max_length=128)
    person_id: str = Field(primary_key=True, max_length=128)
    status: str = Field(default="pending", max_length=16)  # pending|held|notified|empty
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    dirty: bool = Field(default=True, index=True)  # needs a release decision
    notice_person_id: str | None = Field(default=None, max_length=128)
    notified_version: int = 0
    notified_agency_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    notified_categories: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class NoticeState(SQLModel, table=True):
    """A notice (version 1) or amendment released for one person."""

    __tablename__ = "notice_state"
    __table_args__ = (UniqueConstraint("incident_id", "person_id", "version"),)

    notice_id: str = Field(primary_key=True, max_length=128)
    incident_id: str = Field(index=True, max_length=128)
    person_id: str = Field(max_length=128)
    version: int
    agency_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))
    data_categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # A correction notice (retractions.py): sent_in_error | agency_not_involved
    correction: str | None = Field(default=None, max_length=24)


class ReviewState(SQLModel, table=True):
    """A question for a human: an uncertain pair kept apart, or a contact or hold that
    agencies contradict for one person — with the evidence (levels and weights, records,
    agencies and fields; never values)."""

    __tablename__ = "review_state"

    review_id: str = Field(primary_key=True, max_length=64)
    incident_id: str = Field(index=True, max_length=128)
    a_agency_id: str = Field(max_length=128)
    a_source_record_id: str = Field(max_length=128, sa_type=code_point_string(128))
    b_agency_id: str = Field(max_length=128)
    b_source_record_id: str = Field(max_length=128, sa_type=code_point_string(128))
    # pair (the resolver's uncertain pair) | contact_conflict | hold_conflict (conflicts.py)
    # | retraction (retractions.py)
    kind: str = Field(default="pair", max_length=24)
    # uncertain|guard|email_differs|mobile_differs|hold_not_shared|all_withdrawn|agency_withdrawn
    reason: str = Field(max_length=16)
    evidence: dict = Field(sa_column=Column(JSON, nullable=False))
    # open|resolved, or the decision: merge|keep_apart|use_contact|keep_fallback|release|keep_held
    # |send_correction|no_action
    status: str = Field(default="open", max_length=16)
    # use_contact: the record whose contact the coordinator confirmed
    chosen_agency_id: str | None = Field(default=None, max_length=128)
    chosen_source_record_id: str | None = Field(default=None, max_length=128,
                                                sa_type=code_point_string(128))
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # retraction decided send_correction: the correction notice it made
    correction_notice_id: str | None = Field(default=None, max_length=128)
    applied: bool = True  # decisions are applied by the partition owner's consumer loop
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PartitionOwner(SQLModel, table=True):
    """Who holds an affected-records partition's state now, and since which claim: every
    write of the partition's incidents checks its claim's epoch first (a fence), so two
    instances can never both commit state for one incident."""

    __tablename__ = "partition_owner"

    partition: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    epoch: int
    owner: str = Field(max_length=128)  # host, process and instance: for ops, never checked
    claimed_at: datetime = Field(sa_type=UTCDateTime)


MODELS = [IncidentState, RecordState, PersonState, NoticeState, ReviewState, PartitionOwner]
