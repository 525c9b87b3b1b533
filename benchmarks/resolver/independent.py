"""An NZ-shaped feed generator of a different design, for data the resolver was not tuned on.

Written before any tuning against it, deliberately unlike `generator.py` (which shares its
authors with the engine):

* names come from Faker's `en_NZ` locale (DIA birth-register frequencies), plus `en_IN`,
  romanised `zh_CN` and a short Māori list of its own; nicknames from pseudopeople's
  table (a third party's), never from the engine's;
* people live in households built as families: couples, children named after a parent,
  twins (often with the same initial), flatmates; some women's records carry a maiden or
  married surname, double-barrelled names are used in part;
* damage is FEBRL-style: each record gets a number of modifications drawn from its agency
  type's rate, each picked from one table (typos by keyboard, phonetic spellings, nickname,
  middle name as given, initials, placeholders such as "Baby" or "Unknown", a wrong digit
  anywhere in the date of birth including the year, day/month swaps, year off by one,
  old address or mobile, sparse records ...);
* agency types (GP, lab, hospital, portal) differ in which fields they hold and how often
  they damage them.

Records come out as intake would hand them to the resolver: NHIs that fail their check
character dropped, mobiles in E.164, emails lower-case.
"""
from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from services.common.nhi import LETTERS, check_character, valid_nhi
from services.dedupe.resolver.records import MatchRecord

# A short list of our own (not the other generator's pools).
MAORI_GIVEN = ("Ātaahua Hēmi Wiremu Mere Rāwiri Tāne Anahera Kahu Nikau Mīria Hōhepa Tamati "
               "Ngaio Rangi Huia Manaia Kiri Moana Tūī Aroha Marama Hana Rewi Pania Tai Kauri "
               "Māia Whetū Tama Te_Ao Ariki Kaea Nīkau Arohanui Mahina Rīhari Hine").split()
MAORI_FAMILY = ("Ngata Parata Tamihana Te_Kanawa Pōmare Tūroa Mahuta Waititi Te_Rangi Hēnare "
                "Tūhiwai Kīngi Wihongi Tāwhai Te_Whata Rātana Paewai Te_Hira Kereama Ngāwhika "
                "Whaanga Tautahi Te_Moana Herewini Poutama Mātene Tūhoe Rāwhiti Kawana").split()

KEYBOARD = {  # QWERTY neighbours, for substitution typos
    "a": "qwsz", "b": "vghn", "c": "xdfv", "d": "serfcx", "e": "wsdr", "f": "drtgvc",
    "g": "ftyhbv", "h": "gyujnb", "i": "ujko", "j": "huikmn", "k": "jiolm", "l": "kop",
    "m": "njk", "n": "bhjm", "o": "iklp", "p": "ol", "q": "wa", "r": "edft", "s": "awedxz",
    "t": "rfgy", "u": "yhji", "v": "cfgb", "w": "qase", "x": "zsdc", "y": "tghu", "z": "asx",
}
PHONETIC = (("ph", "f"), ("c", "k"), ("ee", "ea"), ("y", "i"), ("ie", "y"), ("ll", "l"),
            ("nn", "n"), ("tt", "t"), ("ou", "oo"), ("s", "z"), ("th", "t"), ("ck", "k"),
            ("ai", "ay"), ("er", "a"), ("ine", "een"))
GIVEN_PLACEHOLDERS = ("Baby", "Unknown", "Infant", "Not Stated", "Newborn")
FAMILY_PLACEHOLDERS = ("No Last Name", "Unknown", "Not Given", "NLN", "Anonymous")
EMAIL_DOMAINS = ("gmail.com", "xtra.co.nz", "outlook.com", "hotmail.com", "yahoo.co.nz",
                 "icloud.com", "slingshot.co.nz", "orcon.net.nz")


@dataclass(frozen=True)
class AgencyType:
    """Which fields an agency holds, and how often it damages them."""

    name: str
    count: int
    nhi: float  # share of records carrying the NHI
    dob: float
    mobile: float
    email: float
    address: float
    middle_names: float  # share of records with the middle names written out
    damage: float  # mean modifications per record
    nickname: float  # share of records using a nickname (self-entered data)


AGENCY_TYPES = (
    AgencyType("gp", 22, nhi=0.75, dob=0.99, mobile=0.85, email=0.55, address=0.95,
               middle_names=0.5, damage=0.35, nickname=0.05),
    AgencyType("lab", 4, nhi=0.85, dob=0.97, mobile=0.4, email=0.05, address=0.5,
               middle_names=0.1, damage=0.6, nickname=0.01),
    AgencyType("hospital", 4, nhi=0.95, dob=1.0, mobile=0.7, email=0.25, address=0.95,
               middle_names=0.8, damage=0.3, nickname=0.02),
    AgencyType("portal", 2, nhi=0.1, dob=0.8, mobile=0.9, email=0.95, address=0.6,
               middle_names=0.15, damage=0.5, nickname=0.25),
)


@dataclass
class Person:
    sex: str
    given: str
    middles: list[str]
    family: str
    dob: date
    nhi: str
    mobile: str | None
    email: str | None
    address: tuple[str, str, str]  # line1, city, postcode
    other_family: str | None = None  # maiden or married surname seen in some records
    old_address: tuple[str, str, str] | None = None
    old_mobile: str | None = None
    household: list[int] = field(default_factory=list)


def _nicknames() -> dict[str, list[str]]:
    """pseudopeople's nickname table (name -> nicknames), if pseudopeople is installed."""
    try:
        import pseudopeople
    except ImportError:
        return {}
    path = Path(pseudopeople.__file__).parent / "data" / "nicknames.csv"
    table: dict[str, list[str]] = {}
    with path.open() as f:
        for row in csv.reader(f):
            if row and row[0] != "name":
                table[row[0].strip().lower()] = [n.strip() for n in row[1:] if n.strip()]
    return table


class IndependentGenerator:
    def __init__(self, seed: int = 101, damage_scale: float = 1.0) -> None:
        from faker import Faker

        self.rng = random.Random(seed)
        self.damage_scale = damage_scale
        self.fakers = {}
        for locale in ("en_NZ", "en_IN", "zh_CN"):
            self.fakers[locale] = Faker(locale)
            self.fakers[locale].seed_instance(seed)
        self.nz = self.fakers["en_NZ"]
        self.nicknames = _nicknames()
        self._nhis: set[str] = set()
        self._mobiles: set[str] = set()
        self.agencies: list[tuple[str, AgencyType]] = [
            (f"{t.name}-{i:02d}", t) for t in AGENCY_TYPES for i in range(t.count)]
        self._agency_weights = [{"gp": 1.0, "lab": 2.0, "hospital": 2.0, "portal": 2.5}[t.name]
                                for _, t in self.agencies]

    # ------------------------------------------------------------ people

    def _given(self, sex: str, culture: str) -> str:
        if culture == "maori":
            return self.rng.choice(MAORI_GIVEN).replace("_", " ")
        fake = self.fakers[{"nz": "en_NZ", "indian": "en_IN", "chinese": "zh_CN"}[culture]]
        if culture == "chinese":
            return fake.first_romanized_name()
        return fake.first_name_male() if sex == "M" else fake.first_name_female()

    def _family(self, culture: str) -> str:
        if culture == "maori":
            return self.rng.choice(MAORI_FAMILY).replace("_", " ")
        if culture == "chinese":
            return self.fakers["zh_CN"].last_romanized_name()
        if culture == "indian":
            return self.fakers["en_IN"].last_name()
        return self.nz.last_name()

    def _nhi(self) -> str:
        rng = self.rng
        while True:
            head = "Z" + rng.choice(LETTERS) + rng.choice(LETTERS)
            body = (f"{rng.randrange(1000):03d}" if rng.random() < 0.7
                    else f"{rng.randrange(100):02d}{rng.choice(LETTERS)}")
            check = check_character(head + body)
            if check and head + body + check not in self._nhis:
                self._nhis.add(head + body + check)
                return head + body + check

    def _mobile(self) -> str:
        while True:
            m = f"+642{self.rng.choice('01279')}{self.rng.randrange(10**6, 10**8)}"
            if m not in self._mobiles:
                self._mobiles.add(m)
                return m

    def _email(self, given: str, family: str, dob: date) -> str:
        g, f = _ascii(given).replace(" ", ""), _ascii(family).replace(" ", "").replace("-", "")
        pattern = self.rng.randrange(5)
        local = (f"{g}.{f}", f"{g[0]}{f}", f"{g}{dob.year % 100:02d}", f"{f}.{g}{self.rng.randrange(99)}",
                 f"{g}_{f}{self.rng.randrange(9)}")[pattern]
        return f"{local}@{self.rng.choice(EMAIL_DOMAINS)}"

    def _address(self) -> tuple[str, str, str]:
        line1 = self.nz.street_address()
        if self.rng.random() < 0.12:
            line1 = f"{self.rng.randrange(1, 12)}/{line1}"
        return line1, self.nz.city(), self.nz.postcode()

    def _dob(self, lo: int, hi: int) -> date:
        """A date of birth for someone aged lo..hi in 2026."""
        return date(2026, 6, 30) - timedelta(days=self.rng.randrange(lo * 365, hi * 365 + 1))

    def _new_person(self, sex: str, culture: str, family: str, dob: date,
                    address: tuple[str, str, str], given: str | None = None) -> Person:
        rng = self.rng
        given = given or self._given(sex, culture)
        middles = [self._given(sex, culture) for _ in range(rng.choices([0, 1, 2], [35, 50, 15])[0])]
        middles = [m for m in middles if m != given]
        age = 2026 - dob.year
        mobile = self._mobile() if age >= 12 and rng.random() < 0.9 else None
        email = self._email(given, family, dob) if age >= 14 and rng.random() < 0.75 else None
        person = Person(sex, given, middles, family, dob, self._nhi(), mobile, email, address)
        if rng.random() < 0.08:
            person.old_address = self._address()
        if mobile and rng.random() < 0.08:
            person.old_mobile = self._mobile()
        return person

    def people(self, n: int) -> list[Person]:
        rng, people = self.rng, []
        while len(people) < n:
            culture = rng.choices(["nz", "maori", "indian", "chinese"], [70, 15, 7, 8])[0]
            family = self._family(culture)
            if rng.random() < 0.06:
                family = f"{family}-{self._family(culture)}"
            address = self._address()
            kind = rng.choices(["single", "couple", "family", "flat"], [30, 20, 40, 10])[0]
            start = len(people)
            if kind == "flat":
                for _ in range(rng.randrange(2, 5)):
                    c = rng.choice(["nz", "maori", "indian", "chinese"])
                    people.append(self._new_person(rng.choice("MF"), c, self._family(c),
                                                   self._dob(19, 40), address))
            else:
                first = self._new_person(rng.choice("MF"), culture, family, self._dob(20, 90), address)
                people.append(first)
                if kind in ("couple", "family"):
                    partner_family = family if rng.random() < 0.7 else self._family(culture)
                    partner_dob = first.dob + timedelta(days=rng.randrange(-2500, 2500))
                    partner = self._new_person("F" if first.sex == "M" else "M", culture,
                                               partner_family, partner_dob, address)
                    if partner_family == family and rng.random() < 0.5:
                        woman = partner if partner.sex == "F" else first
                        woman.other_family = self._family(culture)  # her maiden name
                    people.append(partner)
                if kind == "family":
                    mother_age = min(2026 - first.dob.year, 60)
                    children = rng.choices([1, 2, 3, 4], [30, 40, 20, 10])[0]
                    names: set[str] = set()
                    for c in range(children):
                        sex = rng.choice("MF")
                        dob = self._dob(0, max(1, mother_age - 19))
                        given = None
                        if c == 0 and rng.random() < 0.06:
                            parent = first if first.sex == sex else people[-1]
                            given = parent.given  # named after a parent (John Smith Jr)
                        child = self._new_person(sex, culture, family, dob, address, given)
                        while child.given in names:
                            child.given = self._given(sex, culture)
                        names.add(child.given)
                        people.append(child)
                        if rng.random() < 0.04:  # twins
                            twin_given = self._given(sex, culture)
                            if rng.random() < 0.5:  # often the same initial
                                for _ in range(50):
                                    if twin_given[0] == child.given[0] and twin_given != child.given:
                                        break
                                    twin_given = self._given(sex, culture)
                            if twin_given != child.given:
                                twin = self._new_person(sex, culture, family, dob, address, twin_given)
                                if child.middles and rng.random() < 0.3:
                                    twin.middles = list(child.middles)  # a shared middle name
                                people.append(twin)
            members = list(range(start, len(people)))
            for i in members:
                people[i].household = members
        return people[:n]

    # ------------------------------------------------------------ records

    def record(self, people: list[Person], pid: int, agency: str, kind: AgencyType,
               source_id: str) -> MatchRecord:
        rng, person = self.rng, people[pid]
        given, middles, family = person.given, list(person.middles), person.family
        if person.other_family and rng.random() < 0.35:
            family = person.other_family
        if rng.random() < kind.nickname:
            options = self.nicknames.get(given.lower())
            if options:
                given = rng.choice(options).title()
        line1, city, postcode = person.address
        if person.old_address and rng.random() < 0.5:
            line1, city, postcode = person.old_address
        mobile = person.mobile
        if person.old_mobile and rng.random() < 0.5:
            mobile = person.old_mobile
        fields = {
            "nhi": person.nhi if rng.random() < kind.nhi else None,
            "given": " ".join([given, *middles]) if middles and rng.random() < kind.middle_names else given,
            "family": family,
            "dob": person.dob if rng.random() < kind.dob else None,
            "mobile": mobile if rng.random() < kind.mobile else None,
            "email": person.email if rng.random() < kind.email else None,
            "line1": line1 if rng.random() < kind.address else None,
            "city": city, "postcode": postcode,
        }
        age_days = (date(2026, 6, 30) - person.dob).days
        if age_days < 60 and kind.name == "hospital" and rng.random() < 0.5:
            fields["given"] = "Baby"  # newborns are often registered before they are named
        mean = kind.damage * self.damage_scale
        for _ in range(min(_poisson(rng, mean), 4)):
            self._modify(fields, people, pid)
        return _clean(agency, source_id, fields)

    def _modify(self, f: dict, people: list[Person], pid: int) -> None:
        rng, person = self.rng, people[pid]
        choice = rng.choices(MODIFICATIONS, [w for _, w in MODIFICATIONS])[0][0]
        if choice == "given_typo" and f["given"]:
            f["given"] = _typo(rng, f["given"])
        elif choice == "family_typo" and f["family"]:
            f["family"] = _typo(rng, f["family"])
        elif choice == "given_phonetic" and f["given"]:
            f["given"] = _phonetic(rng, f["given"])
        elif choice == "family_phonetic" and f["family"]:
            f["family"] = _phonetic(rng, f["family"])
        elif choice == "middle_as_given" and person.middles:
            f["given"] = " ".join(person.middles)
        elif choice == "initials" and f["given"]:
            parts = f["given"].split()
            f["given"] = " ".join(p[0] for p in parts) if rng.random() < 0.5 else f"{parts[0][0]}."
        elif choice == "given_placeholder":
            f["given"] = rng.choice(GIVEN_PLACEHOLDERS)
        elif choice == "family_placeholder":
            f["family"] = rng.choice(FAMILY_PLACEHOLDERS)
        elif choice == "family_part" and f["family"] and "-" in f["family"]:
            parts = f["family"].split("-")
            f["family"] = rng.choice(parts) if rng.random() < 0.7 else " ".join(parts)
        elif choice == "names_swapped" and f["given"] and f["family"]:
            f["given"], f["family"] = f["family"], f["given"].split()[0]
        elif choice == "macrons" and f["given"]:
            f["given"], f["family"] = _ascii(f["given"], keep_case=True), _ascii(f["family"], keep_case=True)
        elif choice == "case" and f["family"]:
            f["family"] = f["family"].upper() if rng.random() < 0.5 else f["family"].lower()
        elif choice == "dob_digit" and f["dob"]:
            f["dob"] = _dob_digit(rng, f["dob"])
        elif choice == "dob_swap" and f["dob"] and f["dob"].day <= 12:
            f["dob"] = date(f["dob"].year, f["dob"].day, f["dob"].month)
        elif choice == "dob_year" and f["dob"]:
            f["dob"] = _safe_date(f["dob"].year + rng.choice((-1, 1, -10, 10)), f["dob"].month, f["dob"].day)
        elif choice == "dob_default" and f["dob"]:
            f["dob"] = date(f["dob"].year, 1, 1)
        elif choice == "dob_missing":
            f["dob"] = None
        elif choice == "sparse":
            keep = rng.choice(("dob", "mobile"))
            for k in ("nhi", "mobile", "email", "line1", "postcode", "dob"):
                if k != keep:
                    f[k] = None
        elif choice == "mobile_household" and person.household:
            other = people[rng.choice(person.household)]
            f["mobile"] = other.mobile or f["mobile"]
        elif choice == "mobile_digit" and f["mobile"]:
            i = rng.randrange(5, len(f["mobile"]))
            f["mobile"] = f["mobile"][:i] + str(rng.randrange(10)) + f["mobile"][i + 1:]
        elif choice == "email_typo" and f["email"]:
            local, _, domain = f["email"].partition("@")
            f["email"] = f"{_typo(rng, local)}@{domain}"
        elif choice == "address_typo" and f["line1"]:
            f["line1"] = _typo(rng, f["line1"])
        elif choice == "address_missing":
            f["line1"] = f["postcode"] = None
        elif choice == "nhi_typo" and f["nhi"]:
            i = rng.randrange(3, 6)
            f["nhi"] = f["nhi"][:i] + str(rng.randrange(10)) + f["nhi"][i + 1:]

    def feed(self, size: int) -> tuple[list[MatchRecord], list[int]]:
        people = self.people(max(1, int(size / 2.0)))
        records, truth = [], []
        for pid in range(len(people)):
            count = self.rng.choices([1, 2, 3, 4, 5, 6], [35, 30, 15, 10, 6, 4])[0]
            chosen = set()
            while len(chosen) < count:
                chosen.add(self.rng.choices(range(len(self.agencies)), self._agency_weights)[0])
            for a in sorted(chosen):
                agency, kind = self.agencies[a]
                records.append(self.record(people, pid, agency, kind, f"x{len(records):08d}"))
                truth.append(pid)
                if len(records) >= size:
                    return records, truth
        return records, truth


MODIFICATIONS = (
    ("given_typo", 10), ("family_typo", 10), ("given_phonetic", 4), ("family_phonetic", 4),
    ("middle_as_given", 3), ("initials", 3), ("given_placeholder", 1), ("family_placeholder", 1),
    ("family_part", 3), ("names_swapped", 2), ("macrons", 4), ("case", 3),
    ("dob_digit", 6), ("dob_swap", 3), ("dob_year", 2), ("dob_default", 1), ("dob_missing", 2),
    ("sparse", 2), ("mobile_household", 3), ("mobile_digit", 2), ("email_typo", 2),
    ("address_typo", 4), ("address_missing", 3), ("nhi_typo", 2),
)


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


_ASCII = str.maketrans("āēīōūĀĒĪŌŪ", "aeiouAEIOU")


def _ascii(text: str, keep_case: bool = False) -> str:
    out = text.translate(_ASCII)
    return out if keep_case else out.lower()


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 2:
        return text
    i = rng.randrange(len(text))
    op = rng.choices(("sub", "del", "ins", "swap"), (45, 20, 20, 15))[0]
    c = text[i].lower()
    if op == "sub" and c in KEYBOARD:
        new = rng.choice(KEYBOARD[c])
        return text[:i] + (new.upper() if text[i].isupper() else new) + text[i + 1:]
    if op == "del":
        return text[:i] + text[i + 1:]
    if op == "ins":
        return text[:i] + rng.choice(KEYBOARD.get(c, "e")) + text[i:]
    if op == "swap" and i + 1 < len(text):
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    return text


def _phonetic(rng: random.Random, text: str) -> str:
    lower = text.lower()
    options = [(a, b) for a, b in PHONETIC if a in lower[1:]]
    if not options:
        return text
    a, b = rng.choice(options)
    i = lower.index(a, 1)
    return text[:i] + b + text[i + len(a):]


def _safe_date(year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        return date(year, month, 28)


def _dob_digit(rng: random.Random, dob: date) -> date:
    """One digit of YYYYMMDD keyed wrong, in any position the result stays a date."""
    digits = dob.strftime("%Y%m%d")
    for _ in range(20):
        i = rng.randrange(1, 8)  # never the millennium
        d = digits[:i] + str(rng.randrange(10)) + digits[i + 1:]
        try:
            new = date(int(d[:4]), int(d[4:6]), int(d[6:]))
        except ValueError:
            continue
        if new != dob and date(1900, 1, 1) <= new <= date(2026, 11, 30):
            return new
    return dob


def _clean(agency: str, source_id: str, f: dict) -> MatchRecord:
    """What intake passes on: invalid NHIs dropped, contacts normalised."""
    return MatchRecord(
        agency_id=agency, source_record_id=source_id, nhi=valid_nhi(f["nhi"]),
        given_names=f["given"] or None, family_name=f["family"] or None, date_of_birth=f["dob"],
        email=(f["email"] or "").lower() or None, mobile=f["mobile"],
        address_line1=f["line1"], city=f["city"] if f["line1"] else None,
        postcode=f["postcode"] if f["line1"] else None,
    )


def generate(size: int = 20_000, seed: int = 101, damage: float = 1.0) -> tuple[list[MatchRecord], list[int]]:
    return IndependentGenerator(seed, damage).feed(size)


__all__ = ["AGENCY_TYPES", "IndependentGenerator", "generate"]
