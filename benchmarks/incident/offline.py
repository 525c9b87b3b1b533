"""The yardstick for a run's notices: the production resolver, in this process, over the same
accepted records the run fed in, in the same order, as the dedupe service drives it (one record
at a time, then at release the household test, `learn_weights(levels=False)`, see
services/dedupe/identity.py).

How many people the resolver keeps apart is the resolver's quality, measured against its goals
by benchmarks/resolver. What the whole system must guarantee is that Kafka, PostgreSQL and the
services add nothing to it: no more people with two notices than the resolver alone splits
across two persons, and no notice covering two people. `resolve` gives the resolver's own
counts with count_notices' semantics (a true person's records in how many resolved persons;
a person holding a record on an s 116 hold gets no notice, as in the service).
"""

from __future__ import annotations

from collections.abc import Iterator

from benchmarks.incident import flow
from benchmarks.incident.observe import count_notices, split_in_review
from benchmarks.incident.scenario import Incident, RecordKey
from services.common.crypto import Sealer, generate_key_spec
from services.common.messages import SealedPersonalFields, record_sealing_context
from services.dedupe.identity import match_record
from services.dedupe.resolver import Resolver
from services.intake.parsing import ParseError, iter_feed
from services.intake.validation import validate_record

INCIDENT = "offline"
PERSONAL = frozenset(SealedPersonalFields.model_fields)  # what intake seals of a clean record


def accepted(incident: Incident) -> Iterator[tuple[str, dict]]:
    """(agency_id, clean record) for every record intake accepts, in the order the run
    uploads them (one agency at a time, largest feed first: `--clients 1`)."""
    feeds = {a.agency_id: incident.feed_path(a.agency_id) for a in incident.agencies}
    for agency_id in flow.upload_order(feeds):
        with feeds[agency_id].open("rb") as f:
            for line, item in iter_feed(f, "ndjson"):
                if isinstance(item, ParseError):
                    continue
                result = validate_record(item, line)
                if result.record is not None:
                    yield agency_id, result.record


def resolve(incident: Incident) -> dict:
    """The resolver's own split and spanning counts on the run's accepted records."""
    sealer = Sealer(generate_key_spec("offline"))
    resolver = Resolver()
    on_hold: set[RecordKey] = set()
    for agency_id, record in accepted(incident):
        srid = record["source_record_id"]
        # Through seal and open as the record travels intake → Kafka → dedupe.
        personal = {k: v for k, v in record.items() if k in PERSONAL}
        sealed = sealer.seal(personal, record_sealing_context(INCIDENT, agency_id, srid, 1))
        resolver.add(match_record(sealer, INCIDENT, agency_id, srid, 1, sealed))
        resolver.drain_changes()
        if record.get("hold"):
            on_hold.add((agency_id, srid))
    resolver.learn_weights(levels=False)  # at release, before the first notices
    resolver.drain_changes()
    assignments = resolver.assignments()
    held_persons = {pid for a, s, pid in assignments if (a, s) in on_hold}
    notices_of: dict[int, set[str]] = {}  # true person -> resolved persons with a notice
    persons_of: dict[str, set[int]] = {}  # resolved person -> true persons
    held: set[int] = set()
    notice_of: dict[RecordKey, str] = {}
    for agency_id, srid, pid in assignments:
        person = incident.truth[(agency_id, srid)]
        notices_of.setdefault(person, set())
        if pid in held_persons:
            held.add(person)
            continue
        notices_of[person].add(pid)
        persons_of.setdefault(pid, set()).add(person)
        notice_of[(agency_id, srid)] = pid
    pairs = [(item.a, item.b) for item in resolver.review_items()]
    in_review = {incident.truth[k] for pair in pairs for k in pair}
    return {"records_accepted": len(assignments), "persons": len(set(p for *_, p in assignments)),
            "persons_with_accepted_records": len(notices_of), "review": len(pairs),
            "in_review": len(in_review), "review_pairs": len(pairs),
            "two_or_more_in_review": split_in_review(notice_of, incident.truth, pairs),
            **count_notices(notices_of, persons_of, held)}
