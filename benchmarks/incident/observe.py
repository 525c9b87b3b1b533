"""What the three services' databases say about one incident: cheap counts while it runs
(`snapshot`), and at the end, every record followed through the whole system — accepted by
intake, resolved to a person by dedupe, that person's notice received and delivered by
dispatch — and compared with the generator's truth (`outcome`). Read-only SQL on the services'
own tables, PostgreSQL or SQLite alike; nothing here changes what the services do."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from benchmarks.incident.scenario import RecordKey

SUCCESS = ("sent", "delivered")
IN_FLIGHT = ("sending", "temporary-failure", "technical-failure")


def _ts(value: object) -> float | None:
    """Epoch seconds of a timestamp column as the driver returns it (SQLite: text; PostgreSQL
    'timestamp without time zone': naive UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


@dataclass
class Snapshot:
    at: float
    accepted: int = 0
    rejected: int = 0
    intake_outbox: int = 0
    applied: int = 0
    persons: dict[str, int] = field(default_factory=dict)  # by status: pending, held, notified
    in_review: int = 0  # open identity review pairs (not contact/hold conflicts or retractions)
    released_at: float | None = None
    notices: int = 0  # released by dedupe
    dedupe_outbox: int = 0
    received: int = 0  # notices dispatch has stored
    planned: int = 0  # of those, with their deliveries planned
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, status)

    @property
    def unsettled(self) -> int:
        """Deliveries not yet at a resting state (postal 'queued' is the mail-out list: rests)."""
        return sum(n for (channel, status), n in self.deliveries.items()
                   if status in IN_FLIGHT or (status == "queued" and channel != "postal"))

    def by_channel(self, statuses: tuple[str, ...] = SUCCESS) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (channel, status), n in self.deliveries.items():
            if status in statuses:
                out[channel] += n
        return dict(out)

    def done(self, expected_records: int) -> bool:
        """Every record applied, the incident released, every person decided, every notice
        published, received, planned and at rest."""
        return (self.applied >= expected_records and self.released_at is not None
                and not self.persons.get("pending") and self.dedupe_outbox == 0
                and self.received >= self.notices and self.planned == self.received
                and self.unsettled == 0)


class Observer:
    def __init__(self, databases: dict[str, str], incident_id: str) -> None:
        self.incident_id = incident_id
        self.engines: dict[str, Engine] = {
            name: create_engine(url, pool_size=1, max_overflow=0) for name, url in databases.items()}

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()

    def _rows(self, service: str, sql: str) -> list:
        with self.engines[service].connect() as conn:
            return conn.execute(text(sql), {"i": self.incident_id}).all()

    def _one(self, service: str, sql: str) -> object:
        rows = self._rows(service, sql)
        return rows[0][0] if rows else None

    def snapshot(self, now: float) -> Snapshot:
        s = Snapshot(at=now)
        row = self._rows("intake", "SELECT coalesce(sum(accepted), 0), coalesce(sum(rejected), 0) "
                                   "FROM feed WHERE incident_id = :i")[0]
        s.accepted, s.rejected = int(row[0]), int(row[1])
        s.intake_outbox = int(self._one("intake", "SELECT count(*) FROM outbox_message"))
        s.applied = int(self._one("dedupe", "SELECT count(*) FROM record_state WHERE incident_id = :i"))
        s.persons = {status: int(n) for status, n in self._rows(
            "dedupe", "SELECT status, count(*) FROM person_state WHERE incident_id = :i GROUP BY status")}
        s.in_review = int(self._one("dedupe", "SELECT count(*) FROM review_state "
                                              "WHERE incident_id = :i AND kind = 'pair' "
                                              "AND status = 'open'"))
        s.released_at = _ts(self._one("dedupe", "SELECT released_at FROM incident_state "
                                                "WHERE incident_id = :i"))
        s.notices = int(self._one("dedupe", "SELECT count(*) FROM notice_state WHERE incident_id = :i"))
        s.dedupe_outbox = int(self._one("dedupe", "SELECT count(*) FROM outbox_message"))
        for planned, n in self._rows("dispatch", "SELECT planned, count(*) FROM dispatch_notice "
                                                 "WHERE incident_id = :i GROUP BY planned"):
            s.received += int(n)
            s.planned += int(n) if planned else 0
        s.deliveries = {(c, st): int(n) for c, st, n in self._rows(
            "dispatch", "SELECT channel, status, count(*) FROM delivery WHERE incident_id = :i "
                        "GROUP BY channel, status")}
        return s

    def timestamps(self) -> dict[str, float | None]:
        """Stage boundaries the services stamped themselves (epoch seconds)."""
        return {
            "first_accepted": _ts(self._one("intake", "SELECT min(received_at) FROM affected_record "
                                                      "WHERE incident_id = :i")),
            "last_accepted": _ts(self._one("intake", "SELECT max(received_at) FROM affected_record "
                                                     "WHERE incident_id = :i")),
            "released_at": _ts(self._one("dedupe", "SELECT released_at FROM incident_state "
                                                   "WHERE incident_id = :i")),
            "last_notice_released": _ts(self._one("dedupe", "SELECT max(created_at) FROM notice_state "
                                                            "WHERE incident_id = :i")),
            "first_send": self._one("dispatch", "SELECT min(first_attempt_at) FROM delivery "
                                                "WHERE incident_id = :i"),
            "last_delivery": _ts(self._one("dispatch", "SELECT max(updated_at) FROM delivery "
                                                       "WHERE incident_id = :i")),
        }

    def notices_by_channel(self) -> Counter[str]:
        """The incident's notices (people, as resolved) by the best channel that reached them."""
        return primary_channels(self._rows(
            "dispatch", "SELECT notice_id, channel, status FROM delivery WHERE incident_id = :i"))

    def outcome(self, truth: dict[RecordKey, int]) -> dict:
        """Correctness against the truth, and record-to-notice latency."""
        accepted_at = {(a, r): _ts(t) for a, r, t in self._rows(
            "intake", "SELECT agency_id, source_record_id, min(received_at) FROM affected_record "
                      "WHERE incident_id = :i GROUP BY agency_id, source_record_id")}
        resolved = self._rows("dedupe", """
            SELECT r.agency_id, r.source_record_id, p.notice_person_id, p.status
            FROM record_state r LEFT JOIN person_state p
              ON p.incident_id = r.incident_id AND p.person_id = r.person_id
            WHERE r.incident_id = :i AND NOT r.withdrawn""")
        # Identity pairs only: the queue also holds contact and hold conflicts and retractions
        # (one person each, nothing kept apart), which are not "in review" as people.
        review_pairs = [((a1, r1), (a2, r2)) for a1, r1, a2, r2 in self._rows("dedupe", """
                SELECT a_agency_id, a_source_record_id, b_agency_id, b_source_record_id
                FROM review_state WHERE incident_id = :i AND kind = 'pair' AND status = 'open'""")]
        review_records = {k for pair in review_pairs for k in pair}
        notices = {pid: nid for nid, pid in self._rows(
            "dispatch", "SELECT notice_id, person_id FROM dispatch_notice "
                        "WHERE incident_id = :i AND version = 1")}
        amendments = int(self._one("dispatch", "SELECT count(*) FROM dispatch_notice "
                                               "WHERE incident_id = :i AND version > 1"))
        delivered_at: dict[str, float] = {}  # first notice's earliest successful delivery
        channels: dict[str, set[str]] = {}
        for nid, channel, status, updated in self._rows(
                "dispatch", "SELECT notice_id, channel, status, updated_at FROM delivery "
                            "WHERE incident_id = :i"):
            if status in SUCCESS:
                at = _ts(updated)
                delivered_at[nid] = min(delivered_at.get(nid, at), at)
                channels.setdefault(nid, set()).add(channel)
            elif (channel, status) in (("postal", "queued"), ("none", "unreachable")):
                channels.setdefault(nid, set()).add(channel)

        notices_of: dict[int, set[str]] = {}  # true person -> notices (first notices' ids)
        persons_of: dict[str, set[int]] = {}  # notice -> true persons its records belong to
        held: set[int] = set()
        held_for_contact: set[int] = set()
        in_review: set[int] = set()
        notice_of_record: dict[RecordKey, str] = {}
        latencies: list[float] = []
        for agency_id, source_id, notice_person, status in resolved:
            person = truth.get((agency_id, source_id))
            if person is None:
                continue  # not a record of this incident's truth (cannot happen in a run)
            notices_of.setdefault(person, set())
            if (agency_id, source_id) in review_records:
                in_review.add(person)
            if status == "held":
                held.add(person)
            elif status == "held_contact":  # contested contact, no other channel: a coordinator's
                held_for_contact.add(person)
            nid = notices.get(notice_person) if notice_person else None
            if nid is None:
                continue
            notices_of[person].add(nid)
            notice_of_record[(agency_id, source_id)] = nid
            persons_of.setdefault(nid, set()).add(person)
            start, end = accepted_at.get((agency_id, source_id)), delivered_at.get(nid)
            if start is not None and end is not None:
                latencies.append(end - start)

        tally = count_notices(notices_of, persons_of, held, held_for_contact)
        tally["two_or_more_in_review"] = split_in_review(notice_of_record, truth, review_pairs)
        persons = len(notices_of)
        by_channel = Counter(_primary(set().union(*(channels.get(n, set()) for n in nids)))
                             for nids in notices_of.values() if nids)
        latencies.sort()
        truth_persons = len(set(truth.values()))
        return {
            "true_persons": truth_persons,
            "persons_with_accepted_records": persons,
            "persons_without_accepted_records": truth_persons - persons,
            "records_resolved": len(resolved),
            **tally,
            "notices": len(notices),
            "amendments": amendments,
            "in_review": len(in_review),
            "review_pairs": len(review_pairs),
            # Each person once, by the best channel that reached them (the postal list counts).
            "notified_by": {k: by_channel[k] for k in ("email", "sms", "postal")},
            "unreachable": by_channel["none"],
            "not_yet_delivered": by_channel["pending"],
            "latency_s": {
                "p50": round(_quantile(latencies, 0.50), 1) if latencies else None,
                "p99": round(_quantile(latencies, 0.99), 1) if latencies else None,
                "max": round(latencies[-1], 1) if latencies else None,
                "records": len(latencies),
            },
        }


def count_notices(notices_of: dict[int, set[str]], persons_of: dict[str, set[int]],
                  held: set[int], held_for_contact: set[int] = frozenset()) -> dict:
    """True people by how many first notices reached them, and notices by how many true people
    their records belong to. `held`: true people with a record in a person on hold (s 116) —
    a held person split in two can still have a notice through the part without the hold, so
    `held` overlaps the notified counts: `none_not_held` and `held_notified` say which is which.
    `held_for_contact`: true people with a record in a person held until a coordinator picks
    between contested contacts (no uncontested channel left); no notice yet, by design, so not
    in `none_not_held` either."""
    counts = Counter(min(len(v), 2) for v in notices_of.values())
    persons = len(notices_of)
    waiting = held | held_for_contact
    return {
        "exactly_one": round(counts[1] / persons, 6) if persons else 0.0,
        "exactly_one_count": counts[1],
        "none": counts[0],
        "two_or_more": counts[2],
        "spanning": sum(len(v) > 1 for v in persons_of.values()),
        "held": len(held),
        "held_for_contact": sum(1 for p in held_for_contact if not notices_of.get(p)),
        "none_not_held": sum(1 for p, v in notices_of.items() if not v and p not in waiting),
        "held_notified": sum(1 for p in held if notices_of.get(p)),
    }


def split_in_review(notice_of: dict[RecordKey, str], truth: dict[RecordKey, int],
                    review_pairs: list[tuple[RecordKey, RecordKey]]) -> int:
    """True people with two or more notices whose notices are all joined by open review pairs
    between their own records: kept apart until a reviewer decides (precision first; reviews
    never hold a release), not split by the resolver unasked. `notice_of`: each notified
    record's notice (or, offline, its resolved person)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in review_pairs:
        if a in notice_of and b in notice_of and truth.get(a) == truth.get(b):
            parent[find(notice_of[a])] = find(notice_of[b])
    parts: dict[int, set[str]] = {}
    for key, nid in notice_of.items():
        parts.setdefault(truth[key], set()).add(nid)
    return sum(1 for nids in parts.values() if len(nids) > 1 and len({find(n) for n in nids}) == 1)


def _primary(channels: set[str]) -> str:
    for channel in ("email", "sms", "postal", "none"):
        if channel in channels:
            return channel
    return "pending"


def primary_channels(deliveries: list[tuple[str, str, str]]) -> Counter[str]:
    """Notices by the best channel that reached them, from (notice_id, channel, status) rows."""
    per: dict[str, set[str]] = {}
    for nid, channel, status in deliveries:
        if status in SUCCESS or (channel, status) in (("postal", "queued"), ("none", "unreachable")):
            per.setdefault(nid, set()).add(channel)
        else:
            per.setdefault(nid, set())
    return Counter(_primary(c) for c in per.values())


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
