"""HTTP SMS provider client for our SMS gateway API (POST /v1/messages).

The gateway is idempotent on `reference`: we always send f"{notice_id}:sms", so a retry after
a timeout returns the original message instead of sending a second SMS — provided the retry
goes to the same gateway with the same body (ANSWERS says which answers leave that open).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from services.common.messages import DeliveryStatus
from services.dispatch.providers.base import (
    Lookup,
    ProviderResult,
    SmsMessage,
    SmsProvider,
    StatusAnswer,
    Verdict,
    accepted,
    ambiguous,
    permanent,
    temporary,
    unsent,
)

D = DeliveryStatus
T = TypeVar("T")


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
            "pool-timeout": unsent(),  # our own wait for a connection: never left us
            "timeout": ambiguous(),  # sent, no answer in time
            "connection-lost": ambiguous(),  # reset or closed after the request went out
            "http-error": ambiguous(),
        }
    )

    # What an answer to a bulk request AS A WHOLE means for every message in it. Stricter than
    # ANSWERS: a gateway can fail part-way through a batch, after taking some of its messages,
    # so a failure of the whole request says nothing about any one message ("maybe taken",
    # retried there under the same reference, which it dedupes). Only an answer that proves
    # nothing was taken lets a message move elsewhere: no connection, our own connection wait,
    # and the 4xx the bulk API defines as refusing the request before it looks at any message
    # (services/gateways/sms_server.py; a real provider's must be checked against its docs).
    BATCH_ANSWERS = MappingProxyType(
        {
            **{code: temporary() for code in (400, 401, 403, 404, 405, 413, 415, 422)},
            429: temporary(D.TEMPORARY_FAILURE),  # back off (Retry-After); nothing was taken
            409: ambiguous(),
            # The gateway's own 500/503 answers for the request: it may have stopped mid-way.
            500: ambiguous(),
            503: ambiguous(),
            502: ambiguous(),
            504: ambiguous(),
            "other-4xx": ambiguous(),  # not defined as refusing before processing
            "other-5xx": ambiguous(),
            "unexpected-status": ambiguous(),
            "bad-response": ambiguous(),
            "connect-error": temporary(),
            "pool-timeout": unsent(),
            "timeout": ambiguous(),
            "connection-lost": ambiguous(),
            "http-error": ambiguous(),
        }
    )

    # What each answer to a status lookup (GET /v1/messages/{id}/status) means. Only a 200
    # with a message status we know decides anything; everything else is asked again later —
    # a lookup never fails a delivery by itself. 404: the gateway has no such message (ops
    # look: it took it, by its own answer, so this is the gateway's problem, not the person's).
    LOOKUP_ANSWERS = MappingProxyType(
        {
            200: Lookup.STATUS,
            404: Lookup.NOT_FOUND,
            "other-status": Lookup.UNANSWERED,  # 401/403 (our key), 429, 5xx, 3xx, ...
            "bad-response": Lookup.UNANSWERED,  # 200 without a status we know
            "connect-error": Lookup.UNANSWERED,
            "pool-timeout": Lookup.UNANSWERED,
            "timeout": Lookup.UNANSWERED,
            "http-error": Lookup.UNANSWERED,
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
    def verdict_for_http(cls, code: int, answers: Mapping[str | int, Verdict] | None = None
                         ) -> Verdict:
        answers = cls.ANSWERS if answers is None else answers
        if code in answers:
            return answers[code]
        if 500 <= code < 600:
            return answers["other-5xx"]
        if 400 <= code < 500:
            return answers["other-4xx"]
        return answers["unexpected-status"]

    def _answer(self, key: str | int, detail: str, **extra) -> ProviderResult:
        return ProviderResult.of(self.ANSWERS[key], self.name, detail, **extra)

    async def send(self, message: SmsMessage) -> ProviderResult:
        try:
            response = await self._client.post("/v1/messages", json=_payload(message))
        except httpx.PoolTimeout:
            return self._answer("pool-timeout", "pool-timeout")  # never left us
        except (httpx.ConnectError, httpx.ConnectTimeout):
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
        answer for the request as a whole (no connection, timeout, reset, 5xx, an unreadable
        body) is every message's answer, classified by BATCH_ANSWERS: any of them may have
        been taken before it came, unless it proves that none was."""
        payload = {"messages": [_payload(m) for m in messages]}
        try:
            response = await self._client.post("/v1/messages/batch", json=payload)
        except httpx.PoolTimeout:
            return self._all(messages, "pool-timeout", "pool-timeout")
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return self._all(messages, "connect-error", "connect-error")
        except httpx.TimeoutException:
            return self._all(messages, "timeout", "timeout")
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return self._all(messages, "connection-lost", "connection-lost")
        except httpx.HTTPError:
            return self._all(messages, "http-error", "http-error")
        code = response.status_code
        if code != 200:
            verdict = (self.verdict_for_http(code, self.BATCH_ANSWERS) if code >= 300
                       else self.BATCH_ANSWERS["bad-response"])
            one = ProviderResult.of(verdict, self.name, f"batch-http-{code}",
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

    async def status(self, provider_reference: str) -> StatusAnswer:
        """Ask the gateway what became of the message it took as `provider_reference`."""
        answers = self.LOOKUP_ANSWERS
        try:
            response = await self._client.get(f"/v1/messages/{quote(provider_reference, safe='')}"
                                              "/status")
        except httpx.PoolTimeout:
            return StatusAnswer(answers["pool-timeout"], "pool-timeout")
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return StatusAnswer(answers["connect-error"], "connect-error")
        except httpx.TimeoutException:
            return StatusAnswer(answers["timeout"], "timeout")
        except httpx.HTTPError:
            return StatusAnswer(answers["http-error"], "http-error")
        code = response.status_code
        lookup = answers.get(code, answers["other-status"])
        if lookup is not Lookup.STATUS:
            return StatusAnswer(lookup, f"http-{code}")
        try:
            data = response.json()
            provider_status = str(data["status"])
            status = self.STATUS_MAP[provider_status]
            reference = data.get("reference")
        except (ValueError, KeyError, TypeError, AttributeError):
            return StatusAnswer(answers["bad-response"], "bad-response")
        return StatusAnswer(Lookup.STATUS, f"http-{code}", status, provider_status,
                            str(reference) if reference is not None else None)

    def _all(self, messages: Sequence[SmsMessage], key: str, detail: str) -> list[ProviderResult]:
        return [ProviderResult.of(self.BATCH_ANSWERS[key], self.name, detail)] * len(messages)

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
    The wait is bounded like httpx's pool timeout and ends the same way (pool-timeout,
    "unsent": the request never left us — no failover mark, no move, retried later).

    A request, once started, is never cancelled by its caller: it runs in a task of its own
    to its answer or to httpx's own timeouts, and a caller cut off (the sender's send
    deadline, a stop) only stops waiting for it. Cancelling httpx mid-request leaks
    connections out of httpcore's pool when it lands at the wrong moment (in the connection
    set-up or hand-over, most often on a busy event loop): each leak leaves a connection
    counted as in use for good, and once all `connections` had leaked every later SMS ended in
    pool-timeout, retried forever — `make chaos` at 20k (session 7): 178 of 2,482 SMS sent
    while email went on (docs/decisions.md). The connection slot (`_gate`) is released when
    the request itself ends, so it counts what is really open."""

    def __init__(self, base_url: str, *, name: str, client: httpx.AsyncClient,
                 connections: int = 20, pool_timeout: float | None = None):
        super().__init__(base_url, name=name, client=client)
        self._owns_client = True
        self._gate = asyncio.Semaphore(max(connections, 1))
        self._pool_timeout = pool_timeout
        self._requests: set[asyncio.Task] = set()  # running to their end, awaited or not

    async def send(self, message: SmsMessage) -> ProviderResult:
        if not await self._enter():
            return self._answer("pool-timeout", "pool-timeout")
        return await self._uncancelled(super().send(message))

    async def send_batch(self, messages: Sequence[SmsMessage]) -> list[ProviderResult]:
        if not await self._enter():  # one connection for the whole batch
            return self._all(messages, "pool-timeout", "pool-timeout")
        return await self._uncancelled(super().send_batch(messages))

    async def status(self, provider_reference: str) -> StatusAnswer:
        # A lookup takes a connection slot as a send does: the pool is shared, and bounded.
        if not await self._enter():
            return StatusAnswer(self.LOOKUP_ANSWERS["pool-timeout"], "pool-timeout")
        return await self._uncancelled(super().status(provider_reference))

    async def _uncancelled(self, request: Coroutine[Any, Any, T]) -> T:
        """Run `request` (holding a slot taken by _enter) in its own task, which releases the
        slot when it ends; a cancellation of the caller does not reach it (asyncio.shield)."""
        task = asyncio.ensure_future(request)
        self._requests.add(task)

        def ended(t: asyncio.Task) -> None:
            self._requests.discard(t)
            self._gate.release()
            if not t.cancelled():
                t.exception()  # retrieved: an orphan's error is not "never retrieved"

        task.add_done_callback(ended)
        return await asyncio.shield(task)

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

    async def close(self) -> None:
        for task in list(self._requests):  # closing: nobody waits for their answers any more
            task.cancel()
        await asyncio.gather(*self._requests, return_exceptions=True)
        await super().close()
