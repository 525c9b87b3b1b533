"""The release policy, as plain functions of state and time (no I/O).

An incident's notices are held until every expected agency has marked its contribution
complete, or its hold deadline passes — whichever comes first — or the coordinator releases
by hand. After release, a new person gets a notice once their records have been quiet for
the settle window; a person already notified gets an amendment only when a record adds an
agency or data category they were not told about (per the incident's policy). A person with
a record under an s 116 hold gets nothing until the hold is lifted (or a coordinator releases
the other agencies' part, conflicts.py — lifting the hold then amends, whatever `amend_on`
says: s 116 delayed that agency's notice, it did not excuse it); a person whose only
channels are contested between agencies waits for a coordinator's choice; a person whose
contact a coordinator confirmed after their notice gets it again on that contact (an
amendment). What a re-identified person (records merged or split) has been told is
lineage.py's business.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from services.common.messages import ReleasePolicy


class ReleaseReason(StrEnum):
    COMPLETE = "complete"
    DEADLINE = "deadline"
    # At the deadline, with records an agency announced in its completion never received.
    DEADLINE_MISSING = "deadline-missing"
    MANUAL = "manual"


def missing_records(announced: Mapping[str, int], seen: Mapping[str, int]) -> dict[str, int]:
    """Per agency that completed: how many of the records its completion announced (live
    and withdrawn) have not arrived. Records sent after the completion count as arrived, so
    this is 0 when nothing was lost, however the agency went on."""
    return {a: n - seen.get(a, 0) for a, n in sorted(announced.items()) if n > seen.get(a, 0)}


def incident_release_reason(
    expected_agency_ids: list[str],
    completed_agency_ids: set[str],
    policy: ReleasePolicy,
    manual_requested: bool,
    now: datetime,
    missing: Mapping[str, int] | None = None,
) -> ReleaseReason | None:
    """Why the incident is released now, or None while it is still held. An agency is
    complete only when the records its completion counts have all arrived (`missing`: what
    `missing_records` says): a lost message holds the release until the deadline."""
    missing = missing or {}
    if manual_requested:
        return ReleaseReason.MANUAL
    complete = completed_agency_ids - set(missing)
    if expected_agency_ids and set(expected_agency_ids) <= complete:
        return ReleaseReason.COMPLETE
    if policy.hold_deadline is not None and now >= policy.hold_deadline:
        return ReleaseReason.DEADLINE_MISSING if missing else ReleaseReason.DEADLINE
    return None


class Action(StrEnum):
    NOTHING = "nothing"  # no live records, or nothing new to say
    WAIT = "wait"  # incident not released yet, or inside the settle window
    HOLD = "hold"  # an s 116 hold on one of the person's records
    HOLD_CONTACT = "hold_contact"  # every channel contested between agencies, undecided
    NOTIFY = "notify"  # first notice
    AMEND = "amend"  # amendment notice


@dataclass(frozen=True)
class PersonView:
    live_records: int
    any_on_hold: bool
    agency_ids: frozenset[str]
    categories: frozenset[str]
    first_seen_at: datetime
    changed_at: datetime
    notified_version: int
    notified_agency_ids: frozenset[str]
    notified_categories: frozenset[str]
    held_for_contact: bool = False
    resend: bool = False  # a contact confirmed since the last notice: send it again there
    # An agency's part of a sent notice was held back under s 116 (a released hold conflict)
    # and the hold is gone: s 116 only delayed that agency's notice, so it is owed whatever
    # `amend_on` says (docs/decisions.md, "A released hold conflict, lifted").
    held_part_released: bool = False


@dataclass(frozen=True)
class Decision:
    action: Action
    not_before: datetime | None = None  # for WAIT inside a settle window


def decide(person: PersonView, released_at: datetime | None, policy: ReleasePolicy,
           now: datetime) -> Decision:
    if person.live_records == 0:
        return Decision(Action.NOTHING)
    if person.any_on_hold:
        return Decision(Action.HOLD)
    if person.held_for_contact:
        return Decision(Action.HOLD_CONTACT)
    if released_at is None:
        return Decision(Action.WAIT)
    settle = timedelta(seconds=policy.settle_window_seconds)
    # Records that arrived before release go out with the release; later ones settle first.
    settled_at = released_at if person.changed_at <= released_at else person.changed_at + settle
    if person.notified_version == 0:
        if now < settled_at:
            return Decision(Action.WAIT, settled_at)
        return Decision(Action.NOTIFY)
    owed = person.held_part_released and bool(person.agency_ids - person.notified_agency_ids)
    if not (person.resend or owed or _adds_something(person, policy)):
        return Decision(Action.NOTHING)
    if now < settled_at:
        return Decision(Action.WAIT, settled_at)
    return Decision(Action.AMEND)


def _adds_something(person: PersonView, policy: ReleasePolicy) -> bool:
    new_agency = bool(person.agency_ids - person.notified_agency_ids)
    new_category = bool(person.categories - person.notified_categories)
    if policy.amend_on == "never":
        return False
    if policy.amend_on == "new_agency":
        return new_agency
    return new_agency or new_category
