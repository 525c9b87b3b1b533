"""What sits between the sender and a provider client: the gateway's token bucket
(services.common.ratelimit) and, for SMS, the receipt callback address naming the gateway."""

from __future__ import annotations

from dataclasses import replace

from services.common.ratelimit import TokenBucket
from services.dispatch.providers.base import (
    EmailMessage,
    EmailProvider,
    ProviderResult,
    SmsMessage,
    SmsProvider,
)


def bucket(rate: float, burst: int) -> TokenBucket | None:
    """A bucket of `rate` sends a second (bursts of `burst`); none when the rate is 0."""
    return TokenBucket(rate=rate, burst=max(burst, 1)) if rate > 0 else None


class RateLimitedEmail(EmailProvider):
    """An email provider behind a token bucket (one per gateway)."""

    def __init__(self, inner: EmailProvider, bucket: TokenBucket | None):
        self.inner, self.bucket = inner, bucket
        self.name = inner.name
        self.STATUS_MAP = inner.STATUS_MAP

    async def send(self, message: EmailMessage) -> ProviderResult:
        if self.bucket:
            await self.bucket.acquire()
        return await self.inner.send(message)

    async def close(self) -> None:
        await self.inner.close()


class GatewaySms(SmsProvider):
    """One SMS gateway: its token bucket, and the receipt callback address naming it."""

    def __init__(self, inner: SmsProvider, bucket: TokenBucket | None, callback_base: str):
        self.inner, self.bucket = inner, bucket
        self.name = inner.name
        self.STATUS_MAP = inner.STATUS_MAP
        self.callback_url = (
            f"{callback_base.rstrip('/')}/v1/receipts/{inner.name}" if callback_base else None
        )

    async def send(self, message: SmsMessage) -> ProviderResult:
        if self.bucket:
            await self.bucket.acquire()
        return await self.inner.send(replace(message, callback_url=self.callback_url))

    async def close(self) -> None:
        await self.inner.close()
