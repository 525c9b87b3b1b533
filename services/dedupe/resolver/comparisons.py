"""Graded comparisons of two prepared records, one function per field.

Each function returns a level name. Levels depend only on the two records (never on
what else has arrived), so they can be cached and arrival order cannot change them.
"""
from __future__ import annotations

from typing import NamedTuple

from rapidfuzz.distance import OSA, JaroWinkler

from services.dedupe.resolver.config import STRICT, Guard
from services.dedupe.resolver.names import equivalent, family_equivalent, names_in_groups_of, related
from services.dedupe.resolver.records import PreparedRecord

MISSING = "missing"
EXACT = "exact"
DIFFERENT = "different"
# A slip in a nickname or transliteration of the other's name ('Margaet' ~ 'Peggy' via
# Margaret, 'Jenna' ~ 'Jennifer' via Jenny): an equivalence and an edit at once.
NICKNAME_TYPO = "nickname_typo"


class Levels(NamedTuple):
    """The outcome of comparing two records, field by field."""

    nhi: str
    given: str
    middle: str
    family: str
    dob: str
    mobile: str
    email: str
    address: str

    @property
    def personal_agrees(self) -> bool:
        """A personal contact (mobile or email) is the same."""
        return EXACT in (self.mobile, self.email)

    @property
    def personal_conflict(self) -> bool:
        """Both hold a mobile or an email and none of them agree."""
        return DIFFERENT in (self.mobile, self.email) and EXACT not in (self.mobile, self.email)

    @property
    def conflict(self) -> bool:
        """`conflicts` under the strict guard."""
        return self.conflicts(STRICT)

    def conflicts(self, guard: Guard) -> bool:
        """Evidence that two records are two people, whatever else agrees.

        Different given names or a clearly different date of birth separate twins and
        household members who share a surname, address and phone (unless the incident
        shows it holds no households, `Guard`). The same NHI overrides it (such a pair is
        weighed, or reviewed, see scoring). Two valid NHIs that differ, together with
        personal contacts that differ, are two people; so are two variants of one name
        (Bill, Liam) each with its own mobile or email, and, whatever the guard, a
        different given name or date of birth with such contacts or NHIs.
        """
        if self.nhi == "same":
            return False
        given, dob = self.given == DIFFERENT, self.dob == DIFFERENT
        if given or dob:
            if (given and guard.given) or (dob and guard.dob):
                return True
            if self.nhi == DIFFERENT or self.personal_conflict:
                return True
        if (self.nhi == DIFFERENT or self.given == "related") and self.personal_conflict:
            return True
        # A looser agreement (one side's first name is the other's middle name; a record
        # without its date of birth or given name) does not outweigh a mobile AND an email
        # that both differ: twins sharing a middle name, a parent and child of one name at
        # one address, each with their own. (One changed contact is common; two rarely.)
        loose = self.given == "token" or MISSING in (self.dob, self.given)
        return loose and self.mobile == DIFFERENT and self.email == DIFFERENT

    @property
    def contact_agrees(self) -> bool:
        return EXACT in (self.mobile, self.email) or self.address in (EXACT, "street")

    @property
    def second_nhi_doubt(self) -> bool:
        """Two valid NHIs: one person with two is possible, but only believed when the
        names agree exactly and some contact detail agrees too (namesakes born the same
        day, and twins with equivalent names, have their own NHIs)."""
        return self.nhi == DIFFERENT and (
            self.given not in (EXACT, "token") or not self.contact_agrees
        )

    @property
    def contact_doubt(self) -> bool:
        """Undated, no shared NHI, and a personal contact both hold differs with none
        agreeing: a parent named first for the child at the child's address, with his own
        mobile, against the child's one record. One changed mobile is common, so this is
        no conflict; but such a weak match is a review instead (scoring), which still
        counts where the undated record's edges lead (clustering.split_by_guard)."""
        return self.dob == MISSING and self.nhi != "same" and self.personal_conflict

    @property
    def incomplete(self) -> bool:
        """One side lacks its date of birth or given name (and no shared NHI vouches)."""
        return self.nhi != "same" and MISSING in (self.dob, self.given)

    @property
    def weak(self) -> bool:
        """A match on this evidence may attach a record to one person, never decide
        between two: a missing date of birth or given name, a given name that is only
        an initial, or a first name that is the other's middle name ('Thomas' ~ 'Jack
        Thomas': twins Jack Thomas and Oliver Thomas both fit)."""
        return self.nhi != "same" and (
            MISSING in (self.dob, self.given) or self.given in ("initial", "token"))

    @property
    def copy(self) -> bool:
        """Everything both records hold agrees exactly."""
        return all(level in (EXACT, "same", MISSING) for level in self) and self.given == EXACT

    @property
    def guard_conflict(self) -> bool:
        return self.guard_conflicts(STRICT)

    def guard_conflicts(self, guard: Guard) -> bool:
        """Conflicts that stop two groups of records being joined into one person."""
        return self.conflicts(guard) or self.second_nhi_doubt


def typo_close(a: str, b: str) -> bool:
    """One keying slip apart: a changed, dropped, added or transposed letter."""
    shortest = min(len(a), len(b))
    if shortest >= 3 and OSA.distance(a, b, score_cutoff=1) <= 1:
        return True
    if shortest >= 8 and OSA.distance(a, b, score_cutoff=2) <= 2:
        return True
    return shortest >= 6 and JaroWinkler.similarity(a, b) >= 0.94


def spelling_variant(a: str, b: str) -> bool:
    """Two spellings of one sounded name, one letter apart: a doubled letter (Ana / Anna,
    Isabela / Isabella), a silent h inside the name (Jon / John, Tomas / Thomas), c / k
    (Carl / Karl). Parents do not give twins two spellings of one name, so unlike
    Mark / Mary these are a typo, not the twin guard's 'different'. A first or last letter
    added is never one (Ana / Hana, Noa / Noah, Louis / Louise are two names)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 and {a[diff[0]], b[diff[0]]} == {"c", "k"}
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((i for i in range(len(short)) if short[i] != long[i]), len(short))
    if short != long[:i] + long[i + 1:] or i in (0, len(long) - 1):
        return False
    added = long[i]
    return added == "h" or added in (long[i - 1], long[i + 1])


def near(a: str, b: str) -> bool:
    return JaroWinkler.similarity(a, b) >= 0.85 or (
        min(len(a), len(b)) >= 5 and OSA.distance(a, b, score_cutoff=2) <= 2
    )


def compare_given(a: PreparedRecord, b: PreparedRecord) -> str:
    """exact > initial > equivalent > token > related > prefix > close > nickname_typo >
    near > different.

    'exact' also covers the same first name with a middle name present on one side only
    (middle names are compared on their own, `compare_middle`). 'token' is one side's
    first name among the other's middle names (goes by a middle name) — never two
    records that merely share a middle name, as twins can. Two different common names
    (Mark / Mary) are 'different', never 'close': between twins that letter is the whole
    difference. 'initial': a first name given as an initial, consistent with the other's
    names in order ('J M' ~ 'James Michael').
    """
    if not a.given or not b.given:
        return MISSING
    fa, fb = a.given_first, b.given_first
    if fa == fb:
        return EXACT
    if len(fa) == 1 or len(fb) == 1:
        if all(x[0] == y[0] for x, y in zip(a.given, b.given, strict=False)):
            return "initial"
        # A lone initial may be the middle name's ('W' for Mario Wyatt, first name unknown).
        lone, other = (a.given, b.given) if len(a.given) == 1 and len(fa) == 1 else (b.given, a.given)
        if len(lone) == 1 and len(lone[0]) == 1 and any(t[0] == lone[0] for t in other):
            return "initial"
        return DIFFERENT
    if equivalent(fa, fb):
        return "equivalent"
    if goes_by_middle(a, b) or goes_by_middle(b, a):
        return "token"  # 'Anne' vs 'Mary Anne': goes by a middle name
    if related(fa, fb):
        return "related"
    known = a.given_known and b.given_known
    if not known and min(len(fa), len(fb)) >= 3 and (fa.startswith(fb) or fb.startswith(fa)):
        return "prefix"  # 'Jess' ~ 'Jessica': a short form the table lacks
    if known:
        return "close" if spelling_variant(fa, fb) else DIFFERENT
    if typo_close(fa, fb):
        return "close"
    if _close_to_equivalent(fa, fb) or _close_to_equivalent(fb, fa):
        return NICKNAME_TYPO  # two steps (a nickname, then a slip): weaker than either
    if near(fa, fb):
        return "near"
    return DIFFERENT


def goes_by_middle(a: PreparedRecord, b: PreparedRecord) -> bool:
    """a's first name is one of b's middle names (or a nickname of one)."""
    fa = a.given_first
    return fa in b.given[1:] or any(equivalent(fa, y) for y in b.given[1:])


def compare_middle(a: PreparedRecord, b: PreparedRecord, given: str) -> str:
    """Middle names, when both records have them and their first names agree: exact (a
    shared middle name), initial (consistent initials), different."""
    ma, mb = a.given[1:], b.given[1:]
    if not ma or not mb or given not in (EXACT, "equivalent", "close", NICKNAME_TYPO, "prefix", "related"):
        return MISSING
    if set(ma) & set(mb):
        return EXACT
    if (len(ma[0]) == 1 or len(mb[0]) == 1) and ma[0][0] == mb[0][0]:
        return "initial"
    return DIFFERENT


def _close_to_equivalent(typed: str, known: str) -> bool:
    """A typo of a nickname or transliteration: 'Margaet' ~ 'Peggy' via Margaret."""
    return any(typo_close(typed, name) for name in names_in_groups_of(known))


def compare_family(a: PreparedRecord, b: PreparedRecord) -> str:
    """exact > token (hyphenated / multiple surnames) > equivalent > close > near > different."""
    if not a.family or not b.family:
        return MISSING
    if a.family_key == b.family_key:
        return EXACT
    if set(a.family) & set(b.family):
        return "token"
    if any(family_equivalent(x, y) for x in a.family for y in b.family):
        return "equivalent"
    if any(typo_close(x, y) for x in a.family for y in b.family) or typo_close(
        a.family_key, b.family_key
    ):
        return "close"
    if near(a.family_key, b.family_key):
        return "near"
    return DIFFERENT


def _tokens_agree(xs: tuple[str, ...], ys: tuple[str, ...]) -> bool:
    return any(x == y or equivalent(x, y) or typo_close(x, y) for x in xs for y in ys)


def compare_names(a: PreparedRecord, b: PreparedRecord) -> tuple[str, str]:
    """Given and family levels, recognising given and family names entered swapped — also
    with a typo on top ('Tabhta McGirr' ~ 'McGirr Tabitha'): one crossing agrees (exactly,
    as an equivalent or a slip) and the other at least loosely."""
    given, family = compare_given(a, b), compare_family(a, b)
    if (
        given in (DIFFERENT, "near", "initial")
        and family in (DIFFERENT, "near")
        and a.given and a.family and b.given and b.family
    ):
        cross_1 = _tokens_agree(a.given, b.family)
        cross_2 = _tokens_agree(a.family, b.given)
        if (cross_1 and cross_2) or (cross_1 and _tokens_near(a.family, b.given)) or (
                cross_2 and _tokens_near(a.given, b.family)):
            return "swapped", "swapped"
    return given, family


def _tokens_near(xs: tuple[str, ...], ys: tuple[str, ...]) -> bool:
    return any(min(len(x), len(y)) >= 4 and near(x, y) for x in xs for y in ys)


def compare_dob(a: PreparedRecord, b: PreparedRecord) -> str:
    """exact > swapped (day and month) > one_digit (in any position, the year's too) >
    typo (two neighbouring digits transposed, or the year off by one) > partial (same year,
    one side the 1 January that systems default to) > different."""
    if a.dob is None or b.dob is None:
        return MISSING
    if a.dob == b.dob:
        return EXACT
    x, y = a.dob, b.dob
    if x.year == y.year and x.day == y.month and x.month == y.day:
        return "swapped"
    da, db = a.dob_digits, b.dob_digits
    differing = [i for i in range(8) if da[i] != db[i]]
    if len(differing) == 1:
        return "one_digit"
    if (len(differing) == 2 and differing[1] == differing[0] + 1
            and da[differing[0]] == db[differing[1]] and da[differing[1]] == db[differing[0]]):
        return "typo"
    if (x.month, x.day) == (y.month, y.day) and abs(x.year - y.year) == 1:
        return "typo"
    if x.year == y.year and ((x.month, x.day) == (1, 1) or (y.month, y.day) == (1, 1)):
        return "partial"
    return DIFFERENT


def compare_nhi(a: PreparedRecord, b: PreparedRecord) -> str:
    if a.nhi is None or b.nhi is None:
        return MISSING
    return "same" if a.nhi == b.nhi else DIFFERENT


def compare_exact(x: str | None, y: str | None) -> str:
    if x is None or y is None:
        return MISSING
    return EXACT if x == y else DIFFERENT


def _street_close(a: str, b: str) -> bool:
    """Street names one or two keying slips apart, spaces already squeezed out."""
    if a == b:
        return True
    if min(len(a), len(b)) < 6:
        return False
    return OSA.distance(a, b, score_cutoff=2) <= 2 or JaroWinkler.similarity(a, b) >= 0.93


def compare_address(a: PreparedRecord, b: PreparedRecord) -> str:
    """exact > street (same number and street, postcode aside) > postcode > different.

    Streets are compared with spaces squeezed out and allowing a slip or two
    ('bedford s treet' ~ 'bedford street', 'lambrigg treet' ~ 'lambrigg street'); a
    house number present on one side only still counts as the same street."""
    if not a.address_block or not b.address_block:
        if a.postcode and b.postcode:
            return "postcode" if a.postcode == b.postcode else DIFFERENT
        return MISSING
    postcodes_clash = a.postcode and b.postcode and a.postcode != b.postcode
    if not postcodes_clash and (
        a.street == b.street and a.numbers == b.numbers
    ):
        return EXACT
    sa, sb = set(a.address), set(b.address)
    shared = sa & sb
    if any(t.isdigit() for t in shared) and len(shared) / len(sa | sb) >= 0.6:
        return "street"
    if a.street and b.street and (
        (not a.numbers or not b.numbers or set(a.numbers) & set(b.numbers))
        and _street_close(a.street, b.street)
    ):
        return "street"
    if a.postcode and a.postcode == b.postcode:
        return "postcode"
    return DIFFERENT


def compare(a: PreparedRecord, b: PreparedRecord) -> Levels:
    given, family = compare_names(a, b)
    return Levels(
        nhi=compare_nhi(a, b),
        given=given,
        middle=compare_middle(a, b, given),
        family=family,
        dob=compare_dob(a, b),
        mobile=compare_exact(a.mobile, b.mobile),
        email=compare_exact(a.email, b.email),
        address=compare_address(a, b),
    )


def compare_unless_conflict(a: PreparedRecord, b: PreparedRecord, guard: Guard = STRICT) -> Levels | None:
    """`compare`, but None as soon as the pair is known to conflict (different date of
    birth or given names without the same NHI, under the guard): most candidate pairs are
    household members or namesakes, and they need no more comparing."""
    nhi = compare_nhi(a, b)
    dob = compare_dob(a, b)
    if dob == DIFFERENT and nhi != "same" and guard.dob:
        return None
    given, family = compare_names(a, b)
    if given == DIFFERENT and nhi != "same" and guard.given:
        return None
    return Levels(
        nhi=nhi,
        given=given,
        middle=compare_middle(a, b, given),
        family=family,
        dob=dob,
        mobile=compare_exact(a.mobile, b.mobile),
        email=compare_exact(a.email, b.email),
        address=compare_address(a, b),
    )
