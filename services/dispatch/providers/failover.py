"""Two (or more) SMS providers with weighted choice and failover.

- On a technical failure of the chosen provider it is marked unhealthy for `cooldown` seconds
  and the message goes to the next provider.
- Ambiguous results (timeout after the request went out) never fail over: the first provider
  may have sent it, and only it can de-duplicate on our reference. The reference stays pinned
  to that provider (in this process) so the retry goes back there.
- Recipient-side outcomes (sent, permanent/temporary failure) are returned as they are.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from services.common.messages import DeliveryStatus
from services.dispatch.providers.base import ProviderResult, SmsMessage, SmsProvider


@dataclass
class WeightedProvider:
    provider: SmsProvider
    weight: int = 1
    unhealthy_until: float = 0.0


class FailoverSmsProvider(SmsProvider):
    # Outcomes are the underlying providers'; nothing extra to map. ('unreachable' is ours: no
    # provider reports it.)
    STATUS_MAP = MappingProxyType(
        {s.value: s for s in DeliveryStatus if s is not DeliveryStatus.UNREACHABLE}
    )

    def __init__(
        self,
        providers: Sequence[SmsProvider | tuple[SmsProvider, int]],
        *,
        cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        pin_capacity: int = 100_000,
    ) -> None:
        if not providers:
            raise ValueError("need at least one SMS provider")
        self.name = "sms-failover"
        self._entries = [
            WeightedProvider(*p) if isinstance(p, tuple) else WeightedProvider(p) for p in providers
        ]
        if len({e.provider.name for e in self._entries}) != len(self._entries):
            raise ValueError("SMS provider names must be unique")
        self.cooldown = cooldown
        self._clock = clock
        self._rng = rng or random.Random()
        self._pins: OrderedDict[str, str] = OrderedDict()  # reference -> provider name
        self._pin_capacity = pin_capacity

    def healthy(self, name: str) -> bool:
        return self._entry(name).unhealthy_until <= self._clock()

    def mark_unhealthy(self, name: str) -> None:
        self._entry(name).unhealthy_until = self._clock() + self.cooldown

    def order(self, reference: str | None = None) -> list[SmsProvider]:
        """Providers in the order they will be tried for this message."""
        now = self._clock()
        healthy = [e for e in self._entries if e.unhealthy_until <= now]
        # All down: still try, soonest-to-recover first, rather than drop the message.
        unhealthy = sorted(
            (e for e in self._entries if e.unhealthy_until > now), key=lambda e: e.unhealthy_until
        )
        ordered: list[WeightedProvider] = []
        pool = list(healthy)
        while pool:  # weighted draw without replacement
            pick = self._rng.choices(pool, weights=[max(e.weight, 0) or 1e-9 for e in pool])[0]
            ordered.append(pick)
            pool.remove(pick)
        ordered += unhealthy
        pinned = self._pins.get(reference) if reference else None
        if pinned:
            ordered.sort(key=lambda e: e.provider.name != pinned)
        return [e.provider for e in ordered]

    async def send(self, message: SmsMessage) -> ProviderResult:
        pinned = self._pins.get(message.reference)
        candidates = self.order(message.reference)
        if pinned:
            candidates = candidates[:1]  # only the pinned provider can de-duplicate
        result: ProviderResult | None = None
        for provider in candidates:
            result = await provider.send(message)
            if result.ambiguous:
                self._pin(message.reference, provider.name)
                return result
            if result.status is DeliveryStatus.TECHNICAL_FAILURE:
                self.mark_unhealthy(provider.name)
                continue
            self._pins.pop(message.reference, None)
            return result
        assert result is not None
        return result

    def _pin(self, reference: str, name: str) -> None:
        self._pins[reference] = name
        self._pins.move_to_end(reference)
        while len(self._pins) > self._pin_capacity:
            self._pins.popitem(last=False)

    def _entry(self, name: str) -> WeightedProvider:
        for e in self._entries:
            if e.provider.name == name:
                return e
        raise KeyError(name)

    async def close(self) -> None:
        for e in self._entries:
            await e.provider.close()
