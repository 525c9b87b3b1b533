"""Given-name equivalences: nicknames and transliterations (DOMAIN.md §3).

Each line is one group: a formal name first (its head), then its nicknames and
transliterations. A name may sit in several groups (Chris is Christopher or Christine).
Equivalence is NOT transitive: a variant is equivalent to its head (Bill ~ William,
Liam ~ William), but two variants of one head (Bill, Liam) are only 'related' — Liam is
a name in its own right, and chaining Bill ~ William ~ Liam joins two people. Keys are
folded with `normalise.name_tokens` (macrons dropped, double vowels collapsed), so
'Rāwiri' and 'Raawiri' both become 'rawiri'.
"""
from __future__ import annotations

from functools import lru_cache

from services.dedupe.resolver.normalise import name_tokens

_GROUPS = """
william bill billy will willy liam wiremu wiremu viliami uiliami wili
robert bob bobby rob robbie bert rapata lopati
james jim jimmy jamie hemi semisi jemi
john jack johnny jon hone hoani sione ioane keoni jonathan
mary molly polly mae mere meri mele malia
maria malia mere
david dave davey rawiri tevita tavita
peter pete pita petera petelo
michael mike mick mikey mikaere mikaele mikael
joseph joe joey hohepa iosefa sefo josefa
thomas tom tommy tamati tomasi toma tame
george hori siaosi joji
paul paora paulo
matthew matt matiu mateo
andrew andy drew anaru aneru
richard dick rick ricky rich rihari
edward ed eddie ted teddy eruera
charles charlie chuck hare
henry harry hal hanare
samuel sam sammy hamuera
daniel dan danny raniera
benjamin ben benny peneamine
nicholas nick nicky
anthony tony
christopher chris kit
christine chris chrissy tina
christina chris tina
stephen steve stevie tipene
steven steve stevie
timothy tim timo
alexander alex alec sandy
alexandra alex sandra
elizabeth liz lizzie beth betty eliza elisapeta irihapeti
catherine kate katie kath cathy catherina katarina kataraina
katherine kate katie kath kathy katarina
margaret maggie meg peggy makareta
susan sue susie huhana
sarah sara sally hera hara
hannah hana
rebecca becky becca ripeka
rachel rahera lesieli
victoria vicky tori wikitoria
anne ann annie anna ani
martha marata
jennifer jenny jen
patricia patty trish tricia
deborah debbie deb
amanda mandy
josephine jo josie
joanne jo joanna
gregory greg
jeffrey jeff
kenneth ken kenny
lawrence larry
ronald ron ronnie
donald don donnie
gerald gerry
phillip phil philip piripi
frederick fred freddie
joshua josh
jacob jake
nathan nate nathaniel
abraham abe aperahama
jeremiah jerry heremaia
charlotte charlie salote
caroline carol kararaina
julia julie huria
susanna susan huhana
adelaide atelaite
frank francis falani
ellen ellie erana
lillian lily riria
benedict ben
zachary zac zack
""".strip().splitlines()


def _build() -> tuple[dict[str, frozenset[int]], dict[int, str]]:
    groups: dict[str, set[int]] = {}
    heads: dict[int, str] = {}
    for group_id, line in enumerate(_GROUPS):
        words = line.split()
        heads[group_id] = name_tokens(words[0])[0]
        for word in words:
            for key in name_tokens(word):
                groups.setdefault(key, set()).add(group_id)
    return {k: frozenset(v) for k, v in groups.items()}, heads


NAME_GROUPS, _HEADS = _build()

# Common given names that are not in a group. A one-letter difference between two real
# names (Mark / Mary, Ana / Ani) is two people, not a typo; this list lets comparisons
# tell the difference. It is deliberately generic, not tuned to any test feed.
_COMMON_GIVEN = """
aaron adam aiden alan albert alice amber amelia amy andre angela arohanui aroha ava
barbara brandon brian bruce carl carmen chloe claire craig dale daniel dean diana
donna dylan eli ella emily emma eric erin ethan eva evan fiona gail gary glen grace
hamish hayden helen holly hugo ian isaac isla ivan jack jade jane janet jason jay
jayden jean jesse jill joan joel jordan karen kate kay keith kelly kevin kim kyle
lana laura lee leo lewis lily linda lisa logan lucy luke mark marie mason max maya
megan mia mila mona nancy neil nina noah olive oliver owen pam ravi rhys rita rob
rose ross ruby ruth ryan sean shane sonia tane tana tina toby troy tyler vera wayne
zoe ana ari awhina hemi hine huia kahu kiri mana manaia marama mihi moana nikau ngaio
rangi rewi tama tia tui wai wiki anahera kauri kaia ariki mata mele losa sina ofa
ana vai sefa lupe tavita wei li yan ying jun min hui hong jing lei ming ping hao
ji jin ling priya raj anil amit sunil neha arjun rahul kiran
""".split()

COMMON_GIVEN: frozenset[str] = frozenset(
    key for word in _COMMON_GIVEN for key in name_tokens(word)
) | frozenset(NAME_GROUPS)


@lru_cache(maxsize=65536)
def groups_of(token: str) -> frozenset[int]:
    return NAME_GROUPS.get(token, frozenset())


_MEMBERS: dict[int, tuple[str, ...]] = {}
for _name, _groups in NAME_GROUPS.items():
    for _g in _groups:
        _MEMBERS[_g] = (*_MEMBERS.get(_g, ()), _name)


@lru_cache(maxsize=65536)
def names_in_groups_of(token: str) -> tuple[str, ...]:
    """Every name sharing a group with `token` (including itself)."""
    return tuple(sorted({n for g in groups_of(token) for n in _MEMBERS[g]}))


@lru_cache(maxsize=65536)
def equivalent(a: str, b: str) -> bool:
    """True when one folded given-name token is a nickname or transliteration of the other
    (they share a group whose head is one of them)."""
    return a != b and any(_HEADS[g] in (a, b) for g in groups_of(a) & groups_of(b))


@lru_cache(maxsize=65536)
def related(a: str, b: str) -> bool:
    """Two variants of one formal name, neither of them that name (Bill and Liam)."""
    return a != b and bool(groups_of(a) & groups_of(b)) and not equivalent(a, b)


# Family names that are the same name romanised differently.
_FAMILY_GROUPS = """
li lee
chen chan
zhang chang cheung
huang wong
liu lau
wu ng
zhou chow
""".strip().splitlines()

FAMILY_GROUPS: dict[str, frozenset[int]] = {}
for _gid, _line in enumerate(_FAMILY_GROUPS):
    for _w in _line.split():
        for _k in name_tokens(_w):  # folded like the records: 'lee' -> 'le'
            FAMILY_GROUPS[_k] = FAMILY_GROUPS.get(_k, frozenset()) | {_gid}


def family_equivalent(a: str, b: str) -> bool:
    return a != b and bool(FAMILY_GROUPS.get(a, frozenset()) & FAMILY_GROUPS.get(b, frozenset()))
