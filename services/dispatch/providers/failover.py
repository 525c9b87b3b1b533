"""Two (or more) SMS gateways with weighted choice and failover.

Which gateway a reference goes to is recorded in the database, not here: the sender pins each
new reference to `choose()` when it claims it (delivery.gateway), and passes the pin with the
message. Then:
- A failure that certainly left nothing at the gateway (connection refused, 500/503, 401 — the
  ANSWERS of the client) marks it unhealthy for `cooldown` seconds, and, unless the reference
  is held there (`pinned`), the message moves to the next gateway — after `repin` has recorded
  the move, so a crash from here on retries at the new one.
- An ambiguous answer (timeout, connection lost after sending, 502/504, 409) never fails over:
  that gateway may have the message and only it can de-duplicate on our reference. The sender
  records that it may hold it; every later attempt goes there only, across restarts.
- Our own wait for a connection timing out (`unsent`: nothing left this process) is returned
  as it is: no unhealthy mark (it says nothing about the gateway), no move (retried there).
- Recipient-side outcomes (sent, permanent/temporary failure) are returned as they are.
A bulk request failed as a whole (5xx, timeout, reset) is ambiguous for each of its messages
(HttpSmsProvider.BATCH_ANSWERS): the gateway may have taken some before failing.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from services.common.messages import DeliveryStatus
from services.dispatch.providers.base import ProviderResult, SmsMessage, SmsProvider

Repin = Callable[[str], Awaitable[bool]]  # record "this reference now goes to <gateway>"


@dataclass
class WeightedProvider:
    provider: SmsProvider
    weight: int = 1
    unhealthy_until: float = 0.0


class FailoverSmsProvider(SmsProvider):
    # Outcomes are the underlying gateways'; nothing extra to map.
    ANSWERS = MappingProxyType({})
    STATUS_MAP = MappingProxyType(
        {s.value: s for s in DeliveryStatus
         if s not in (DeliveryStatus.UNREACHABLE, DeliveryStatus.SUPERSEDED,
                      DeliveryStatus.NOT_NEEDED)}
    )

    def __init__(
        self,
        providers: Sequence[SmsProvider | tuple[SmsProvider, int]],
        *,
        cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
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

    @property
    def gateways(self) -> list[str]:
        return [e.provider.name for e in self._entries]

    def healthy(self, name: str) -> bool:
        return self._entry(name).unhealthy_until <= self._clock()

    def mark_unhealthy(self, name: str) -> None:
        self._entry(name).unhealthy_until = self._clock() + self.cooldown

    def choose(self) -> str:
        """The gateway a new reference goes to now."""
        return self.order()[0].name

    def order(self, first: str | None = None) -> list[SmsProvider]:
        """Gateways in the order they would be tried: `first` if it is healthy, then the healthy
        ones by weighted draw, then the unhealthy ones, soonest to recover first (all down:
        still try rather than drop the message)."""
        now = self._clock()
        healthy = [e for e in self._entries if e.unhealthy_until <= now]
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
        if first is not None and any(e.provider.name == first for e in healthy):
            ordered.sort(key=lambda e: e.provider.name != first)
        return [e.provider for e in ordered]

    async def send(self, message: SmsMessage, repin: Repin | None = None) -> ProviderResult:
        """Send through the pinned gateway, failing over only while the reference is held
        nowhere. `repin` records a move first (the sender's; None: moves need no record)."""
        candidates = self._candidates(message)
        if isinstance(candidates, ProviderResult):
            return candidates
        return await self._try(message, candidates, message.gateway, repin, None)

    async def send_batch(  # type: ignore[override]
        self, messages: Sequence[SmsMessage], repins: Sequence[Repin | None] | None = None,
    ) -> list[ProviderResult]:
        """send() for each message, the first try of those going to the same gateway in one
        request (its bulk API). A message answered "certainly not taken" there goes on alone,
        exactly as send() would (unhealthy mark, the pin, a recorded move), all such messages
        at once. One whose first gateway is not its pin (the pin is unhealthy: a move to record
        first) goes alone."""
        repins = list(repins) if repins is not None else [None] * len(messages)
        results: list[ProviderResult | None] = [None] * len(messages)
        groups: dict[str, list[tuple[int, list[SmsProvider]]]] = {}
        alone: list[int] = []
        for i, message in enumerate(messages):
            candidates = self._candidates(message)
            if isinstance(candidates, ProviderResult):
                results[i] = candidates
            elif message.gateway is not None and candidates[0].name != message.gateway:
                alone.append(i)
            else:
                groups.setdefault(candidates[0].name, []).append((i, candidates))

        async def batch(members: list[tuple[int, list[SmsProvider]]]) -> None:
            first = members[0][1][0]
            answers = await first.send_batch([messages[i] for i, _ in members])
            moving = []
            for (i, candidates), answer in zip(members, answers, strict=True):
                if _stays(answer):
                    results[i] = answer
                    continue
                self.mark_unhealthy(first.name)
                if messages[i].pinned:
                    results[i] = answer
                else:
                    moving.append(move(i, candidates[1:], first.name, answer))
            # All at once, not one after another: the batch's deadline covers them all, and a
            # whole batch refused (a connection wait that timed out) is up to sms_batch_size.
            await asyncio.gather(*moving)

        async def move(i: int, candidates: list[SmsProvider], current: str,
                       answer: ProviderResult) -> None:
            results[i] = await self._try(messages[i], candidates, current, repins[i], answer)

        async def one(i: int) -> None:
            results[i] = await self.send(messages[i], repins[i])

        await asyncio.gather(*(batch(m) for m in groups.values()), *(one(i) for i in alone))
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _candidates(self, message: SmsMessage) -> list[SmsProvider] | ProviderResult:
        """The gateways to try, in order: only the pin once it may hold the reference."""
        if message.pinned and message.gateway:
            try:
                return [self._entry(message.gateway).provider]
            except KeyError:  # the gateway holding it is no longer configured
                return ProviderResult(None, DeliveryStatus.TECHNICAL_FAILURE, message.gateway,
                                      "gateway-unknown")
        return self.order(message.gateway)

    async def _try(self, message: SmsMessage, candidates: Sequence[SmsProvider],
                   current: str | None, repin: Repin | None,
                   result: ProviderResult | None) -> ProviderResult:
        for provider in candidates:
            if provider.name != current:
                if current is not None and repin is not None and not await repin(provider.name):
                    break  # the move could not be recorded: do not send where nothing says so
                current = provider.name
            result = await provider.send(message)
            if _stays(result):
                return result
            self.mark_unhealthy(provider.name)
            if message.pinned:
                break
        if result is None:
            return ProviderResult(None, DeliveryStatus.TECHNICAL_FAILURE, current or self.name,
                                  "repin-failed")
        return result

    def gateway(self, name: str) -> SmsProvider | None:
        """The gateway called `name` (a status lookup goes to the one that took the message,
        healthy or not: only it knows), or None when it is not configured (any more)."""
        try:
            return self._entry(name).provider
        except KeyError:
            return None

    def _entry(self, name: str) -> WeightedProvider:
        for e in self._entries:
            if e.provider.name == name:
                return e
        raise KeyError(name)

    async def close(self) -> None:
        for e in self._entries:
            await e.provider.close()


def _stays(result: ProviderResult) -> bool:
    """An answer that ends the try here: anything but "certainly not taken, the gateway's
    fault" (maybe taken, our own connection wait, accepted, the recipient's failure)."""
    return (result.ambiguous or result.unsent
            or result.status is not DeliveryStatus.TECHNICAL_FAILURE)
