"""The Privacy Commissioner's report: counts per incident and per agency, with no personal data.

Each service answers `GET /v1/incidents/{incident_id}/report` with the counts it alone knows
(intake: records received, rejected and why, withdrawn; dedupe: persons resolved, held under
s 116 and on which ground, reviews decided, amendments; dispatch: notified, delivered by
channel, failed, unreachable) in one shape — rows of (agency or the whole incident, measure,
value) and dated milestones — so the coordinator's tool (`panui report`) combines them without
any service calling or importing another (docs/decisions.md, "The Privacy Commissioner's
report"). Values are counts and dates only; agency ids and names are the only names in it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, Field

from services.common.csvsafe import SafeWriter

INCIDENT = "incident"  # the scope of a row about the whole incident


class ReportCount(BaseModel):
    scope: str = Field(description='"incident", or "agency"')
    agency_id: str | None = Field(description="the agency (scope agency); null for the incident")
    measure: str = Field(description="what is counted, e.g. records.received, "
                         "deliveries.email.delivered, held.health_prejudice")
    value: int = Field(ge=0)
    service: str | None = Field(default=None, description="which service counted it: set in the "
                                "combined report (two services may count under one name, e.g. "
                                "persons.notified: dedupe's released, dispatch's received)")


class ReportMilestone(BaseModel):
    agency_id: str | None
    milestone: str = Field(description="e.g. incident.created, feed.first, release")
    at: datetime
    service: str | None = Field(default=None, description="which service recorded it: set in "
                                "the combined report")


class ServiceReport(BaseModel):
    service: str
    incident_id: str
    generated_at: datetime
    counts: list[ReportCount]
    milestones: list[ReportMilestone]


class Report(BaseModel):
    """The combined report of the three services."""

    incident_id: str
    generated_at: datetime
    services: list[str]
    counts: list[ReportCount]
    milestones: list[ReportMilestone]


def counts_of(incident: dict[str, int], by_agency: dict[str, dict[str, int]]) -> list[ReportCount]:
    """Rows from {measure: n} for the incident and {agency: {measure: n}}, in a fixed order."""
    rows = [ReportCount(scope=INCIDENT, agency_id=None, measure=m, value=v)
            for m, v in sorted(incident.items())]
    for agency_id in sorted(by_agency):
        rows += [ReportCount(scope="agency", agency_id=agency_id, measure=m, value=v)
                 for m, v in sorted(by_agency[agency_id].items())]
    return rows


def combine(parts: Iterable[ServiceReport], generated_at: datetime) -> Report:
    parts = list(parts)
    incident_ids = {p.incident_id for p in parts}
    if len(incident_ids) != 1:
        raise ValueError("the reports are not about one incident")
    return Report(
        incident_id=incident_ids.pop(), generated_at=generated_at,
        services=[p.service for p in parts],
        counts=[c.model_copy(update={"service": p.service}) for p in parts for c in p.counts],
        milestones=sorted((m.model_copy(update={"service": p.service})
                           for p in parts for m in p.milestones), key=lambda m: m.at),
    )


def report_csv(report: Report) -> str:
    """One table: section (count | milestone), agency, measure or milestone, value or date, and
    the service that counted or recorded it (two services may count under one name, e.g.
    persons.notified). `service` is the last column so the earlier ones keep their places.
    Formula-safe (services/common/csvsafe.py): agency ids and names come from outside."""
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.writerow(("incident_id", "section", "agency_id", "measure", "value", "service"))
    for c in report.counts:
        writer.writerow((report.incident_id, "count", c.agency_id or "", c.measure, c.value,
                         c.service or ""))
    for m in report.milestones:
        writer.writerow((report.incident_id, "milestone", m.agency_id or "", m.milestone,
                         m.at.isoformat(), m.service or ""))
    return out.getvalue()
