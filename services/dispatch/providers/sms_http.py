"""HTTP SMS provider client for our SMS gateway API (POST /v1/messages).

The gateway is idempotent on `reference`: we always send f"{notice_id}:sms", so a retry after
a timeout returns the original message instead of sending a second SMS.
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType

import httpx

from services.common.messages import DeliveryStatus
from services.dispatch.providers.base import ProviderResult, SmsMessage, SmsProvider

D = DeliveryStatus


class HttpSmsProvider(SmsProvider):
    # Provider message statuses (send response and receipts) -> ours.
    STATUS_MAP = MappingProxyType(
        {
            "accepted": D.SENT,
            "queued": D.SENT,
            "sent": D.SENT,
            "delivered": D.DELIVERED,
            "failed": D.PERMANENT_FAILURE,  # handset/carrier rejected: number is bad
            "rejected": D.PERMANENT_FAILURE,
            "expired": D.TEMPORARY_FAILURE,  # phone off for the validity period
        }
    )
    # HTTP answers that carry no message status -> ours.
    HTTP_STATUS_MAP = MappingProxyType(
        {
            400: D.PERMANENT_FAILURE,  # validation: this message will never be accepted
            422: D.PERMANENT_FAILURE,
            401: D.TECHNICAL_FAILURE,  # our credentials, not the recipient's fault
            403: D.TECHNICAL_FAILURE,
            404: D.TECHNICAL_FAILURE,
            409: D.TECHNICAL_FAILURE,  # same reference, different body: a bug on our side
            429: D.TEMPORARY_FAILURE,  # back off (Retry-After); failing over would not help
            500: D.TECHNICAL_FAILURE,
            502: D.TECHNICAL_FAILURE,
            503: D.TECHNICAL_FAILURE,
            504: D.TECHNICAL_FAILURE,
        }
    )

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        name: str = "sms-http",
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=httpx.Timeout(timeout)
        )
        self._owns_client = client is None

    @classmethod
    def status_for_http(cls, code: int) -> DeliveryStatus:
        if code in cls.HTTP_STATUS_MAP:
            return cls.HTTP_STATUS_MAP[code]
        if 500 <= code < 600:
            return D.TECHNICAL_FAILURE
        if 400 <= code < 500:
            return D.PERMANENT_FAILURE
        return D.TECHNICAL_FAILURE  # unexpected 1xx/3xx

    async def send(self, message: SmsMessage) -> ProviderResult:
        payload = {"to": message.to, "body": message.body, "reference": message.reference}
        if message.callback_url:
            payload["callback_url"] = message.callback_url
        try:
            response = await self._client.post("/v1/messages", json=payload)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            # The request never reached the provider: safe to fail over.
            return ProviderResult(None, D.TECHNICAL_FAILURE, self.name, "connect-error")
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError):
            # It may have been accepted. Retry with the same reference, same provider.
            return ProviderResult(None, D.TECHNICAL_FAILURE, self.name, "timeout", ambiguous=True)
        except httpx.HTTPError:
            return ProviderResult(None, D.TECHNICAL_FAILURE, self.name, "http-error")

        if response.status_code in (200, 201, 202):
            try:
                data = response.json()
                status = self.STATUS_MAP[data["status"]]
                provider_reference = str(data["id"])
            except (ValueError, KeyError, TypeError):
                return ProviderResult(None, D.TECHNICAL_FAILURE, self.name, "bad-response")
            return ProviderResult(
                provider_reference, status, self.name, f"http-{response.status_code}"
            )

        return ProviderResult(
            None,
            self.status_for_http(response.status_code),
            self.name,
            f"http-{response.status_code}",
            retry_after=_retry_after(response),
        )

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None  # HTTP-date form: let the backoff policy decide


class BoundedHttpSmsProvider(HttpSmsProvider):
    """HttpSmsProvider with a client built for it (pool limits), which it closes.

    Requests wait for a connection HERE, not in httpcore's pool: httpcore re-scans every
    queued request against every connection (and polls each idle socket) whenever a request
    starts or ends, which with hundreds of sends in flight cost several ms of CPU per SMS.
    The wait is bounded like httpx's pool timeout and ends the same way (PoolTimeout →
    connect-error: the request never reached the provider, so failover is safe)."""

    def __init__(self, base_url: str, *, name: str, client: httpx.AsyncClient,
                 connections: int = 20, pool_timeout: float | None = None):
        super().__init__(base_url, name=name, client=client)
        self._owns_client = True
        self._gate = asyncio.Semaphore(max(connections, 1))
        self._pool_timeout = pool_timeout

    async def send(self, message: SmsMessage) -> ProviderResult:
        gate = self._gate
        if gate.locked():
            try:
                async with asyncio.timeout(self._pool_timeout):
                    await gate.acquire()
            except TimeoutError:
                return ProviderResult(None, D.TECHNICAL_FAILURE, self.name, "connect-error")
        else:
            await gate.acquire()  # free: returns at once
        try:
            return await super().send(message)
        finally:
            gate.release()
