"""Send permits: a delivery is claimed only when its send can start at once.

A permit for a channel is a connection slot (the SMTP pool, the SMS gateway's connections) plus,
when the channel is rate-limited, a token from its bucket. The sender takes permits BEFORE it
claims, claims at most that many deliveries per channel, gives back what the claim did not use,
and returns the slot when the send ends. So no claimed delivery waits for a token or a
connection while its lease runs (issue 10, item 9: 256 claims for 48 SMTP connections, and the
rate limit's wait, used to sit inside the lease).

Plain bookkeeping, no I/O: the sender owns the waiting (`wait_s` says for how long).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.common.ratelimit import TokenBucket


def bucket(rate: float, burst: int) -> TokenBucket | None:
    """A bucket of `rate` sends a second (bursts of `burst`); none when the rate is 0."""
    return TokenBucket(rate=rate, burst=max(burst, 1)) if rate > 0 else None


@dataclass
class Lane:
    """One channel's permits: `slots` sends at once, at most `bucket`'s rate."""

    slots: int
    bucket: TokenBucket | None = None
    in_use: int = field(default=0, init=False)

    def take(self, want: int) -> int:
        """Take up to `want` permits that can start now; returns how many."""
        free = min(want, self.slots - self.in_use)
        if free <= 0:
            return 0
        if self.bucket is not None:
            free = self.bucket.take_up_to(free)
        self.in_use += free
        return free

    def give_back(self, n: int) -> None:
        """Permits taken but not used (the claim found fewer due deliveries)."""
        if n > 0:
            self.in_use -= n
            if self.bucket is not None:
                self.bucket.give_back(n)

    def done(self) -> None:
        """A send ended: its connection slot is free again (its token was spent)."""
        self.in_use -= 1

    def wait_s(self) -> float | None:
        """0.0 if a permit is there now; seconds until the next token if only the rate holds
        sends back; None while every slot is busy (wait for a send to end)."""
        if self.in_use >= self.slots:
            return None
        return self.bucket.time_until(1) if self.bucket is not None else 0.0


class Permits:
    """The lanes of all channels, and the sender's overall limit on sends in flight."""

    def __init__(self, lanes: Mapping[str, Lane], concurrency: int):
        self.lanes = dict(lanes)
        self.concurrency = concurrency

    @property
    def in_flight(self) -> int:
        return sum(lane.in_use for lane in self.lanes.values())

    def take(self, channels: list[str], batch: int) -> dict[str, int]:
        """Permits for up to `batch` claims in all, spread over `channels` in the given order
        (the sender rotates it, so no channel starves another)."""
        room = min(batch, self.concurrency - self.in_flight)
        taken: dict[str, int] = {}
        for channel in channels:
            if room <= 0:
                break
            n = self.lanes[channel].take(room)
            if n:
                taken[channel] = n
                room -= n
        return taken

    def give_back(self, channel: str, n: int) -> None:
        self.lanes[channel].give_back(n)

    def done(self, channel: str) -> None:
        self.lanes[channel].done()

    def wait_s(self, channels: list[str]) -> float | None:
        """How long until some channel could take a permit (None: until a send ends)."""
        if self.in_flight >= self.concurrency:
            return None
        waits = [w for c in channels if (w := self.lanes[c].wait_s()) is not None]
        return min(waits) if waits else None
