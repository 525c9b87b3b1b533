"""Blocking: which earlier records a new record is compared with.

Each record goes into a few blocks (same NHI, same mobile, same date of birth and name
prefix, ...). Only records sharing a block are compared, and a block holding more than
`cap` records is not used at all, so the work per record stays bounded. Whether a pair
is a candidate depends only on the final block sizes, never on arrival order.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from services.dedupe.resolver.names import groups_of
from services.dedupe.resolver.records import PreparedRecord

# Keys that only list who holds a name (for re-weighting when it becomes common);
# they are never used to find candidates.
HOLDER_KINDS = frozenset({"given", "family"})


def index_keys(p: PreparedRecord) -> list[tuple]:
    """Every index key of a record: blocking keys, plus holder keys for its names."""
    keys: list[tuple] = []
    if p.nhi:
        keys.append(("nhi", p.nhi))
    if p.mobile:
        keys.append(("mobile", p.mobile))
    if p.email:
        keys.append(("email", p.email))
    if p.address_key:
        keys.append(("address", p.address_key))
    given, family = p.given_first, (p.family[0] if p.family else None)
    if p.dob:
        if given:
            keys.append(("dob+given", p.dob_digits, given[:2]))
            for group in sorted(groups_of(given))[:3]:
                keys.append(("dob+nickname", p.dob_digits, group))
        if family:
            keys.append(("dob+family", p.dob_digits, family[:3]))
            day, month = sorted((p.dob.day, p.dob.month))
            keys.append(("year+daymonth+family", p.dob.year, day, month, family[:3]))
    if given and family:
        # Order-free, so given and family names entered swapped still meet.
        keys.append(("names", *sorted((given, family))))
    if p.given_first:
        keys.append(("given", p.given_first))
    if p.family_key:
        keys.append(("family", p.family_key))
    return keys


def key_id(key: tuple) -> int:
    # In-process hash: the index lives in memory only and is rebuilt on restore.
    return hash(key)


class BlockIndex:
    """Key -> member record ids, with blocks over the cap marked unusable."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._members: dict[int, list[int]] = {}
        self._blocking: set[int] = set()  # ids of keys that are blocking keys

    def add(self, rid: int, keys: Iterable[tuple]) -> tuple[list[int], list[int]]:
        """Index a record. Returns (its key ids, blocks that just went over the cap)."""
        ids, overflowed = [], []
        for key in keys:
            kid = key_id(key)
            ids.append(kid)
            members = self._members.setdefault(kid, [])
            members.append(rid)
            if key[0] not in HOLDER_KINDS:
                self._blocking.add(kid)
                if len(members) == self.cap + 1:
                    overflowed.append(kid)
        return ids, overflowed

    def remove(self, rid: int, key_ids: Iterable[int]) -> list[int]:
        """Un-index a record. Returns blocks that just came back under the cap."""
        reopened = []
        for kid in key_ids:
            members = self._members[kid]
            members.remove(rid)
            if not members:
                del self._members[kid]
                self._blocking.discard(kid)
            elif len(members) == self.cap and kid in self._blocking:
                reopened.append(kid)
        return reopened

    def members(self, kid: int) -> list[int]:
        return self._members.get(kid, [])

    def usable(self, kid: int) -> bool:
        return kid in self._blocking and len(self._members.get(kid, ())) <= self.cap

    def candidates(self, key_ids: Iterable[int]) -> Iterator[int]:
        """Members of the usable blocks among key_ids (may repeat)."""
        for kid in key_ids:
            if self.usable(kid):
                yield from self._members[kid]

    def shares_usable_block(self, a_keys: Iterable[int], b_keys: Iterable[int]) -> bool:
        return any(self.usable(k) for k in set(a_keys) & set(b_keys))
