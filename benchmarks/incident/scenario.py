"""A whole breach incident with ground truth: which agencies, how many records each, and which
true person every record belongs to — built on the NZ generator's people and records
(benchmarks/resolver/generator.py: households, name variants, each agency's noise).

The shape is the portal breach's: one portal operator holding most records (every patient's
portal account, some with a second one), GP practices of very different sizes (a few large,
many small), labs and hospitals holding part of the same people. Each person's records are
drawn per agency kind, so the records-per-person distribution follows from the shape; BREACH
averages 3.17 records per person (400,000 records ≈ 126,000 people).

Feeds are written as NDJSON files (intake's feed format, one file per agency) with the truth
beside them, and reused while the shape, size, seed and generator code are the same.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.resolver import generator as nz
from benchmarks.resolver.generator import FeedGenerator, Noise, Truth

RecordKey = tuple[str, str]  # (agency_id, source_record_id)

CATEGORIES = {
    "portal": ("clinical_notes", "lab_results", "prescriptions", "referral_letters"),
    "gp": ("clinical_notes", "prescriptions", "referral_letters"),
    "lab": ("lab_results",),
    "hospital": ("discharge_summaries", "images", "clinical_notes"),
}


@dataclass(frozen=True)
class Agency:
    agency_id: str  # its kind first ("gp-…"): the generator picks each kind's noise from it
    name: str
    kind: str  # portal | gp | lab | hospital


@dataclass(frozen=True)
class Shape:
    """Who holds a person's records, as chances per person. Expected records per person:
    portal + portal_second + gp + gp_second + sum(labs) + sum(hospitals)."""

    name: str
    practices: int
    labs: tuple[float, ...]  # per lab: chance that it holds a record of a person
    hospitals: tuple[float, ...]
    portal: float = 0.97  # a portal account
    portal_second: float = 0.38  # a second account (a duplicate, or one per enrolled practice)
    gp: float = 0.98  # enrolled at a practice
    gp_second: float = 0.10  # moved practice: the old one still holds a record
    practice_skew: float = 0.9  # practice sizes ~ 1/rank^skew: a few large, many small
    holds: int = 0  # people whose hospital record carries an s 116 hold

    @property
    def records_per_person(self) -> float:
        return (self.portal + self.portal_second + self.gp + self.gp_second + sum(self.labs)
                + sum(self.hospitals))

    def agencies(self) -> list[Agency]:
        out = [Agency("portal-operator", "Patient Portal Operator", "portal")]
        out += [Agency(f"gp-{i + 1:03d}", f"GP Practice {i + 1}", "gp") for i in range(self.practices)]
        out += [Agency(f"lab-{i + 1}", f"Community Laboratory {i + 1}", "lab") for i in range(len(self.labs))]
        out += [Agency(f"hospital-{i + 1}", f"Hospital {i + 1}", "hospital")
                for i in range(len(self.hospitals))]
        return out


# ~50 agencies, 3.17 records per person: 400,000 records ≈ 126,000 people.
BREACH = Shape("breach", practices=44, labs=(0.30, 0.14, 0.06), hospitals=(0.16, 0.08))
# The demo's portal breach: the operator, 20 practices, two labs, a hospital; three people held.
DEMO = Shape("demo", practices=20, labs=(0.30, 0.15), hospitals=(0.2,), holds=3)
SHAPES = {s.name: s for s in (BREACH, DEMO)}


@dataclass
class Incident:
    """Feeds written to disk and the truth about them."""

    shape: str
    records: int
    seed: int
    folder: Path
    agencies: list[Agency]
    counts: dict[str, int]  # records per agency
    persons: int  # true persons with at least one record
    truth: dict[RecordKey, int] = field(repr=False, default_factory=dict)
    held: set[int] = field(repr=False, default_factory=set)  # true persons under a hold

    def feed_path(self, agency_id: str) -> Path:
        return self.folder / f"{agency_id}.ndjson"

    def records_per_person(self) -> dict[int, int]:
        """How many people have 1, 2, 3… records."""
        per: dict[int, int] = {}
        for person in self.truth.values():
            per[person] = per.get(person, 0) + 1
        hist: dict[int, int] = {}
        for n in per.values():
            hist[n] = hist.get(n, 0) + 1
        return dict(sorted(hist.items()))


def _fingerprint(shape: Shape, records: int, seed: int) -> str:
    """Changes whenever the generated feeds could: the shape, size, seed, and either module."""
    digest = hashlib.sha256(json.dumps([asdict(shape), records, seed]).encode())
    for source in (nz.__file__, __file__):
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


def build(shape: Shape, records: int, seed: int, root: Path) -> Incident:
    """The incident's feeds under root/<shape>-<records>-<seed>/, generated unless an identical
    generation is already there."""
    folder = root / f"{shape.name}-{records}-{seed}"
    stamp = folder / "incident.json"
    fingerprint = _fingerprint(shape, records, seed)
    if stamp.exists():
        meta = json.loads(stamp.read_text())
        if meta.get("fingerprint") == fingerprint:
            return _load(shape, meta, folder)
    folder.mkdir(parents=True, exist_ok=True)
    return _generate(shape, records, seed, folder, fingerprint)


def _people(gen: FeedGenerator, shape: Shape, records: int) -> Iterator[Truth]:
    """People enough for `records` records, in households, then more if the draw fell short."""
    while True:
        yield from gen.people(int(records / shape.records_per_person * 1.02) + 10)


def _holders(rng: random.Random, shape: Shape, agencies: list[Agency]) -> list[Agency]:
    """The agencies holding a record of one person (an agency twice: two records there)."""
    by_kind: dict[str, list[Agency]] = {}
    for a in agencies:
        by_kind.setdefault(a.kind, []).append(a)
    practices = by_kind.get("gp", [])
    weights = [1 / (i + 1) ** shape.practice_skew for i in range(len(practices))]
    out: list[Agency] = []
    if rng.random() < shape.portal:
        out.append(by_kind["portal"][0])
        if rng.random() < shape.portal_second:
            out.append(by_kind["portal"][0])
    if practices and rng.random() < shape.gp:
        first = rng.choices(practices, weights)[0]
        out.append(first)
        if len(practices) > 1 and rng.random() < shape.gp_second:
            out.append(rng.choice([p for p in practices if p is not first]))
    for lab, p in zip(by_kind.get("lab", []), shape.labs, strict=True):
        if rng.random() < p:
            out.append(lab)
    for hospital, p in zip(by_kind.get("hospital", []), shape.hospitals, strict=True):
        if rng.random() < p:
            out.append(hospital)
    return out


def feed_record(record: nz.MatchRecord, kind: str, rng: random.Random) -> dict:
    """A generator record as an agency sends it to intake (affected-record.v1 feed fields)."""
    address = {k: v for k, v in (("line1", record.address_line1), ("suburb", record.suburb),
                                 ("city", record.city), ("postcode", record.postcode)) if v}
    categories = CATEGORIES[kind]
    out = {
        "source_record_id": record.source_record_id,
        "nhi": record.nhi,
        "given_names": record.given_names,
        "family_name": record.family_name,
        "date_of_birth": record.date_of_birth.isoformat() if record.date_of_birth else None,
        "email": record.email,
        "mobile": record.mobile,
        "address": address or None,
        "data_categories": sorted(rng.sample(categories, rng.randint(1, len(categories)))),
        "document_count": rng.randint(1, 40),
    }
    return {k: v for k, v in out.items() if v is not None}


def _generate(shape: Shape, records: int, seed: int, folder: Path, fingerprint: str) -> Incident:
    agencies = shape.agencies()
    gen = FeedGenerator(seed, Noise())
    # The generator keys a clinic's shared phone by agency id: give it this incident's agencies.
    gen.agencies = [a.agency_id for a in agencies]
    gen.clinic_mobile = {a: f"+6493{i:06d}" for i, a in enumerate(gen.agencies)}
    rng = random.Random(seed * 7919 + 1)
    kinds = {a.agency_id: a.kind for a in agencies}
    per_agency: dict[str, list[tuple[dict, int]]] = {a.agency_id: [] for a in agencies}
    total = persons = 0
    hospital_people: list[int] = []
    for truth_person in _people(gen, shape, records):
        holders = _holders(rng, shape, agencies)
        if not holders:
            continue
        holders = holders[: records - total]
        for agency in holders:
            rows = per_agency[agency.agency_id]
            source_id = f"{agency.agency_id[:3].upper()}{len(rows) + 1:07d}"
            record = gen.record(truth_person, agency.agency_id, source_id)
            rows.append((feed_record(record, kinds[agency.agency_id], rng), persons))
        if any(a.kind == "hospital" for a in holders):
            hospital_people.append(persons)
        persons += 1
        total += len(holders)
        if total >= records:
            break
    held = set(rng.sample(hospital_people, min(shape.holds, len(hospital_people))))
    truth: dict[RecordKey, int] = {}
    counts: dict[str, int] = {}
    for agency_id, rows in per_agency.items():
        rng.shuffle(rows)  # an agency's export is in its own order, not the generator's
        with (folder / f"{agency_id}.ndjson").open("wb") as out:
            for row, person in rows:
                if person in held and kinds[agency_id] == "hospital":
                    row["hold"] = {"reason": "health_prejudice",
                                   "note": "Clinician to review before the person is told."}
                out.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
                truth[(agency_id, row["source_record_id"])] = person
        counts[agency_id] = len(rows)
    with (folder / "truth.tsv").open("w") as out:
        for (agency_id, source_id), person in truth.items():
            out.write(f"{agency_id}\t{source_id}\t{person}\n")
    meta = {"fingerprint": fingerprint, "shape": shape.name, "records": total, "seed": seed,
            "persons": persons, "counts": counts, "held": sorted(held)}
    (folder / "incident.json").write_text(json.dumps(meta, indent=1))
    return Incident(shape.name, total, seed, folder, agencies, counts, persons, truth, held)


def _load(shape: Shape, meta: dict, folder: Path) -> Incident:
    truth: dict[RecordKey, int] = {}
    with (folder / "truth.tsv").open() as f:
        for line in f:
            agency_id, source_id, person = line.rstrip("\n").split("\t")
            truth[(agency_id, source_id)] = int(person)
    return Incident(shape.name, meta["records"], meta["seed"], folder, shape.agencies(),
                    meta["counts"], meta["persons"], truth, set(meta["held"]))
