"""How common each value is: distinct people per name, mobile, email and address.

A clinic's shared phone held by hundreds of patients, or a common surname, must add
little weight. Counts are of distinct people (approximated by given name + date of
birth), so one person's five records of the same mobile count once.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from services.dedupe.resolver.records import PreparedRecord

FREQUENCY_FIELDS = ("nhi", "given", "family", "dob", "mobile", "email", "address")
# Fields whose frequency is the number of records holding the value, read from the block
# index (which lists them anyway) rather than distinct people counted here: nearly every
# NHI and date of birth is held by several records, and a table of their holders would
# cost ~0.2 KB per record. Their Frequency rules allow for it (see config.py).
COUNTED_BY_INDEX = ("nhi", "dob")


def frequency_values(p: PreparedRecord) -> Iterator[tuple[str, str]]:
    """The (field, value) pairs of a record whose exact agreement is weighted by how many
    distinct people hold the value (the COUNTED_BY_INDEX fields are counted elsewhere)."""
    if p.given_first:
        yield "given", p.given_first
    if p.family_key:
        yield "family", p.family_key
    if p.mobile:
        yield "mobile", p.mobile
    if p.email:
        yield "email", p.email
    if p.address_block:
        yield "address", p.address_block


def indexed_values(p: PreparedRecord) -> Iterator[tuple[str, str]]:
    """The (field, value) pairs whose frequency is the count of records holding them."""
    if p.nhi:
        yield "nhi", p.nhi
    if p.dob_digits:
        yield "dob", p.dob_digits


def bucket(distinct: int) -> int:
    """floor(log2 n): 1 -> 0, 2-3 -> 1, 4-7 -> 2, ..."""
    return max(distinct, 1).bit_length() - 1


class ValueFrequency:
    """Per (field, value): which people hold it, and the bucket of how many they are.

    Most mobiles, emails and addresses belong to one record. When `add` is given
    `others` (a way to list the proxies of the value's other holders, e.g. from the block
    index), a value is only tracked once a second record holds it, and untracked again
    when it is back to one; an untracked value counts as one person. That keeps a
    million unique phone numbers out of this table.
    """

    def __init__(self) -> None:
        # hash((field, value)) -> proxy of the one holder, or {proxy: records} once shared.
        # Keyed by the hash (an int) rather than the tuple to keep a million values small.
        self._holders: dict[int, int | dict[int, int]] = {}

    def distinct(self, field: str, value: str) -> int:
        held = self._holders.get(hash((field, value)))
        if held is None:
            return 0
        return len(held) if isinstance(held, dict) else 1

    def bucket(self, field: str, value: str) -> int:
        return bucket(self.distinct(field, value))

    def add(self, field: str, value: str, proxy: int,
            others: Callable[[], Iterable[int]] | None = None) -> bool:
        """Count one more record; True when the value's bucket changed."""
        key = hash((field, value))
        held = self._holders.get(key)
        if held is None:
            if others is None:
                self._holders[key] = proxy
                return False
            held = {}
            for other in others():
                held[other] = held.get(other, 0) + 1
            if not held:
                return False  # the only holder: not tracked
            self._holders[key] = held
        before = len(held) if isinstance(held, dict) else 1
        if not isinstance(held, dict):
            held = self._holders[key] = {held: 1}
        held[proxy] = held.get(proxy, 0) + 1
        return bucket(len(held)) != bucket(before)

    def remove(self, field: str, value: str, proxy: int, sparse: bool = False) -> bool:
        """Count one record fewer; True when the value's bucket changed. `sparse` (the
        counterpart of `add(..., others=...)`) stops tracking a value held by one record."""
        key = hash((field, value))
        held = self._holders.get(key)
        if held is None:
            return False
        if not isinstance(held, dict):
            if held == proxy:
                del self._holders[key]
            return False
        before = len(held)
        if proxy in held:
            held[proxy] -= 1
            if held[proxy] == 0:
                del held[proxy]
        if not held or (sparse and len(held) == 1 and next(iter(held.values())) == 1):
            del self._holders[key]
            return bucket(max(len(held), 1)) != bucket(before)
        return bucket(len(held)) != bucket(before)
