"""What different agencies contradict about one person, as plain functions (issue 18): their
contact details, and their s 116 holds. No last-writer-wins between agencies: one agency's
records must neither redirect nor silently suppress the notice about another agency's records.

Contacts. An email or mobile that two agencies' records give differently (after normalising)
is *contested* and is not used until a coordinator confirms one of them (`use_contact`); the
notice goes out on the uncontested channels meanwhile (the other of email/mobile, or post).
The person is held only when no uncontested channel is left; a coordinator's `keep_fallback`
then releases the notice without the contested field (no channel at all: dispatch lists the
person as unreachable, for the s 115 public notice). One agency's own records never contest
each other: a record's new version replaces the old, and among one agency's records the
newest wins as before. A notice to a representative uses the representative's channels, so
the person's own contested contacts do not matter then.

Holds. A hold (s 116: notice withheld, e.g. a practitioner judges it would prejudice the
person's health) still holds the whole person: the judgement is about the person, not about
one agency's rows. When other agencies' records of the person carry no hold, the hold is
shown to a coordinator (`hold_conflict`), because s 116 excuses only the agency that relies on
it and the others' duty to notify stands: `keep_held` keeps the person held; `release` sends
the notice about the other agencies' records only — the holding agency's records are left out
of it (never covered, never named) until its hold is lifted, which then amends.

Review ids come from the contesting records' keys and versions, so a decision holds for the
records it was made on; a new version of one of them asks again. Evidence names record ids,
agencies and fields, never values: records giving the same value share a `group` number.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.common.ids import stable_id
from services.dedupe.resolver.normalise import mobile_key

RecordKey = tuple[str, str]
CONTACT_FIELDS = ("email", "mobile")
CHANNEL_OF = {"email": "email", "mobile": "sms"}
CONTACT_DECISIONS = ("use_contact", "keep_fallback")
HOLD_DECISIONS = ("release", "keep_held")
RETRACTION_DECISIONS = ("send_correction", "no_action")  # retractions.py


def contact_key(name: str, value: object) -> int | None:
    """What a contact is compared by: the hash of its normalised value, kept in memory only
    (equal values, equal keys; never stored, logged or shown)."""
    if not value or not isinstance(value, str):
        return None
    normal = mobile_key(value) if name == "mobile" else value.strip().casefold()
    return hash((name, normal or value)) if (normal or value) else None


@dataclass(frozen=True, slots=True)
class Claim:
    """What one live record of the person says about reaching them."""

    key: RecordKey
    version: int
    email: int | None = None  # contact_key of its email
    mobile: int | None = None
    address: bool = False
    representative: bool = False
    on_hold: bool = False

    def contact(self, name: str) -> int | None:
        return self.email if name == "email" else self.mobile


@dataclass(frozen=True, slots=True)
class Conflict:
    """One question for a coordinator about one person."""

    review_id: str
    kind: str  # contact_conflict | hold_conflict | retraction (retractions.py)
    field: str | None  # email | mobile for a contact conflict
    a: RecordKey
    b: RecordKey
    reason: str
    evidence: dict


@dataclass(frozen=True, slots=True)
class Route:
    """How the person's notice is built and whether it may go out."""

    excluded: frozenset[str] = frozenset()  # contact fields left out of the notice
    chosen: Mapping[str, RecordKey] = field(default_factory=dict)  # confirmed: use this record's
    withheld: frozenset[RecordKey] = frozenset()  # records left out (a released hold conflict)
    held_for_contact: bool = False  # no uncontested channel and a contest undecided
    held: bool = False  # an s 116 hold holds the person
    conflicts: tuple[Conflict, ...] = ()


def contact_review_id(incident_id: str, name: str, claims: Iterable[Claim]) -> str:
    return stable_id("rev", incident_id, "contact", name,
                     *(f"{c.key[0]}\x1e{c.key[1]}\x1e{c.version}" for c in sorted(
                         claims, key=lambda c: c.key)))


def hold_review_id(incident_id: str, claims: Iterable[Claim]) -> str:
    return stable_id("rev", incident_id, "hold",
                     *(f"{c.key[0]}\x1e{c.key[1]}\x1e{c.version}\x1e{int(c.on_hold)}"
                       for c in sorted(claims, key=lambda c: c.key)))


def contested(claims: list[Claim], name: str) -> list[Claim] | None:
    """The records giving `name`, when two of them from different agencies differ; else None."""
    giving = sorted((c for c in claims if c.contact(name) is not None), key=lambda c: c.key)
    return giving if _contesting_pair(giving, name) else None


def _contesting_pair(giving: list[Claim], name: str) -> tuple[Claim, Claim] | None:
    """The first two records (by key) from different agencies whose `name` differs."""
    for i, a in enumerate(giving):
        for b in giving[i + 1:]:
            if a.key[0] != b.key[0] and a.contact(name) != b.contact(name):
                return a, b
    return None


def route(incident_id: str, claims: list[Claim], decisions: Mapping[str, tuple[str, RecordKey | None]]
          ) -> Route:
    """The person's route from their live records' claims and the coordinators' decisions
    (review id → (decision, chosen record))."""
    if not claims:
        return Route()
    conflicts: list[Conflict] = []
    held, withheld = False, frozenset()
    holding = [c for c in claims if c.on_hold]
    if holding:
        holders = {c.key[0] for c in holding}
        others = sorted({c.key[0] for c in claims} - holders)
        held = True
        if others:
            rid = hold_review_id(incident_id, claims)
            decision, _ = decisions.get(rid, (None, None))
            if decision == "release":
                held, withheld = False, frozenset(c.key for c in holding)
            conflicts.append(Conflict(
                rid, "hold_conflict", None, min(c.key for c in holding),
                min(c.key for c in claims if c.key[0] not in holders), "hold_not_shared",
                {"holding_agencies": sorted(holders), "other_agencies": others,
                 "held_records": [_ref(c) for c in sorted(holding, key=lambda c: c.key)],
                 "on_release": "notice about the other agencies' records only"}))
    told = [c for c in claims if c.key not in withheld]  # what the notice is built from
    excluded: set[str] = set()
    chosen: dict[str, RecordKey] = {}
    undecided = False
    contacts: list[Conflict] = []
    if not any(c.representative for c in told):
        for name in CONTACT_FIELDS:
            giving = contested(told, name)
            if giving is None:
                continue
            rid = contact_review_id(incident_id, name, giving)
            decision, record = decisions.get(rid, (None, None))
            if decision == "use_contact" and record in {c.key for c in giving}:
                chosen[name] = record
            else:
                excluded.add(name)
                undecided = undecided or decision is None
            contacts.append(_contact_conflict(rid, name, giving))
    channels = [CHANNEL_OF[n] for n in CONTACT_FIELDS
                if n not in excluded and any(c.contact(n) is not None for c in told)]
    if any(c.address for c in told):
        channels.append("postal")
    for conflict in contacts:  # what the notice falls back to meanwhile, for the coordinator
        conflict.evidence["fallback"] = channels
    return Route(frozenset(excluded), chosen, withheld, held_for_contact=undecided and not channels,
                 held=held, conflicts=tuple(conflicts + contacts))


def _ref(claim: Claim) -> dict:
    return {"agency_id": claim.key[0], "source_record_id": claim.key[1],
            "record_version": claim.version}


def _contact_conflict(rid: str, name: str, giving: list[Claim]) -> Conflict:
    groups: dict[int, int] = {}
    records = []
    for c in giving:
        group = groups.setdefault(c.contact(name), len(groups) + 1)  # type: ignore[arg-type]
        records.append({**_ref(c), "group": group})
    # The pair that contests (`giving` is contested): not always one with the first record —
    # an agency's own records may differ while another agrees with the first of them.
    a, b = _contesting_pair(giving, name)  # type: ignore[misc]
    return Conflict(rid, "contact_conflict", name, a.key, b.key, f"{name}_differs",
                    {"field": name, "records": records,
                     "agencies": sorted({c.key[0] for c in giving})})


class DecisionRefused(ValueError):
    """A decision that does not fit the review item (its kind, or a record not among it)."""

    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(message)
        self.code = code
        self.status = status


def check_decision(kind: str, decision: str, record: RecordKey | None, evidence: dict,
                   status: str = "open") -> None:
    """Raise DecisionRefused unless `decision` is one a coordinator can make on this item
    (`status`: the item's now). A retraction is decided once: a correction notice, once
    made, cannot be unsent, so neither decision is changed afterwards."""
    if kind == "retraction" and status in RETRACTION_DECISIONS:
        raise DecisionRefused("review.already_decided",
                              "This retraction was decided already; it is decided once.", 409)
    allowed = {"pair": ("merge", "keep_apart"), "contact_conflict": CONTACT_DECISIONS,
               "hold_conflict": HOLD_DECISIONS, "retraction": RETRACTION_DECISIONS}[kind]
    if decision not in allowed:
        raise DecisionRefused("review.decision_not_applicable",
                              f"A {kind} review item takes one of: {', '.join(allowed)}.")
    if decision == "use_contact":
        among = {(r["agency_id"], r["source_record_id"]) for r in evidence.get("records", [])}
        if record is None or tuple(record) not in among:
            raise DecisionRefused("review.record_not_in_item",
                                  "use_contact needs `record`: one of the item's records.")
    elif record is not None:
        raise DecisionRefused("review.record_not_applicable",
                              "Only use_contact takes a `record`.")
