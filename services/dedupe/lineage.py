"""Notice lineages: what a person has been told, as plain functions (no I/O).

A person's notices carry one id (the notice person id, a "lineage"): version 1 is the first
notice, later versions amend it. Who is told what is a fact about records: a notice covers
the records (each at its version) of the person it went to. When the resolver re-identifies
people — records merge, split, are withdrawn and sent again — a person is told exactly when
some live record of theirs is, at its current version, covered by a notice (a later version
about the same person — an agency's correction of something else — stays covered;
identity.apply_record):

* a person with no covered record was told nothing: their next notice is a first notice,
  under a lineage id never used in the incident (never a split-off part's "already told");
* a person whose covered records came from one lineage continues it (an amendment next);
* records of several lineages merged: the person continues the smallest lineage id, told
  what that lineage told — so the next notice is the one amendment that names everything
  (one coordinated notice), and the other lineages end;
* one lineage split over several persons: one part keeps it (the part that held it, else
  the one with the smallest covered record), each other part continues under a lineage id
  of its own derived from it — told what the lineage told, so an amendment next, and never
  the same notice id as the part that kept it.

No two live persons ever hold one lineage id, and a lineage's next version is always one
more than the highest it has issued, so notice ids (incident, lineage, version) never
collide.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

RecordKey = tuple[str, str]
# (base lineage id, the record it is derived through, attempt) -> a candidate lineage id
Derive = Callable[[str, RecordKey, int], str]


@dataclass(slots=True)
class Lineage:
    """What the notices under one lineage id have told, and who holds it now."""

    version: int  # the highest version issued (or inherited, for a derived lineage)
    agency_ids: frozenset[str]
    categories: frozenset[str]
    holder: str | None = None  # the live person holding it; None: nobody now


@dataclass(frozen=True, slots=True)
class Told:
    """What one person has been told: the lineage their next notice continues."""

    lineage_id: str | None  # None: told nothing, the next notice is a first notice
    version: int
    agency_ids: frozenset[str]
    categories: frozenset[str]


NOTHING = Told(None, 0, frozenset(), frozenset())


def assign_lineages(claims: Mapping[str, Mapping[str, RecordKey]],
                    current: Mapping[str, str | None],
                    lineages: Mapping[str, Lineage], derive: Derive) -> dict[str, Told]:
    """The lineage of every person being re-decided (`claims`: person → the lineages whose
    notices cover some live record of theirs, each with the smallest such record).
    `current`: each of those persons' lineage before; `lineages`: every lineage of the
    incident — a holder that is not among `claims` keeps its lineage."""
    deciding = set(claims)
    taken = {lid for lid, lin in lineages.items()
             if lin.holder is not None and lin.holder not in deciding}
    keeper: dict[str, str] = {}  # person -> the lineage it keeps
    for lid in sorted({lid for c in claims.values() for lid in c}):
        if lid in taken:
            continue
        claimants = sorted((current.get(p) != lid, c[lid], p) for p, c in claims.items()
                           if lid in c and p not in keeper)
        if claimants:
            keeper[claimants[0][2]] = lid
            taken.add(lid)
    told: dict[str, Told] = {}
    for person_id in sorted(claims):
        claimed = claims[person_id]
        if not claimed:
            told[person_id] = NOTHING
            continue
        lineage_id = base = keeper.get(person_id)
        if lineage_id is None:  # a part split off: a lineage of its own, derived
            base = min(claimed)
            lineage_id = _unused(base, claimed[base], person_id, lineages, taken, derive)
            taken.add(lineage_id)
        # A derived lineage used before (by this part) goes on from its own highest version.
        known = [lineages[lid] for lid in {base, lineage_id} if lid in lineages]
        told[person_id] = Told(
            lineage_id,
            max((lin.version for lin in known), default=0),
            lineages[base].agency_ids if base in lineages else frozenset(),
            lineages[base].categories if base in lineages else frozenset(),
        )
    return told


def first_lineage_id(person_id: str, lineages: Mapping[str, Lineage], derive: Derive) -> str:
    """The lineage id of a first notice: the resolver's person id, unless the incident has
    used it before (its records were told, withdrawn and sent again)."""
    if person_id not in lineages:
        return person_id
    return _unused(person_id, ("", ""), None, lineages, set(), derive)


def _unused(base: str, key: RecordKey, person_id: str | None, lineages: Mapping[str, Lineage],
            taken: set[str], derive: Derive) -> str:
    """A derived id no other person holds or has used (the person's own earlier one is fine:
    it keeps the id it derived before)."""
    attempt = 0
    while True:
        candidate = derive(base, key, attempt)
        known = lineages.get(candidate)
        if candidate not in taken and (known is None or known.holder in (None, person_id)
                                       and person_id is not None):
            return candidate
        attempt += 1
