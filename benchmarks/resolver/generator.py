"""Synthetic NZ multi-agency breach feeds with ground truth (no real person's data).

People are drawn from Māori, Pacific, NZ European and Asian name pools, grouped into
households (shared address, often a shared mobile or email, sometimes twins), and each
is held by one or more agencies (GP practices, labs, hospitals, patient portals). Each
agency's copy of a person carries that agency's noise: missing NHI, macron or
double-vowel spelling, nicknames and transliterations, typos, swapped day/month, a wrong
digit anywhere in the date of birth (the year's too) or the year off by one, changed
mobile or email, a clinic's shared phone or email, moved address, a married or maiden
surname, a middle name used as the given name, initials only, placeholders ("Baby",
"Unknown", "No Last Name") and sparse records (name and date of birth only, name and
mobile only). How often depends on the agency type (`AGENCY_PROFILES`): labs hold few
contacts and abbreviate names, hospitals register newborns as "Baby", portals are
self-entered (nicknames, no NHI). Seeded and tunable.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import date, timedelta

from services.common.nhi import LETTERS, check_character
from services.dedupe.resolver.records import MatchRecord

MAORI_GIVEN = (
    "Aroha Ārihi Hēmi Wiremu Mere Rāwiri Tāne Anahera Kahu Nikau Mīria Hōhepa Tamati Ngaio "
    "Rangi Huia Manaia Kiri Moana Tui Wikitoria Hūhana Pita Māui Tama Ātaahua Mikaere Hōne "
    "Awhina Kauri Mātiu Rēweti Tūī Hinemoa Pania Tipene Whetu Rua Māhina Kōwhai Rewi Ihaia"
).split()
MAORI_FAMILY = (
    "Ngata Parata Tamihana Te_Kanawa Horomona Pōmare Tūroa Kōhere Mahuta Waititi Te_Rangi "
    "Rēweti Hēnare Tūhiwai Kīngi Ruatapu Te_Awa Tipene Rāwiri Wihongi Tāwhai Pōtae Māka "
    "Ngāwaka Te_Whata Hōtene Rātana Paewai Te_Hira Kereama"
).split()
PACIFIC_GIVEN = (
    "Sione Viliami Mele Losa Tevita Salote Ofa Semisi Lupe Sina Iosefa Malia Ioane Siaosi "
    "Tomasi Lesieli Fetu Talia Sefo Lagi Pita Alofa Manu Toa Vai Ana Faith Grace"
).split()
PACIFIC_FAMILY = (
    "Tuilagi Faleolo Taufa Fifita Leota Tupou Vaifale Fonoti Aumua Sapolu Havili Latu Mahe "
    "Kioa Faamausili Tuiasosopo Vaka Lolohea Taumalolo Pulu Fonua Moala Tonga Lemalu"
).split()
EURO_GIVEN = (
    "James William Robert Mary Sarah Emma Olivia Jack Oliver Charlotte Thomas Elizabeth "
    "Margaret Michael David Peter John Catherine Rebecca Hannah Grace Sophie Liam Noah Lucas "
    "Isla Amelia Ruby Harper Mason Hamish Fraser Angus Fiona Hayley Brooke Kylie Shane Craig "
    "Bruce Graeme Murray Susan Jennifer Andrew Stephen Richard Daniel Benjamin Samuel Joseph "
    "Anne Julie Rachel Victoria Nicholas Anthony Christopher Alexander Kate Megan Chloe Zoe "
    "Ella Isabella Jessica Lauren Georgia Matthew Joshua Ryan Dylan Blake Tyler Logan Finn"
).split()
EURO_FAMILY = (
    "Smith Wilson Williams Brown Taylor Jones Anderson Thompson Walker Campbell Stewart "
    "Robertson Clark Mitchell Scott Young Harris Turner King Wright Davies Mackenzie McDonald "
    "Reid Morrison Hughes Martin White Edwards Jackson Bell Murray Kelly Ross Hall Allen Cooper "
    "Baker Cameron Gray Fraser Hunter Johnston Kerr Lewis Moore Parker Russell Shaw Wood "
    "O'Brien O'Connor van_der_Berg Du_Plessis Fitzgerald Sutherland Henderson Wallace"
).split()
ASIAN_GIVEN = (
    "Wei Jun Ying Min Hui Xin Yan Priya Raj Arjun Anjali Sanjay Deepa Hiroshi Yuki Jiwoo "
    "Minjun Seoyeon Thanh Linh Minh Mei Hao Jing Ravi Neha Amit Sunita Kenji Haruto Jin "
    "Ling Rahul Pooja Vikram Lakshmi Duc Anh Hoa"
).split()
ASIAN_FAMILY = (
    "Wang Li Zhang Chen Liu Singh Patel Kumar Sharma Kim Lee Park Nguyen Tran Wong Huang "
    "Chan Tanaka Sato Yang Zhao Wu Zhou Xu Sun Ma Gupta Reddy Choi Jung Pham Le Ho Lin"
).split()

ETHNIC_MIX = (("maori", 0.17), ("pacific", 0.08), ("euro", 0.60), ("asian", 0.15))
POOLS = {
    "maori": (MAORI_GIVEN, MAORI_FAMILY),
    "pacific": (PACIFIC_GIVEN, PACIFIC_FAMILY),
    "euro": (EURO_GIVEN, EURO_FAMILY),
    "asian": (ASIAN_GIVEN, ASIAN_FAMILY),
}

# The generator's own variant list (deliberately not the engine's table): some variants
# here are absent from the engine's table, as they would be in real feeds.
VARIANTS = {
    "William": ["Bill", "Will", "Wiremu", "Liam"], "Wiremu": ["William", "Wiri"],
    "Robert": ["Bob", "Rob", "Robbie"], "James": ["Jim", "Jimmy", "Hēmi"],
    "Hēmi": ["James", "Hemi"], "Mary": ["Molly", "Mere"], "Mere": ["Mary", "Meri"],
    "John": ["Jack", "Johnny", "Hōne"], "Hōne": ["John", "Hone"], "Sione": ["John"],
    "Viliami": ["William", "Vili"], "Mele": ["Mary"], "Tevita": ["David"],
    "Rāwiri": ["David", "Rawiri"], "David": ["Dave"], "Peter": ["Pete", "Pita"],
    "Pita": ["Peter"], "Michael": ["Mike", "Mick"], "Mikaere": ["Michael"],
    "Hōhepa": ["Joseph"], "Iosefa": ["Joseph", "Sefo"], "Joseph": ["Joe"],
    "Tamati": ["Thomas", "Tom"], "Thomas": ["Tom", "Tommy"], "Tomasi": ["Thomas"],
    "Elizabeth": ["Liz", "Beth", "Lizzie"], "Catherine": ["Kate", "Cathy"],
    "Margaret": ["Maggie", "Peggy"], "Susan": ["Sue"], "Hūhana": ["Susan"],
    "Rebecca": ["Becky"], "Jennifer": ["Jenny", "Jen"], "Andrew": ["Andy", "Drew"],
    "Stephen": ["Steve"], "Richard": ["Rick", "Dick"], "Daniel": ["Dan", "Danny"],
    "Benjamin": ["Ben"], "Samuel": ["Sam"], "Nicholas": ["Nick"], "Anthony": ["Tony"],
    "Christopher": ["Chris"], "Alexander": ["Alex"], "Matthew": ["Matt"],
    "Mātiu": ["Matthew"], "Joshua": ["Josh"], "Wikitoria": ["Victoria"],
    "Victoria": ["Vicky"], "Sarah": ["Sara", "Sally"], "Rachel": ["Rahera"],
    "Salote": ["Charlotte"], "Charlotte": ["Charlie"], "Semisi": ["James"],
    "Siaosi": ["George"], "Lesieli": ["Rachel"], "Malia": ["Maria"],
}

STREET_NAMES = [
    "Kōwhai Road", "Rimu Street", "Tōtara Avenue", "Pōhutukawa Drive", "Queen Street",
    "Victoria Road", "Great North Road", "Dominion Road", "Manukau Road", "Karangahape Road",
    "Cuba Street", "Lambton Quay", "Riccarton Road", "Colombo Street", "Tay Street",
    "George Street", "Grey Street", "Devon Street", "Te Atatū Road", "Ōtāhuhu Road",
    "Puriri Place", "Nīkau Crescent", "Harakeke Terrace", "Matai Lane", "Hillcrest Avenue",
    "Beach Road", "Station Road", "Church Street", "Park Avenue", "Marine Parade",
]
CITIES = [
    ("Auckland", "10"), ("Manukau", "21"), ("Hamilton", "32"), ("Tauranga", "31"),
    ("Rotorua", "30"), ("Wellington", "60"), ("Porirua", "50"), ("Christchurch", "80"),
    ("Dunedin", "90"), ("Whangārei", "01"), ("Gisborne", "40"), ("Invercargill", "98"),
]
ABBREVIATIONS = {"Road": "Rd", "Street": "St", "Avenue": "Ave", "Drive": "Dr",
                 "Place": "Pl", "Crescent": "Cres", "Terrace": "Tce", "Lane": "Ln", "Quay": "Qy"}


# Per agency type: multipliers of the Noise probabilities (1.0 = as in Noise), for the
# fields each kind of agency holds and how carefully. A GP holds the fullest record.
AGENCY_PROFILES: dict[str, dict[str, float]] = {
    "gp": {},
    "lab": {"nhi_missing": 0.4, "mobile_missing": 2.5, "email_missing": 3.0, "address_missing": 6.0,
            "initials_only": 4.0, "given_typo": 1.5, "family_typo": 1.5, "middle_name_dropped": 2.5,
            "sparse": 3.0},
    "hospital": {"nhi_missing": 0.1, "email_missing": 2.0, "placeholder_given": 6.0,
                 "middle_name_dropped": 0.5, "dob_missing": 0.2},
    "portal": {"nhi_missing": 2.0, "nickname": 3.0, "given_typo": 1.5, "address_missing": 3.0,
               "mobile_missing": 0.3, "email_missing": 0.1, "dob_swapped": 2.0, "dob_missing": 2.0,
               "middle_as_given": 2.0},
}


@dataclass
class Noise:
    """Per-record probabilities of each kind of damage, scaled by `level` (1.0 = default)."""

    level: float = 1.0
    nhi_missing: float = 0.45
    second_nhi_person: float = 0.02
    macron_dropped: float = 0.5
    double_vowel: float = 0.1
    nickname: float = 0.08
    given_typo: float = 0.03
    family_typo: float = 0.03
    names_swapped: float = 0.01
    middle_name_dropped: float = 0.3
    hyphen_part_only: float = 0.3
    dob_swapped: float = 0.02
    dob_digit: float = 0.01
    dob_missing: float = 0.01
    mobile_changed: float = 0.12
    mobile_missing: float = 0.2
    email_changed: float = 0.12
    email_missing: float = 0.3
    clinic_contact: float = 0.02
    address_moved: float = 0.1
    address_missing: float = 0.05
    address_abbreviated: float = 0.4
    surname_changed_person: float = 0.04  # person-level: some records carry another surname
    middle_as_given: float = 0.02
    initials_only: float = 0.005
    placeholder_given: float = 0.002
    placeholder_family: float = 0.002
    dob_year_off: float = 0.004
    sparse: float = 0.01

    def p(self, name: str, agency_type: str = "gp") -> float:
        base = getattr(self, name) * AGENCY_PROFILES.get(agency_type, {}).get(name, 1.0)
        if name in ("nhi_missing", "mobile_missing", "email_missing", "address_missing",
                    "macron_dropped", "middle_name_dropped", "hyphen_part_only",
                    "address_abbreviated", "surname_changed_person"):
            return min(1.0, base)  # these are facts about feeds, not noise to scale
        return min(1.0, base * self.level)


@dataclass
class Truth:
    given: str
    middle: str | None
    family: str
    dob: date
    nhi: str
    second_nhi: str | None
    mobile: str | None
    email: str | None
    address: tuple[str, str, str, str]  # line1, suburb, city, postcode
    other_family: str | None = None  # a married or maiden surname some agencies hold


def test_nhi(rng: random.Random) -> str:
    """A valid test NHI (starts with Z), old or new format."""
    while True:
        head = "Z" + rng.choice(LETTERS) + rng.choice(LETTERS)
        if rng.random() < 0.8:
            body = f"{rng.randrange(1000):03d}"
        else:
            body = f"{rng.randrange(100):02d}{rng.choice(LETTERS)}"
        check = check_character(head + body)
        if check is not None:
            return head + body + check


def _zipf_choice(rng: random.Random, items: list[str]) -> str:
    # Earlier items are commoner, as real name frequencies are.
    i = int(len(items) * (rng.random() ** 1.5))
    return items[min(i, len(items) - 1)]


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text) - 1)
    op = rng.randrange(4)
    letter = rng.choice(string.ascii_lowercase)
    if op == 0:
        return text[:i] + letter + text[i + 1:]
    if op == 1:
        return text[:i] + text[i + 1:]
    if op == 2:
        return text[:i] + letter + text[i:]
    return text[:i - 1] + text[i] + text[i - 1] + text[i + 1:]


_MACRON_FOLD = str.maketrans("āēīōūĀĒĪŌŪ", "aeiouAEIOU")
_MACRON_DOUBLE = {"ā": "aa", "ē": "ee", "ī": "ii", "ō": "oo", "ū": "uu"}


def _spell(rng: random.Random, name: str, noise: Noise) -> str:
    name = name.replace("_", " ")
    if any(c in name for c in "āēīōūĀĒĪŌŪ"):
        if rng.random() < noise.p("double_vowel"):
            return "".join(_MACRON_DOUBLE.get(c, c) for c in name)
        if rng.random() < noise.p("macron_dropped"):
            return name.translate(_MACRON_FOLD)
    return name


class FeedGenerator:
    def __init__(self, seed: int = 7, noise: Noise | None = None, agencies: int = 40) -> None:
        self.rng = random.Random(seed)
        self.noise = noise or Noise()
        self.agencies = [f"gp-{i:03d}" for i in range(agencies - 12)] + [
            f"lab-{i}" for i in range(5)] + [f"hospital-{i}" for i in range(5)] + [
            f"portal-{i}" for i in range(2)]
        self.clinic_mobile = {a: f"+6493{i:06d}" for i, a in enumerate(self.agencies)}
        self._used_mobiles: set[str] = set()

    def _mobile(self) -> str:
        while True:
            m = "+642" + self.rng.choice("1279") + f"{self.rng.randrange(10**7):07d}"
            if m not in self._used_mobiles:
                self._used_mobiles.add(m)
                return m

    def _email(self, given: str, family: str) -> str:
        local = f"{given}.{family}".translate(_MACRON_FOLD).lower().replace(" ", "").replace("'", "")
        return f"{local}{self.rng.randrange(1000)}@{self.rng.choice(['gmail.com', 'xtra.co.nz', 'outlook.com', 'hotmail.com'])}"

    def _address(self) -> tuple[str, str, str, str]:
        street = self.rng.choice(STREET_NAMES)
        city, prefix = self.rng.choice(CITIES)
        number = str(self.rng.randrange(1, 400))
        if self.rng.random() < 0.15:
            number = f"{self.rng.randrange(1, 9)}/{number}"
        return f"{number} {street}", f"Suburb {self.rng.randrange(30)}", city, f"{prefix}{self.rng.randrange(10, 99)}"

    def people(self, n: int) -> list[Truth]:
        rng, people = self.rng, []
        while len(people) < n:
            ethnicity = rng.choices([e for e, _ in ETHNIC_MIX], [w for _, w in ETHNIC_MIX])[0]
            given_pool, family_pool = POOLS[ethnicity]
            family = _zipf_choice(rng, family_pool)
            if rng.random() < 0.08:
                other = POOLS[rng.choice(list(POOLS))][1]
                family = f"{family}-{_zipf_choice(rng, other)}"
            address = self._address()
            household_mobile = self._mobile() if rng.random() < 0.5 else None
            household_email = self._email(rng.choice(given_pool), family) if rng.random() < 0.2 else None
            size = rng.choices([1, 2, 3, 4, 5, 6], [30, 30, 15, 15, 7, 3])[0]
            twins_at = rng.randrange(size) if size >= 3 and rng.random() < 0.08 else None
            used_given: set[str] = set()
            last_dob = None
            for i in range(size):
                given = _zipf_choice(rng, given_pool)
                while given.translate(_MACRON_FOLD).lower() in used_given:
                    given = rng.choice(given_pool)  # households do not reuse a given name
                used_given.add(given.translate(_MACRON_FOLD).lower())
                if i == twins_at and last_dob is not None:
                    dob = last_dob  # a twin of the previous child
                else:
                    dob = date(1930, 1, 1) + timedelta(days=rng.randrange(93 * 365))
                last_dob = dob
                middle = rng.choice(given_pool) if rng.random() < 0.4 else None
                own_mobile = self._mobile() if rng.random() < 0.7 else None
                mobile = household_mobile if (own_mobile is None or rng.random() < 0.2) else own_mobile
                email = household_email if (household_email and rng.random() < 0.5) else (
                    self._email(given, family) if rng.random() < 0.8 else None)
                second = test_nhi(rng) if rng.random() < self.noise.p("second_nhi_person") else None
                other_family = None
                if rng.random() < self.noise.p("surname_changed_person"):
                    other_family = _zipf_choice(rng, POOLS[rng.choice(list(POOLS))][1])
                people.append(Truth(given, middle if middle != given else None, family, dob,
                                    test_nhi(rng), second, mobile, email, address, other_family))
        return people[:n]

    def record(self, person: Truth, agency: str, source_id: str) -> MatchRecord:
        rng, noise = self.rng, self.noise
        kind = agency.split("-")[0]

        def p(name: str) -> float:
            return noise.p(name, kind)

        given = person.given
        if given in VARIANTS and rng.random() < p("nickname"):
            given = rng.choice(VARIANTS[given])
        given = _spell(rng, given, noise)
        if rng.random() < p("given_typo"):
            given = _typo(rng, given)
        if person.middle and rng.random() < p("middle_as_given"):
            given = _spell(rng, person.middle, noise)
        elif person.middle and rng.random() >= p("middle_name_dropped"):
            given = f"{given} {_spell(rng, person.middle, noise)}"
        if rng.random() < p("initials_only"):
            given = " ".join(f"{t[0]}." for t in given.split())
        family = _spell(rng, person.other_family if person.other_family and rng.random() < 0.4
                        else person.family, noise)
        if "-" in family and rng.random() < p("hyphen_part_only"):
            family = rng.choice(family.split("-"))
        if rng.random() < p("family_typo"):
            family = _typo(rng, family)
        if rng.random() < p("names_swapped"):
            given, family = family, given.split()[0]
        if rng.random() < 0.1:
            family = family.upper()
        if rng.random() < p("placeholder_given"):
            given = rng.choice(["Baby", "Unknown", "Baby Boy", "Baby Girl"])
        if rng.random() < p("placeholder_family"):
            family = rng.choice(["No Last Name", "Unknown", "NLN"])

        dob: date | None = person.dob
        if rng.random() < p("dob_swapped") and dob.day <= 12 and dob.day != dob.month:
            dob = date(dob.year, dob.day, dob.month)
        elif rng.random() < p("dob_digit"):
            for _ in range(5):
                digits = list(dob.strftime("%Y%m%d"))
                i = rng.randrange(1, 8)  # any position but the millennium
                digits[i] = str(rng.randrange(10))
                try:
                    dob = date(int("".join(digits[:4])), int("".join(digits[4:6])), int("".join(digits[6:])))
                    break
                except ValueError:
                    continue
        elif rng.random() < p("dob_year_off"):
            try:
                dob = date(dob.year + rng.choice((-1, 1)), dob.month, dob.day)
            except ValueError:
                pass
        if rng.random() < p("dob_missing"):
            dob = None

        nhi = None
        if rng.random() >= p("nhi_missing"):
            nhi = person.second_nhi if (person.second_nhi and rng.random() < 0.5) else person.nhi

        mobile = person.mobile
        if mobile and rng.random() < p("mobile_changed"):
            mobile = self._mobile()
        if rng.random() < p("mobile_missing"):
            mobile = None
        email = person.email
        if email and rng.random() < p("email_changed"):
            email = self._email(person.given, person.family)
        if rng.random() < p("email_missing"):
            email = None
        if rng.random() < p("clinic_contact"):
            mobile = self.clinic_mobile[agency]
            email = f"reception@{agency}.health.example.nz"

        line1, suburb, city, postcode = person.address
        if rng.random() < p("address_moved"):
            line1, suburb, city, postcode = self._address()
        if rng.random() < p("address_abbreviated"):
            for full, short in ABBREVIATIONS.items():
                line1 = line1.replace(full, short)
        if rng.random() < p("address_missing"):
            line1 = suburb = city = postcode = None
        if rng.random() < p("sparse"):  # name and date of birth only, or name and mobile only
            nhi = email = line1 = suburb = city = postcode = None
            if rng.random() < 0.5 or not mobile:
                mobile = None
            else:
                dob = None

        return MatchRecord(
            agency_id=agency, source_record_id=source_id, nhi=nhi, given_names=given,
            family_name=family, date_of_birth=dob, email=email, mobile=mobile,
            address_line1=line1, suburb=suburb, city=city, postcode=postcode,
        )

    def feed(self, size: int) -> tuple[list[MatchRecord], list[int]]:
        """About `size` records and, for each, the index of the true person."""
        people = self.people(max(1, int(size / 1.9)))
        records, truth = [], []
        for pid, person in enumerate(people):
            count = self.rng.choices([1, 2, 3, 4, 5], [40, 30, 15, 10, 5])[0]
            for agency in self.rng.sample(self.agencies, count):
                records.append(self.record(person, agency, f"r{len(records):08d}"))
                truth.append(pid)
                if len(records) >= size:
                    return records, truth
        return records, truth


def generate(size: int = 20_000, seed: int = 7, noise: float = 1.0) -> tuple[list[MatchRecord], list[int]]:
    return FeedGenerator(seed, Noise(level=noise)).feed(size)
