"""HTTP SMS provider client for our SMS gateway API (POST /v1/messages).

The gateway is idempotent on `reference`: we always send f"{notice_id}:sms", so a retry after
a timeout returns the original message instead of sending a second SMS — provided the retry
goes to the same gateway with the same body (ANSWERS says which answers leave that open).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import MappingProxyType

import httpx

from services.common.messages import DeliveryStatus
from services.dispatch.providers.base import (
    ProviderResult,
    SmsMessage,
    SmsProvider,
    Verdict,
    accepted,
    ambiguous,
    permanent,
    temporary,
)

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
    # Every answer a send can get: HTTP status codes, and what happened on the wire.
    ANSWERS = MappingProxyType(
        {
            202: accepted(),  # (and 200/201): the message status in the body says which
            400: permanent(),  # validation: this message will never be accepted
            422: permanent(),
            401: temporary(),  # our credentials, not the recipient's fault; nothing was sent
            403: temporary(),
            404: temporary(),
            # The gateway holds a message under our reference with another body: it may well
            # have been sent. Retry the same body there; never another gateway.
            409: ambiguous(),
            429: temporary(D.TEMPORARY_FAILURE),  # back off (Retry-After); nothing was sent
            # The gateway's own "could not process, resend" (as GOV.UK Notify documents 500).
            500: temporary(),
            503: temporary(),  # overloaded or in maintenance: refused before processing
            # An intermediary answered for the gateway (its proxy timed out or got no answer):
            # the gateway may have taken the message.
            502: ambiguous(),
            504: ambiguous(),
            "other-4xx": permanent(),
            "other-5xx": ambiguous(),
            "unexpected-status": ambiguous(),  # 1xx/3xx: not an answer we understand
            "bad-response": ambiguous(),  # 2xx without a readable message status
            "connect-error": temporary(),  # never reached the gateway
            "timeout": ambiguous(),  # sent, no answer in time
            "connection-lost": ambiguous(),  # reset or closed after the request went out
            "http-error": ambiguous(),
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
    def verdict_for_http(cls, code: int) -> Verdict:
        if code in cls.ANSWERS:
            return cls.ANSWERS[code]
        if 500 <= code < 600:
            return cls.ANSWERS["other-5xx"]
        if 400 <= code < 500:
            return cls.ANSWERS["other-4xx"]
        return cls.ANSWERS["unexpected-status"]

    def _answer(self, key: str | int, detail: str, **extra) -> ProviderResult:
        return ProviderResult.of(self.ANSWERS[key], self.name, detail, **extra)

    async def send(self, message: SmsMessage) -> ProviderResult:
        try:
            response = await self._client.post("/v1/messages", json=_payload(message))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            return self._answer("connect-error", "connect-error")  # never reached it
        except httpx.TimeoutException:
            return self._answer("timeout", "timeout")
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return self._answer("connection-lost", "connection-lost")
        except httpx.HTTPError:
            return self._answer("http-error", "http-error")

        code = response.status_code
        if code in (200, 201, 202):
            try:
                data = response.json()
                status = self.STATUS_MAP[data["status"]]
                provider_reference = str(data["id"])
            except (ValueError, KeyError, TypeError):
                return self._answer("bad-response", "bad-response")
            return ProviderResult(provider_reference, status, self.name, f"http-{code}")
        return ProviderResult.of(self.verdict_for_http(code), self.name, f"http-{code}",
                                 retry_after=_retry_after(response))

    async def send_batch(self, messages: Sequence[SmsMessage]) -> list[ProviderResult]:
        """Several messages in one request (POST /v1/messages/batch), each answered on its own
        with the code a single send would get — so each is classified by the same ANSWERS. An
        answer for the request as a whole (no connection, timeout, 5xx, an unreadable body)
        is every message's answer: what it means (not taken / maybe taken) holds for each."""
        payload = {"messages": [_payload(m) for m in messages]}
        try:
            response = await self._client.post("/v1/messages/batch", json=payload)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            return self._all(messages, "connect-error", "connect-error")
        except httpx.TimeoutException:
            return self._all(messages, "timeout", "timeout")
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return self._all(messages, "connection-lost", "connection-lost")
        except httpx.HTTPError:
            return self._all(messages, "http-error", "http-error")
        code = response.status_code
        if code != 200:
            verdict = self.verdict_for_http(code) if code >= 300 else self.ANSWERS["bad-response"]
            one = ProviderResult.of(verdict, self.name, f"http-{code}",
                                    retry_after=_retry_after(response))
            return [one] * len(messages)
        try:
            items = response.json()["results"]
            if len(items) != len(messages) or any(
                    i["reference"] != m.reference for i, m in zip(items, messages, strict=True)):
                raise ValueError("answers do not match the messages")
            return [self._item(item) for item in items]
        except (ValueError, KeyError, TypeError):
            # Maybe taken, every one of them: retry there with the same references.
            return self._all(messages, "bad-response", "bad-response")

    def _all(self, messages: Sequence[SmsMessage], key: str, detail: str) -> list[ProviderResult]:
        return [self._answer(key, detail)] * len(messages)

    def _item(self, item: dict) -> ProviderResult:
        code = int(item["code"])
        if code in (200, 201, 202):
            try:
                return ProviderResult(str(item["id"]), self.STATUS_MAP[item["status"]], self.name,
                                      f"http-{code}")
            except (KeyError, TypeError):
                return self._answer("bad-response", "bad-response")
        after = item.get("retry_after")
        return ProviderResult.of(self.verdict_for_http(code), self.name, f"http-{code}",
                                 retry_after=max(float(after), 0.0) if after is not None else None)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _payload(message: SmsMessage) -> dict:
    payload = {"to": message.to, "body": message.body, "reference": message.reference}
    if message.callback_url:
        payload["callback_url"] = message.callback_url
    return payload


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
        if not await self._enter():
            return self._answer("connect-error", "connect-error")
        try:
            return await super().send(message)
        finally:
            self._gate.release()

    async def send_batch(self, messages: Sequence[SmsMessage]) -> list[ProviderResult]:
        if not await self._enter():  # one connection for the whole batch
            return self._all(messages, "connect-error", "connect-error")
        try:
            return await super().send_batch(messages)
        finally:
            self._gate.release()

    async def _enter(self) -> bool:
        gate = self._gate
        if gate.locked():
            try:
                async with asyncio.timeout(self._pool_timeout):
                    await gate.acquire()
            except TimeoutError:
                return False
        else:
            await gate.acquire()  # free: returns at once
        return True
