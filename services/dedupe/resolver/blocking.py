"""Blocking: which earlier records a new record is compared with.

Each record goes into a few blocks (same NHI, same mobile, same date of birth and name
prefix, ...). Only records sharing a block are compared, and a block holding more than
its kind's cap is not used at all, so the work per record stays bounded. Whether a pair
is a candidate depends only on the final block sizes, never on arrival order.

Keys are chosen so that blocks stay small as an incident grows: a key made only of
names (or only of a street address) grows with the feed until it hits the cap and then
drops all its pairs, so names are always combined with part of the date of birth or the
postcode, and an address with its postcode. Any single damaged component (a wrong year,
a swapped day and month, a missing or replaced date of birth, swapped given and family
names) still leaves at least one shared key.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from services.dedupe.resolver.names import groups_of
from services.dedupe.resolver.records import PreparedRecord

# Keys that only list who holds a value (for re-weighting when it becomes common);
# they are never used to find candidates.
HOLDER_KINDS = frozenset({"given", "family", "dob"})

# Every kind of key, in a fixed order: its position is stored in the key id.
KINDS = (
    "given", "family",
    "nhi", "mobile", "email", "address",
    "dob+given", "dob+nickname", "dob+family",
    "names+year", "names+daymonth", "names+postcode",
    "dob", "dob+initials",
)
_KIND_CLASS = {kind: i for i, kind in enumerate(KINDS)}
_CLASS_BITS = 4
_CLASS_MASK = (1 << _CLASS_BITS) - 1
_HASH_MASK = (1 << 56) - 1  # ids stay under 2**60: 32-byte ints

# Per-kind caps. A household is at most a few people with a few records each, so the
# contact and address blocks need not be large; name-only combinations are the first to
# grow with the feed, so their cap is smallest.
DEFAULT_CAPS: dict[str, int] = {
    "nhi": 100, "mobile": 50, "email": 50, "address": 50,
    "dob+given": 50, "dob+nickname": 50, "dob+family": 50, "dob+initials": 50,
    "names+year": 30, "names+daymonth": 30, "names+postcode": 30,
}


def index_keys(p: PreparedRecord) -> list[tuple]:
    """Every index key of a record: blocking keys, plus holder keys for its values."""
    keys: list[tuple] = []
    if p.nhi:
        keys.append(("nhi", p.nhi))
    if p.mobile:
        keys.append(("mobile", p.mobile))
    if p.email:
        keys.append(("email", p.email))
    if p.address_block:
        keys.append(("address", p.address_block))
    given, family = p.given_first, (p.family[0] if p.family else None)
    if p.dob:
        if given:
            keys.append(("dob+given", p.dob_digits, given[:2]))
            for group in sorted(groups_of(given))[:3]:
                keys.append(("dob+nickname", p.dob_digits, group))
        if family:
            keys.append(("dob+family", p.dob_digits, family[:3]))
        if given and family:
            # Order-free initials: given and family swapped and one of them mistyped.
            keys.append(("dob+initials", p.dob_digits, *sorted((given[0], family[0]))))
    if given and family:
        # Order-free, so given and family names entered swapped still meet.
        names = (given, family) if given < family else (family, given)
        if p.dob:
            keys.append(("names+year", *names, p.dob.year))
            keys.append(("names+daymonth", *names, *sorted((p.dob.day, p.dob.month))))
        keys.append(("names+postcode", *names, p.postcode))
    if p.dob_digits:
        keys.append(("dob", p.dob_digits))
    if given:
        keys.append(("given", given))
    if p.family_key:
        keys.append(("family", p.family_key))
    return keys


def key_id(key: tuple) -> int:
    """A compact id for a key: its hash with the key's kind in the low bits.

    In-process hash: the index lives in memory only and is rebuilt on restore.
    """
    return ((hash(key) & _HASH_MASK) << _CLASS_BITS) | _KIND_CLASS[key[0]]


def kind_of(kid: int) -> str:
    return KINDS[kid & _CLASS_MASK]


class BlockIndex:
    """Key id -> member record ids, with blocks over their cap marked unusable.

    A block with one member stores the bare record id (most keys are unique to one
    person), a small shared block a tuple (smaller than a list), and only the holder
    kinds, which can grow to every holder of a common name, a list. Holder kinds never
    block.
    """

    def __init__(self, cap: int = 100, caps: dict[str, int] | None = None) -> None:
        self.cap = cap
        caps = DEFAULT_CAPS if caps is None else caps
        self._cap_of_class = [
            0 if kind in HOLDER_KINDS else min(cap, caps.get(kind, cap)) for kind in KINDS
        ]
        self._members: dict[int, int | tuple[int, ...] | list[int]] = {}

    def cap_of(self, kid: int) -> int:
        return self._cap_of_class[kid & _CLASS_MASK]

    def add(self, rid: int, keys: Iterable[tuple]) -> tuple[list[int], list[int]]:
        """Index a record. Returns (its key ids, blocks that just went over the cap)."""
        ids, overflowed = [], []
        members_of = self._members
        for key in keys:
            kid = key_id(key)
            ids.append(kid)
            held = members_of.get(kid)
            if held is None:
                members_of[kid] = rid
                continue
            cap = self._cap_of_class[kid & _CLASS_MASK]
            if isinstance(held, int):
                held = members_of[kid] = (held, rid) if cap else [held, rid]
            elif isinstance(held, tuple):
                held = members_of[kid] = (*held, rid)
            else:
                held.append(rid)
            if cap and len(held) == cap + 1:
                overflowed.append(kid)
        return ids, overflowed

    def remove(self, rid: int, key_ids: Iterable[int]) -> list[int]:
        """Un-index a record. Returns blocks that just came back under the cap."""
        reopened = []
        members_of = self._members
        for kid in key_ids:
            held = members_of.get(kid)
            if held is None:
                continue
            if isinstance(held, int):
                if held == rid:
                    del members_of[kid]
                continue
            if isinstance(held, tuple):
                held = members_of[kid] = tuple(m for m in held if m != rid)
            else:
                held.remove(rid)
            if len(held) == 1:
                members_of[kid] = held[0]
            cap = self._cap_of_class[kid & _CLASS_MASK]
            if cap and len(held) == cap:
                reopened.append(kid)
        return reopened

    def members(self, kid: int) -> list[int] | tuple[int, ...]:
        held = self._members.get(kid)
        if held is None:
            return ()
        return (held,) if isinstance(held, int) else held

    def size(self, kid: int) -> int:
        held = self._members.get(kid)
        if held is None:
            return 0
        return 1 if isinstance(held, int) else len(held)

    def usable(self, kid: int) -> bool:
        cap = self._cap_of_class[kid & _CLASS_MASK]
        return bool(cap) and self.size(kid) <= cap

    def candidates(self, key_ids: Iterable[int]) -> Iterator[int]:
        """Members of the usable blocks among key_ids (may repeat)."""
        members_of, caps = self._members, self._cap_of_class
        for kid in key_ids:
            cap = caps[kid & _CLASS_MASK]
            if not cap:
                continue
            held = members_of.get(kid)
            if held is None:
                continue
            if isinstance(held, int):
                yield held
            elif len(held) <= cap:
                yield from held

    def shares_usable_block(self, a_keys: Iterable[int], b_keys: Iterable[int]) -> bool:
        return any(self.usable(k) for k in set(a_keys) & set(b_keys))
