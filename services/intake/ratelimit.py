"""Per-agency request rate limit: a token bucket per agency, per intake replica."""

import time


class AgencyRateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None):
        self.rate = per_minute / 60.0
        self.burst = float(burst or max(per_minute // 4, 1))
        self._buckets: dict[str, tuple[float, float]] = {}

    def try_acquire(self, agency_id: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        now = time.monotonic()
        tokens, last = self._buckets.get(agency_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[agency_id] = (tokens - 1, now)
            return 0.0
        self._buckets[agency_id] = (tokens, now)
        return (1 - tokens) / self.rate
