"""What sits between the sender and an SMS gateway client: the receipt callback address naming
the gateway. (Rate limits and connection slots are taken before a delivery is claimed:
services/dispatch/flow.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from services.dispatch.providers.base import ProviderResult, SmsMessage, SmsProvider, StatusAnswer


class GatewaySms(SmsProvider):
    """One SMS gateway, with the receipt callback address naming it."""

    def __init__(self, inner: SmsProvider, callback_base: str):
        self.inner = inner
        self.name = inner.name
        self.ANSWERS = inner.ANSWERS
        self.STATUS_MAP = inner.STATUS_MAP
        self.callback_url = (
            f"{callback_base.rstrip('/')}/v1/receipts/{inner.name}" if callback_base else None
        )

    async def send(self, message: SmsMessage) -> ProviderResult:
        return await self.inner.send(replace(message, callback_url=self.callback_url))

    async def send_batch(self, messages: Sequence[SmsMessage]) -> list[ProviderResult]:
        return await self.inner.send_batch(
            [replace(m, callback_url=self.callback_url) for m in messages])

    async def status(self, provider_reference: str) -> StatusAnswer:
        return await self.inner.status(provider_reference)

    async def close(self) -> None:
        await self.inner.close()
