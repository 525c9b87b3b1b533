"""The bodies of intake's HTTP API: what the coordinator and agencies send, and what they get
back (`contracts/openapi/intake.json` is generated from these)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from services.common import readability
from services.common.ids import Id
from services.common.messages import ChannelPolicy, IncidentContent, JsonInt, ReleasePolicy

if TYPE_CHECKING:  # what responses are shaped from
    from services.intake.auth import NewKey
    from services.intake.models import Feed, Incident
    from services.intake.store import EnrolledAgency, ProblemsPage
    from services.intake.validation import Problem

# --- requests -----------------------------------------------------------------------------------

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: object) -> object:
    """Reject text PostgreSQL cannot store (NUL) or UTF-8 cannot encode (lone surrogates),
    anywhere in a body, as a 422 rather than a failed insert."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            raise ValueError("text contains a NUL character or a lone surrogate")
    elif isinstance(value, dict):
        for k, v in value.items():
            _storable(k)
            _storable(v)
    elif isinstance(value, list):
        for v in value:
            _storable(v)
    return value


class _StorableBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _check_storable(cls, data: object) -> object:
        return _storable(data)


class TemplatesApproval(_StorableBody):
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$",
                             description="templates_mi_fingerprint from dispatch's notice preview")


class AgencyEnrol(_StorableBody):

    agency_id: Id
    name: str = Field(min_length=1, max_length=200)
    # Strict: 0 or "false" is not a boolean (the schema says boolean).
    expected: StrictBool = True  # expected agencies gate the incident's release


class IncidentCreate(_StorableBody):

    incident_id: Id
    title: str = Field(min_length=1, max_length=200)
    content: IncidentContent
    release_policy: ReleasePolicy = ReleasePolicy()
    channel_policy: ChannelPolicy = ChannelPolicy()
    expected_agencies: list[AgencyEnrol] = []
    # A rehearsal (like Notify's test keys), fixed here for good: everything runs, but
    # dispatch delivers only to the local simulated gateways and marks each notice a dry run.
    dry_run: StrictBool = False


class IncidentEdit(_StorableBody):
    """The incident's new title and notice content, edited from `revision`."""

    revision: JsonInt = Field(ge=1, le=2**31 - 1,
                          description="the revision the edit was made from (409 if it changed)")
    title: str = Field(min_length=1, max_length=200)
    content: IncidentContent


# --- responses ----------------------------------------------------------------------------------


class IssuedKey(BaseModel):
    agency_id: str
    key_id: str
    api_key: str = Field(description="Shown once; only a hash is kept.")

    @classmethod
    def of(cls, key: NewKey) -> IssuedKey:
        return cls(agency_id=key.agency_id, key_id=key.key_id, api_key=key.api_key)


class ContentWarning(BaseModel):
    """Advice on the notice content, not an error: the incident is created all the same."""

    code: str = Field(description="content.reading_grade: the text reads above the plain-"
                      "language grade")
    field: str = Field(description="e.g. steps_taken, mitigation_advice[1]")
    grade: float = Field(description="Flesch-Kincaid grade level of the text")
    max_grade: float
    message: str


class IncidentView(BaseModel):
    incident_id: str
    revision: int
    title: str
    content: IncidentContent
    release_policy: ReleasePolicy
    channel_policy: ChannelPolicy
    dry_run: bool = Field(description="a rehearsal: notices go only to the simulated gateways")
    agencies: list[dict]
    issued_keys: list[IssuedKey] = []
    warnings: list[ContentWarning] = Field(
        default=[], description="plain-language advice on the coordinator's free text")

    @classmethod
    def of(cls, incident: Incident, agencies: Sequence[EnrolledAgency],
           issued_keys: Sequence[NewKey] = ()) -> IncidentView:
        return cls(
            incident_id=incident.incident_id, revision=incident.revision, title=incident.title,
            content=incident.content, release_policy=incident.release_policy,
            channel_policy=incident.channel_policy, dry_run=incident.dry_run,
            issued_keys=[IssuedKey.of(k) for k in issued_keys],
            agencies=[{"agency_id": a.agency_id, "name": a.name, "expected": a.expected,
                       "completed_at": a.completed_at} for a in agencies],
            warnings=[ContentWarning(code="content.reading_grade", field=w.field, grade=w.grade,
                                     max_grade=w.max_grade, message=w.message)
                      for w in readability.check_fields(_free_text(incident))],
        )


def _free_text(incident: Incident) -> dict[str, str]:
    """The coordinator's own sentences that every notice prints (the Plain Language Act 2022
    asks for clear, concise public communication)."""
    content = incident.content
    fields = {name: content.get(name) or "" for name in (
        "breach_description", "suspected_holder_statement", "steps_taken", "complaint_right")}
    for i, step in enumerate(content.get("mitigation_advice") or []):
        fields[f"mitigation_advice[{i}]"] = step
    return fields


class IncidentListItem(BaseModel):
    incident_id: str
    title: str
    revision: int
    dry_run: bool
    created_at: datetime
    updated_at: datetime
    agencies: int = Field(description="Agencies enrolled")
    agencies_complete: int = Field(description="Enrolled agencies that marked their feeds complete")


class ProblemView(BaseModel):
    line: int
    source_record_id: str | None
    field: str | None
    severity: str
    code: str
    message: str

    @classmethod
    def of(cls, p: Problem) -> ProblemView:
        return cls(line=p.line, source_record_id=p.source_record_id, field=p.field,
                   severity=p.severity, code=p.code, message=p.message)


class FeedReceipt(BaseModel):
    feed_id: str
    incident_id: str
    format: str
    received: int
    accepted: int = Field(description="New records and new versions of records")
    unchanged: int = Field(description="Identical re-sends: no-ops")
    rejected: int
    warnings: int
    created_at: datetime
    problems: list[ProblemView] = Field(description="The first problems; see problems_url")
    problems_url: str

    @classmethod
    def of(cls, feed: Feed, problems: Sequence[Problem]) -> FeedReceipt:
        return cls(
            feed_id=feed.feed_id, incident_id=feed.incident_id, format=feed.format,
            received=feed.received, accepted=feed.accepted, unchanged=feed.unchanged,
            rejected=feed.rejected, warnings=feed.warnings, created_at=feed.created_at,
            problems=[ProblemView.of(p) for p in problems],
            problems_url=f"/v1/incidents/{feed.incident_id}/feeds/{feed.feed_id}/problems",
        )


class ProblemPage(BaseModel):
    feed_id: str
    problems: list[ProblemView]
    next_after_line: int | None

    @classmethod
    def of(cls, feed_id: str, page: ProblemsPage) -> ProblemPage:
        return cls(feed_id=feed_id, problems=[ProblemView.of(p) for p in page.problems],
                   next_after_line=page.next_after_line)


class Completion(BaseModel):
    incident_id: str
    agency_id: str
    completed_at: datetime
    record_count: int


class Withdrawal(BaseModel):
    incident_id: str
    source_record_id: str
    status: str = Field(description="withdrawn | already-withdrawn")


class IncidentClosure(BaseModel):
    """An incident's retention state: closed (no more feeds), purged at `purge_after`."""

    incident_id: str
    closed_at: datetime
    purge_after: datetime
    purged_at: datetime | None = None
