"""A breach with known ground truth, for the fault suite and `make chaos`: who the true persons
are, which agencies hold a record of each, and how each can be reached.

Names and dates of birth come from the project's generator (benchmarks/resolver/generator.py:
Māori, Pacific, NZ European and Asian name pools, macrons and all). The records of one person
are the same at every agency and carry the person's NHI (unique, in the Z test range), and
every person's email, mobile and street address are theirs alone: the resolver's job is
trivial here on purpose, so that any person lost or notified twice is the pipeline's doing,
not a matching decision — and so that a message at a gateway names its person by address.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from benchmarks.resolver.generator import FeedGenerator
from services.common.nhi import LETTERS, check_character

# How people can be reached: (email, mobile) present, weights. Everyone has a street address,
# so a person without either is on the postal list, never unreachable.
DEFAULT_MIX = {("email", "mobile"): 45, ("email",): 20, ("mobile",): 25, (): 10}


@dataclass(frozen=True)
class TruePerson:
    index: int
    incident_id: str
    email: str | None
    mobile: str | None
    address_line1: str
    records: tuple[tuple[str, str], ...]  # (agency_id, source_record_id)

    def expected_channels(self, mode: str) -> tuple[str, ...]:
        """Where the person's first notice must go under the incident's channel mode, when
        no gateway refuses (the fallback order is email → sms → postal)."""
        if mode == "both":
            both = tuple(c for c, v in (("email", self.email), ("sms", self.mobile)) if v)
            return both or ("postal",)
        order = ("email", "sms") if mode == "email_else_sms" else ("sms", "email")
        for channel in order:
            if (self.email if channel == "email" else self.mobile):
                return (channel,)
        return ("postal",)


@dataclass
class GroundTruth:
    incidents: list[str]
    agencies: list[str]
    persons: list[TruePerson]
    feeds: dict[tuple[str, str], list[dict]]  # (incident, agency) -> intake records, in order
    mode: str = "email_else_sms"
    not_expected: set[int] = field(default_factory=set)  # persons a scenario withdrew entirely

    @property
    def records(self) -> int:
        return sum(len(f) for f in self.feeds.values())

    def expected(self) -> list[TruePerson]:
        return [p for p in self.persons if p.index not in self.not_expected]

    def person_by_email(self) -> dict[str, TruePerson]:
        return {p.email: p for p in self.persons if p.email}

    def person_by_mobile(self) -> dict[str, TruePerson]:
        return {p.mobile: p for p in self.persons if p.mobile}

    def person_by_address(self) -> dict[str, TruePerson]:
        return {p.address_line1: p for p in self.persons}

    def person_by_record(self) -> dict[tuple[str, str, str], TruePerson]:
        """(incident, agency, source record id) -> person."""
        return {(p.incident_id, a, s): p for p in self.persons for a, s in p.records}

    def record(self, incident_id: str, agency_id: str, source_record_id: str) -> dict:
        for r in self.feeds[(incident_id, agency_id)]:
            if r["source_record_id"] == source_record_id:
                return r
        raise KeyError(source_record_id)


def unique_nhis(rng: random.Random) -> Iterator[str]:
    """Valid test NHIs (old format, Z range), each once, in a seeded order."""
    heads = [f"Z{a}{b}" for a in LETTERS for b in LETTERS]
    rng.shuffle(heads)
    for head in heads:
        for body in rng.sample(range(1000), 1000):
            check = check_character(f"{head}{body:03d}")
            if check is not None:
                yield f"{head}{body:03d}{check}"


def incident_ids(n: int, partitions: int = 3, prefix: str = "inc-faults") -> list[str]:
    """`n` incident ids whose Kafka keys land on different partitions (as far as there are
    partitions), so several incidents exercise several partitions and their owners."""
    ids, used, i = [], set(), 0
    while len(ids) < n:
        candidate = f"{prefix}-{i}"
        partition = (murmur2(candidate.encode()) & 0x7FFFFFFF) % partitions
        if partition not in used or len(used) >= partitions:
            ids.append(candidate)
            used.add(partition)
        i += 1
    return ids


def ground_truth(records: int = 2000, *, agencies: int = 3, incidents: int = 1, seed: int = 1,
                 mode: str = "email_else_sms", mix: dict[tuple[str, ...], int] | None = None,
                 records_per_person: tuple[int, ...] = (1, 2, 2, 3),
                 incident_prefix: str = "inc-faults") -> GroundTruth:
    """About `records` affected records over `agencies` agencies (and `incidents` incidents),
    persons held by 1–3 agencies each. Deterministic for a seed. Truths that share one running
    system need incident ids of their own (`incident_prefix`): addresses repeat across truths,
    so a shared system's messages are told apart by their notice's incident (System.observe)."""
    rng = random.Random(seed)
    mix = mix or DEFAULT_MIX
    agency_ids = [f"ag-{i}" for i in range(agencies)]
    incident_list = incident_ids(incidents, prefix=incident_prefix)
    names = FeedGenerator(seed=seed).people(max(1, records))
    nhis = unique_nhis(rng)
    persons: list[TruePerson] = []
    feeds: dict[tuple[str, str], list[dict]] = {(i, a): [] for i in incident_list for a in agency_ids}
    total = 0
    while total < records:
        index = len(persons)
        truth = names[index % len(names)]
        incident = incident_list[index % len(incident_list)]
        reach = rng.choices(list(mix), list(mix.values()))[0]
        email = f"tp{index:06d}.s{seed}@example.nz" if "email" in reach else None
        mobile = f"+6421{index:07d}" if "mobile" in reach else None
        line1 = f"{index + 1} Faultline Road"
        nhi = next(nhis)
        count = min(rng.choice(records_per_person), agencies, records - total)
        held_by = sorted(rng.sample(agency_ids, count))
        keys = []
        for agency in held_by:
            srid = f"{agency}-{index:06d}"
            record = {
                "source_record_id": srid, "nhi": nhi,
                "given_names": truth.given.replace("_", " "),
                "family_name": truth.family.replace("_", " "),
                "date_of_birth": truth.dob.isoformat(),
                "address": {"line1": line1, "city": "Testville", "postcode": "9010"},
                "data_categories": ["clinical_notes"], "document_count": 1,
            }
            if email:
                record["email"] = email
            if mobile:
                record["mobile"] = mobile
            feeds[(incident, agency)].append(record)
            keys.append((agency, srid))
        persons.append(TruePerson(index, incident, email, mobile, line1, tuple(keys)))
        total += count
    return GroundTruth(incident_list, agency_ids, persons, feeds, mode)
