"""Splitting work into bounded batches (statement sizes, transactions, sends)."""

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items; works on any iterable, lazily."""
    if size < 1:
        raise ValueError("size must be >= 1")
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
