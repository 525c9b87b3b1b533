"""Retractions (issue 16), as plain functions: records withdrawn after a notice told the
person about them. Without this they disappeared silently: the person kept a notice saying an
agency held their information when the agency says it never did (sent in error).

A notice lineage (lineage.py) told a person about the records it covered (`told_lineage`).
When every record of one agency that a lineage told about is withdrawn, that agency was named
wrongly (`agency_withdrawn`); when every record it told about is withdrawn, the whole notice
was (`all_withdrawn`: sent in error). Either opens one `retraction` review item for a
coordinator, who decides `send_correction` (a correction notice: the next version of the
lineage, to whoever the earlier notice was built for) or `no_action`. Withdrawals before any
notice told about the records open nothing (no told lineage), nor does an agency that still
has a live record the lineage told about.

The review id comes from the lineage and the withdrawn records' keys and versions, so a
replayed withdrawal finds the same item (decided items are never asked again), and a further
agency withdrawn later asks about the new set. Evidence names agencies and record ids, never
values.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from services.common.ids import stable_id
from services.dedupe.conflicts import RETRACTION_DECISIONS, Conflict

RecordKey = tuple[str, str]
__all__ = ["RETRACTION_DECISIONS", "Retraction", "Told", "retractions"]


@dataclass(frozen=True, slots=True)
class Told:
    """One record a lineage's notice told about, as it is now."""

    lineage_id: str
    key: RecordKey
    version: int
    withdrawn: bool


@dataclass(frozen=True, slots=True)
class Retraction:
    review_id: str
    lineage_id: str
    kind: str  # sent_in_error | agency_not_involved (the correction notice it would send)
    withdrawn_agencies: tuple[str, ...]
    standing_agencies: tuple[str, ...]
    withdrawn: tuple[RecordKey, ...]  # the told records of the withdrawn agencies
    standing: tuple[RecordKey, ...]  # the told records still live

    def conflict(self) -> Conflict:
        reason = "all_withdrawn" if self.kind == "sent_in_error" else "agency_withdrawn"
        return Conflict(
            self.review_id, "retraction", None, self.withdrawn[0],
            self.standing[0] if self.standing else self.withdrawn[0], reason,
            {"notice_person_id": self.lineage_id, "correction": self.kind,
             "withdrawn_agencies": list(self.withdrawn_agencies),
             "standing_agencies": list(self.standing_agencies),
             "withdrawn_records": [{"agency_id": k[0], "source_record_id": k[1]}
                                   for k in self.withdrawn],
             "on_send_correction": (
                 "a correction notice: the earlier notice was sent in error"
                 if self.kind == "sent_in_error" else
                 "a correction notice: the withdrawn agencies were not involved; the standing "
                 "agencies' part of the notice stands")})


def retraction_review_id(incident_id: str, lineage_id: str, withdrawn: Iterable[Told]) -> str:
    return stable_id("rev", incident_id, "retraction", lineage_id,
                     *(f"{t.key[0]}\x1e{t.key[1]}\x1e{t.version}"
                       for t in sorted(withdrawn, key=lambda t: t.key)))


def retractions(incident_id: str, told: Iterable[Told]) -> list[Retraction]:
    """The retractions due now, from every record some lineage told about."""
    by_lineage: dict[str, list[Told]] = {}
    for t in told:
        by_lineage.setdefault(t.lineage_id, []).append(t)
    found = []
    for lineage_id, records in sorted(by_lineage.items()):
        live_agencies = {t.key[0] for t in records if not t.withdrawn}
        gone = sorted({t.key[0] for t in records} - live_agencies)
        if not gone:
            continue
        withdrawn = sorted((t for t in records if t.key[0] in gone), key=lambda t: t.key)
        standing = sorted(t.key for t in records if not t.withdrawn)
        found.append(Retraction(
            retraction_review_id(incident_id, lineage_id, withdrawn), lineage_id,
            "agency_not_involved" if live_agencies else "sent_in_error", tuple(gone),
            tuple(sorted(live_agencies)), tuple(t.key for t in withdrawn), tuple(standing)))
    return found
