"""Token buckets: `rate` tokens per second, up to `burst` banked. One implementation for every
limit in the system — a gateway's send rate (wait for a token) and an agency's request rate
(refuse with the time until a token)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _updated: float = field(init=False)
    _lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._tokens = float(self.burst)
        self._updated = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_acquire(self, tokens: float = 1) -> bool:
        return self.wait_time(tokens) == 0.0

    def wait_time(self, tokens: float = 1) -> float:
        """Take the tokens and return 0.0, or take nothing and return the seconds until they
        would be there."""
        self._check(tokens)
        self._refill()
        if self._tokens >= tokens:
            self._tokens -= tokens
            return 0.0
        return (tokens - self._tokens) / self.rate

    def take_up_to(self, n: int) -> int:
        """Take as many whole tokens as are there, up to `n`, without waiting; returns how many."""
        self._refill()
        taken = max(0, min(n, int(self._tokens)))
        self._tokens -= taken
        return taken

    def give_back(self, n: float) -> None:
        """Return tokens taken but not used (never above the burst)."""
        self._refill()
        self._tokens = min(self.burst, self._tokens + n)

    def time_until(self, tokens: float = 1) -> float:
        """Seconds until `tokens` would be there (0.0: now), taking nothing."""
        self._check(tokens)
        self._refill()
        return max(0.0, (tokens - self._tokens) / self.rate)

    async def acquire(self, tokens: float = 1) -> None:
        """Wait for the tokens. The lock keeps waiters first-come first-served instead of racing
        for each refill."""
        async with self._lock:
            while (wait := self.wait_time(tokens)) > 0:  # noqa: ASYNC110 - waiting on a clock
                await asyncio.sleep(wait)

    def _check(self, tokens: float) -> None:
        if tokens > self.burst:
            raise ValueError("cannot acquire more tokens than the burst size")

    @property
    def available(self) -> float:
        self._refill()
        return self._tokens


class KeyedRateLimiter:
    """One bucket per key (an agency, a client), created on first use. Per process: replicas
    each keep their own."""

    def __init__(self, per_minute: int, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic, max_keys: int | None = None):
        self.rate = per_minute / 60.0
        self.burst = float(burst or max(per_minute // 4, 1))
        self.clock = clock
        # Keys from the public (client addresses) are unbounded: past max_keys, buckets that
        # have refilled (they limit nothing) are forgotten.
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def wait_time(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if self.max_keys is not None and len(self._buckets) >= self.max_keys:
                self._buckets = {k: b for k, b in self._buckets.items() if b.available < b.burst}
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.clock)
        return bucket.wait_time()

    def __len__(self) -> int:
        return len(self._buckets)
