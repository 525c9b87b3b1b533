"""Local SMS gateway for tests and development (FastAPI).

API (what HttpSmsProvider talks to):
  POST /v1/messages {to, body, reference, callback_url?} -> 202 {id, status}
       idempotent on `reference`: the same reference returns the original message (no resend);
       the same reference with a different to/body -> 409.
  POST /v1/messages/batch {messages: [{to, body, reference, callback_url?}, ...]} (up to 500)
       -> 200 {results: [{reference, code, id?, status?, error?, retry_after?}, ...]}: each
       message answered on its own, in order, with the code a single send would get (202,
       409, 422, 429, the faults below), like a provider's bulk API (one request, per-message
       status). Faults count per message; a reset or a delay applies to the whole answer.
       A 4xx answer to the request as a whole (401 key, 422 envelope) refuses it before any
       message is looked at: none was taken. A 5xx may come after some were (fail_batch_next).
  GET  /v1/messages[?reference=...]        inspect what was "sent"
  GET  /v1/messages/{id}
  GET  /v1/messages/{id}/status -> 200 {id, reference, status, updated_at} (404: no such id):
       the message's status as the carrier last reported it (accepted until then), whether
       or not its receipt callback got through — what dispatch's status lookup asks (same
       API key as sends). No number or text in it.
Delivery receipts are POSTed to callback_url as JSON {id, reference, status, occurred_at} with
header X-Panui-Signature (services/gateways/signing.py), retried with backoff.

With `message_log` (`--message-log FILE`), every message it takes is also appended to a JSON
Lines file ({id, reference, to, created_at}): the gateway's own record of what it sent, which
tests and benchmarks reconcile against.

Faults (tests/dev):
  fail_next N, fail_status     -> the next N sends answer fail_status (default 500) and are NOT
                                  taken (a gateway refusing before it processes)
  fail_after_store_next N, fail_after_store_status
                               -> the next N sends are taken (stored, receipt scheduled), then
                                  answered with that status (default 502: a proxy in front of
                                  the gateway gave up, but the gateway sent it)
  reset_after_store_next N     -> the next N sends are taken, then the connection is reset
                                  before any answer
  fail_batch_next N, fail_batch_after_taking K, fail_batch_status
                               -> the next N batch requests take their first K messages (as
                                  usual, faults counted), then answer the WHOLE request with
                                  that status (default 500): a gateway failing mid-batch
  delay_seconds                -> every answer is slow, AFTER storing (a timeout is ambiguous)
  rate_limit_next N, retry_after -> 429 with Retry-After
  drop_receipts                -> the carrier's outcomes are still recorded (the status above),
                                  but no receipt callback is ever posted: lost receipts
                                  (`--drop-receipts`)
  409 comes by itself when a reference is reused with another to/body.

Control (tests/dev), also available as Python methods on SmsGateway:
  POST /_control/behaviour {fail_next?, fail_status?, fail_after_store_next?,
                            fail_after_store_status?, reset_after_store_next?, delay_seconds?,
                            fail_batch_next?, fail_batch_after_taking?, fail_batch_status?,
                            rate_limit_next?, retry_after?, receipt_delay?, hold_receipts?,
                            drop_receipts?}
  POST /_control/outcomes {to: "+6421...", status: "delivered"|"failed"|"expired"}
  POST /_control/reset      GET /_control/receipts      GET /_control/stats

Over 400 lines: one simulated provider (API, faults, receipts, control) a test reads in one
place; dev/test only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from services.gateways.serving import AsgiServer, run_until_interrupted
from services.gateways.signing import SIGNATURE_HEADER, provider_of, signature_header

E164 = r"^\+[1-9]\d{7,14}$"


class SendRequest(BaseModel):
    to: str = Field(pattern=E164)
    body: str = Field(min_length=1, max_length=1600)
    reference: str = Field(min_length=1, max_length=200)
    callback_url: str | None = None


BATCH_MAX = 500
RECEIPT_CONNECTIONS = 50


class BatchRequest(BaseModel):
    # Each message is validated on its own (one bad number fails only itself).
    messages: list[dict] = Field(min_length=1, max_length=BATCH_MAX)


class BehaviourRequest(BaseModel):
    fail_next: int | None = Field(default=None, ge=0)
    fail_status: int | None = Field(default=None, ge=400, le=599)
    fail_after_store_next: int | None = Field(default=None, ge=0)
    fail_after_store_status: int | None = Field(default=None, ge=400, le=599)
    reset_after_store_next: int | None = Field(default=None, ge=0)
    fail_batch_next: int | None = Field(default=None, ge=0)
    fail_batch_after_taking: int | None = Field(default=None, ge=0)
    fail_batch_status: int | None = Field(default=None, ge=400, le=599)
    delay_seconds: float | None = Field(default=None, ge=0)
    rate_limit_next: int | None = Field(default=None, ge=0)
    retry_after: int | None = Field(default=None, ge=0)
    receipt_delay: float | None = Field(default=None, ge=0)
    hold_receipts: bool | None = None
    drop_receipts: bool | None = None


class OutcomeRequest(BaseModel):
    to: str = Field(pattern=E164)
    status: Literal["delivered", "failed", "expired"]


@dataclass
class Answer:
    """What one message is answered: HTTP-like code and body; `reset`: drop the connection
    instead of answering (the message was taken)."""

    code: int
    body: dict
    retry_after: int | None = None
    reset: bool = False


@dataclass
class StoredSms:
    id: str
    to: str
    body: str
    reference: str
    callback_url: str | None
    status: str
    created_at: str
    status_at: str | None = None  # when the carrier's outcome was recorded


@dataclass
class Behaviour:
    fail_next: int = 0  # answer the next N sends with fail_status (default 500)
    fail_status: int = 500
    fail_after_store_next: int = 0  # take the next N, then answer fail_after_store_status
    fail_after_store_status: int = 502
    reset_after_store_next: int = 0  # take the next N, then reset the connection
    fail_batch_next: int = 0  # the next N batch requests: take the first K, then fail it all
    fail_batch_after_taking: int = 0
    fail_batch_status: int = 500
    delay_seconds: float = 0.0  # answer slowly - AFTER storing, like a provider that accepted
    rate_limit_next: int = 0  # answer the next N sends with 429
    retry_after: int = 1
    receipt_delay: float = 0.0
    # Receipts wait (after receipt_delay) until this is cleared: a test decides when they
    # arrive by a condition, not by racing a delay.
    hold_receipts: bool = False
    # Outcomes are recorded (GET .../status tells them) but no receipt is ever posted: the
    # receipts a provider gave up on, for a test of what dispatch does without them.
    drop_receipts: bool = False


@dataclass
class SmsGateway:
    callback_secret: str = "dev-callback-secret"  # noqa: S105 - local test gateway only
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    receipt_attempts: int = 5
    # How long one receipt try waits for dispatch's answer before giving up on it (and trying
    # again with a fresh signature): 15 s, believed to be Twilio's webhook default (not checked
    # against its docs). It was 5 s, which
    # a loaded dispatch missed for nearly every receipt in the chaos 20k run.
    receipt_timeout_s: float = 15.0
    behaviour: Behaviour = field(default_factory=Behaviour)
    messages: dict[str, StoredSms] = field(default_factory=dict)  # by id
    by_reference: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # to -> receipt status
    # {id, status, http_status} per try; a dropped receipt: one entry, "dropped": True.
    receipts_sent: list[dict] = field(default_factory=list)
    status_lookups: int = 0  # GET /v1/messages/{id}/status answered
    send_attempts: int = 0
    message_log: Path | None = None  # JSON Lines: every message taken
    # False (dry-run sidecars in a real deployment): keep a digest of the number and text, not
    # them — enough to answer a re-send by reference, nothing personal held.
    keep_content: bool = True

    def __post_init__(self) -> None:
        self.app = _ExposeTransport(create_app(self))
        self._server: AsgiServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._http: httpx.AsyncClient | None = None
        # Receipts wait for a connection here, not in httpcore's pool, which re-scans every
        # queued request per connection whenever one starts or ends: a batch's burst of
        # receipts (hundreds at once) made that quadratic and starved the gateway's loop.
        self._receipt_gate = asyncio.Semaphore(RECEIPT_CONNECTIONS)

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> int:
        self._server = AsgiServer(self.app, self.host, self.port)
        self.port = await self._server.start()
        return self.port

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._server:
            await self._server.stop()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self.receipt_timeout_s,
                limits=httpx.Limits(max_connections=RECEIPT_CONNECTIONS,
                                                 max_keepalive_connections=RECEIPT_CONNECTIONS)
            )
        return self._http

    async def __aenter__(self) -> SmsGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---------------------------------------------------------------- control (Python API)
    def fail_next(self, n: int, status: int = 500) -> None:
        self.behaviour.fail_next, self.behaviour.fail_status = n, status

    def rate_limit_next(self, n: int, retry_after: int = 1) -> None:
        self.behaviour.rate_limit_next, self.behaviour.retry_after = n, retry_after

    def slow_down(self, seconds: float) -> None:
        self.behaviour.delay_seconds = seconds

    def fail_after_store_next(self, n: int, status: int = 502) -> None:
        self.behaviour.fail_after_store_next, self.behaviour.fail_after_store_status = n, status

    def reset_after_store_next(self, n: int) -> None:
        self.behaviour.reset_after_store_next = n

    def fail_batch_next(self, n: int, after_taking: int, status: int = 500) -> None:
        b = self.behaviour
        b.fail_batch_next, b.fail_batch_after_taking, b.fail_batch_status = n, after_taking, status

    def _log(self, sms: StoredSms) -> None:
        if self.message_log is not None:
            with self.message_log.open("a") as log:
                log.write(json.dumps({"id": sms.id, "reference": sms.reference, "to": sms.to,
                                      "created_at": sms.created_at}) + "\n")

    def kept(self, text: str) -> str:
        """What is stored of a number or a text: itself, or only its digest."""
        return text if self.keep_content else "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def set_outcome(self, to: str, status: str) -> None:
        self.outcomes[to] = status

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.messages.clear()
        self.by_reference.clear()
        self.outcomes.clear()
        self.receipts_sent.clear()
        self.send_attempts = 0
        self.status_lookups = 0

    async def wait_for_receipts(
        self, n: int, timeout: float = 5.0  # noqa: ASYNC109 - test convenience
    ) -> list[dict]:
        async with asyncio.timeout(timeout):
            while len(self.receipts_sent) < n:  # noqa: ASYNC110 - test helper polling a list
                await asyncio.sleep(0.01)
        return self.receipts_sent

    # ---------------------------------------------------------------- taking a message
    def take(self, req: SendRequest) -> Answer:
        """One message: what a single send (and each message of a batch) is answered."""
        self.send_attempts += 1
        b = self.behaviour
        if b.rate_limit_next > 0:
            b.rate_limit_next -= 1
            return Answer(429, {"error": "rate limited"}, retry_after=b.retry_after)
        if b.fail_next > 0:
            b.fail_next -= 1
            return Answer(b.fail_status, {"error": "simulated failure"})
        to, body = self.kept(req.to), self.kept(req.body)
        existing_id = self.by_reference.get(req.reference)
        if existing_id:
            existing = self.messages[existing_id]
            if (existing.to, existing.body) != (to, body):
                return Answer(409, {"detail": "reference reused with different message"})
            sms = existing
        else:
            sms = StoredSms(
                id=str(uuid.uuid4()), to=to, body=body, reference=req.reference,
                callback_url=req.callback_url, status="accepted",
                created_at=datetime.now(UTC).isoformat(),
            )
            self.messages[sms.id] = sms
            self.by_reference[sms.reference] = sms.id
            self._log(sms)
            self._schedule_outcome(sms)
        if b.fail_after_store_next > 0:
            b.fail_after_store_next -= 1
            return Answer(b.fail_after_store_status, {"error": "upstream failure (simulated)"})
        if b.reset_after_store_next > 0:
            b.reset_after_store_next -= 1
            return Answer(202, {"id": sms.id, "status": "accepted"}, reset=True)
        return Answer(202, {"id": sms.id, "status": "accepted"})

    # ---------------------------------------------------------------- receipts
    def _schedule_outcome(self, sms: StoredSms) -> None:
        # Every message gets its carrier outcome (the status lookup reads it), with or
        # without a callback to report it to.
        task = asyncio.get_running_loop().create_task(self._outcome(sms))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _outcome(self, sms: StoredSms) -> None:
        await asyncio.sleep(self.behaviour.receipt_delay)
        while self.behaviour.hold_receipts:  # noqa: ASYNC110 - a test gateway's gate
            await asyncio.sleep(0.05)
        status = self.outcomes.get(sms.to, "delivered")
        sms.status, sms.status_at = status, datetime.now(UTC).isoformat()
        if not sms.callback_url:
            return
        if self.behaviour.drop_receipts:
            self.receipts_sent.append({"id": sms.id, "status": status, "http_status": None,
                                       "dropped": True})
            return
        await self._deliver_receipt(sms, status)

    async def _deliver_receipt(self, sms: StoredSms, status: str) -> None:
        body = json.dumps(
            {
                "id": sms.id,
                "reference": sms.reference,
                "status": status,
                "occurred_at": datetime.now(UTC).isoformat(),
            }
        ).encode()
        delay = 0.1
        # One pooled client for all receipts (a client per receipt is slow at scale).
        client = self._client()
        for _ in range(self.receipt_attempts):
            code: int | None = None
            try:
                async with self._receipt_gate:
                    # Signed as each try goes out, once it has a connection (as a provider
                    # signs its webhook when it sends it): a receipt that waited here for a
                    # connection is not stale before it is sent.
                    headers = {
                        "Content-Type": "application/json",
                        SIGNATURE_HEADER: signature_header(body, self.callback_secret,
                                                           provider_of(sms.callback_url)),
                    }
                    code = (
                        await client.post(sms.callback_url, content=body, headers=headers)
                    ).status_code
            except httpx.HTTPError:
                pass
            self.receipts_sent.append({"id": sms.id, "status": status, "http_status": code})
            if code is not None and code < 300:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


_transport: contextvars.ContextVar = contextvars.ContextVar("transport", default=None)


def _reset_connection() -> None:
    transport = _transport.get()
    if transport is not None:
        transport.abort()  # RST: the client gets no answer at all


class _ExposeTransport:
    """ASGI wrapper giving the request's connection to the endpoint (for reset_after_store).
    uvicorn's `send` is a method of its request cycle, which holds the transport; test gateway
    only."""

    def __init__(self, app: FastAPI):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        token = _transport.set(getattr(getattr(send, "__self__", None), "transport", None))
        try:
            await self.app(scope, receive, send)
        finally:
            _transport.reset(token)


def create_app(gw: SmsGateway) -> FastAPI:
    app = FastAPI(title="Pānui local SMS gateway", docs_url=None, redoc_url=None)

    def check_auth(authorization: str | None) -> None:
        if gw.api_key and authorization != f"Bearer {gw.api_key}":
            raise HTTPException(status_code=401, detail="bad api key")

    @app.post("/v1/messages", status_code=202)
    async def send(req: SendRequest, authorization: str | None = Header(default=None)):
        check_auth(authorization)
        answer = gw.take(req)
        if answer.reset:
            _reset_connection()
            await asyncio.sleep(0)
        if gw.behaviour.delay_seconds:
            await asyncio.sleep(gw.behaviour.delay_seconds)
        headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after is not None else None
        return JSONResponse(answer.body, status_code=answer.code, headers=headers)

    @app.post("/v1/messages/batch", status_code=200)
    async def send_batch(req: BatchRequest, authorization: str | None = Header(default=None)):
        """Up to BATCH_MAX messages in one request, each answered on its own in the order
        sent ({reference, code, ...} with the code and body a single send would get): one bad
        message fails only itself. Faults count per message, as for single sends; a reset
        (reset_after_store) drops the whole answer, a delay delays it, and fail_batch_next
        fails the whole request after taking its first messages."""
        check_auth(authorization)
        results, reset = [], False
        b = gw.behaviour
        fail_midway = b.fail_batch_next > 0
        if fail_midway:
            b.fail_batch_next -= 1
        for n, raw in enumerate(req.messages):
            if fail_midway and n >= b.fail_batch_after_taking:
                break
            try:
                one = SendRequest.model_validate(raw)
            except ValidationError:
                results.append({"reference": str(raw.get("reference", ""))[:200], "code": 422,
                                "error": "invalid message"})
                continue
            answer = gw.take(one)
            reset = reset or answer.reset
            item = {"reference": one.reference, "code": answer.code, **answer.body}
            if answer.retry_after is not None:
                item["retry_after"] = answer.retry_after
            results.append(item)
        if fail_midway:  # the ones taken above stay taken (receipts and all)
            return JSONResponse({"error": "simulated failure mid-batch"},
                                status_code=b.fail_batch_status)
        if reset:
            _reset_connection()
            await asyncio.sleep(0)
        if gw.behaviour.delay_seconds:
            await asyncio.sleep(gw.behaviour.delay_seconds)
        return {"results": results}

    @app.get("/v1/messages")
    async def list_messages(
        reference: str | None = None, authorization: str | None = Header(default=None)
    ):
        check_auth(authorization)
        items = [asdict(m) for m in gw.messages.values() if reference in (None, m.reference)]
        return {"messages": items}

    @app.get("/v1/messages/{message_id}")
    async def get_message(message_id: str, authorization: str | None = Header(default=None)):
        check_auth(authorization)
        if message_id not in gw.messages:
            raise HTTPException(status_code=404, detail="no such message")
        return asdict(gw.messages[message_id])

    @app.get("/v1/messages/{message_id}/status")
    async def message_status(message_id: str, authorization: str | None = Header(default=None)):
        check_auth(authorization)
        sms = gw.messages.get(message_id)
        if sms is None:
            raise HTTPException(status_code=404, detail="no such message")
        gw.status_lookups += 1
        return {"id": sms.id, "reference": sms.reference, "status": sms.status,
                "updated_at": sms.status_at or sms.created_at}

    @app.post("/_control/behaviour")
    async def set_behaviour(req: BehaviourRequest):
        for k, v in req.model_dump(exclude_none=True).items():
            setattr(gw.behaviour, k, v)
        return asdict(gw.behaviour)

    @app.post("/_control/outcomes")
    async def set_outcome(req: OutcomeRequest):
        gw.set_outcome(req.to, req.status)
        return {"ok": True}

    @app.post("/_control/reset")
    async def reset():
        gw.reset()
        return {"ok": True}

    @app.get("/_control/stats")
    async def stats():
        return {"messages": len(gw.messages), "send_attempts": gw.send_attempts,
                "receipts_sent": len(gw.receipts_sent), "status_lookups": gw.status_lookups}

    @app.get("/_control/receipts")
    async def receipts():
        return {"receipts": gw.receipts_sent, "send_attempts": gw.send_attempts}

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # pragma: no cover
        return JSONResponse({"error": "internal"}, status_code=500)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pānui local SMS gateway (dev/test only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument(
        "--callback-secret",
        default=os.environ.get("PANUI_SMS_CALLBACK_SECRET", "dev-callback-secret"),
    )
    parser.add_argument("--api-key", default=os.environ.get("PANUI_SMS_API_KEY"))
    parser.add_argument("--message-log", type=Path, default=None,
                        help="append every message taken to this JSON Lines file")
    parser.add_argument("--receipt-timeout", type=float, default=15.0,
                        help="seconds one receipt try waits for an answer")
    parser.add_argument("--drop-receipts", action="store_true",
                        help="record outcomes but never post a receipt callback")
    parser.add_argument("--digests-only", action="store_true",
                        help="keep a digest of each number and text, not them")
    args = parser.parse_args(argv)
    gw = SmsGateway(
        callback_secret=args.callback_secret, api_key=args.api_key, host=args.host, port=args.port,
        message_log=args.message_log, keep_content=not args.digests_only,
        receipt_timeout_s=args.receipt_timeout,
    )
    gw.behaviour.drop_receipts = args.drop_receipts
    run_until_interrupted(gw, lambda g: f"SMS gateway listening on {g.url}")


if __name__ == "__main__":
    main()
