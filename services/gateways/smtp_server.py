"""Local SMTP server for tests and development (aiosmtpd).

Stores every accepted message in memory (and optionally in a maildir folder: the gateway's own
log of what it accepted, which tests reconcile against) and can be told to misbehave, per
recipient or for the next N messages:
  reject    -> 550 at RCPT (permanent)
  tempfail  -> 451 at RCPT (temporary)
  bounce    -> 250 now, then a DSN (multipart/report) to the envelope sender
  defer     -> 250 now, then a "deferred" receipt (the relay keeps retrying, says no more);
  defer-then-bounce / defer-then-deliver -> ... and after `defer_seconds` a bounce (DSN and
               "bounced" receipt) or a "delivered" receipt
  slow_down -> every DATA answer is delayed (before the message is taken)
  hold      -> {"MAIL"|"RCPT"|"DATA": seconds}: that command's answer is held that long (a
               slow relay; for DATA before the message is taken: a client that gives up while
               held leaves nothing behind)
  answer_after_taking -> every message is taken (stored) at the final dot, and its 250 is
               held this many seconds: a client that gives up meanwhile has still sent it
  drop_after_accept_next -> the next N messages are taken (stored), then the connection is
               dropped before the 250 is sent: the client cannot know it got through
  fail_next -> the next N messages get `fail_code` at DATA (e.g. 421, 554)

Receipts (bounced, deferred, delivered) are POSTed, signed, to `bounce_webhook_url` as an ESP's
webhook would: {id: Message-ID, reference, status, occurred_at}.

Control: Python methods on SmtpGateway, or the HTTP control API (FastAPI) when started with a
control port:
  GET  /_control/messages     POST /_control/recipients {address, action}
  POST /_control/behaviour {delay_seconds?, fail_next?, fail_code?, hold?,
                            drop_after_accept_next?, defer_seconds?, answer_after_taking_s?}
  POST /_control/reset        GET /_control/bounces        GET /_control/stats

Over 400 lines on purpose: every fault mode the fault suite needs lives beside the
protocol handler it bends (a dev/test server, not production code).
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import mailbox
import os
import ssl
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI
from pydantic import BaseModel

from services.gateways.serving import AsgiServer, run_until_interrupted
from services.gateways.signing import SIGNATURE_HEADER, provider_of, signature_header

Action = Literal["accept", "reject", "tempfail", "bounce", "defer", "defer-then-bounce",
                 "defer-then-deliver"]
RCPT_REPLIES = {
    "reject": "550 5.1.1 Mailbox unavailable",
    "tempfail": "451 4.2.0 Mailbox temporarily unavailable, try again later",
}


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    received_at: datetime

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class SmtpBehaviour:
    delay_seconds: float = 0.0
    fail_next: int = 0
    fail_code: int = 421
    hold: dict[str, float] = field(default_factory=dict)  # command -> seconds before answering
    drop_after_accept_next: int = 0
    defer_seconds: float = 1.0  # defer-then-*: how long the relay keeps trying
    answer_after_taking_s: float = 0.0  # the 250 for a message already stored comes this late


class _Handler:
    def __init__(self, gw: SmtpGateway) -> None:
        self.gw = gw

    async def handle_EHLO(self, server, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        # aiosmtpd reads one command line at a time, so pipelined groups (RFC 2920) are
        # answered in order; it just does not say so.
        session.host_name = hostname
        if self.gw.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server, session: Session, envelope: Envelope, address: str, mail_options
    ):
        await self._hold("MAIL")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def _hold(self, command: str) -> None:
        seconds = self.gw.behaviour.hold.get(command, 0.0)
        if seconds:
            await asyncio.sleep(seconds)

    async def handle_RCPT(
        self, server, session: Session, envelope: Envelope, address: str, rcpt_options
    ):
        await self._hold("RCPT")
        action = self.gw.recipient_actions.get(address.lower(), "accept")
        if action in RCPT_REPLIES:
            return RCPT_REPLIES[action]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session: Session, envelope: Envelope):
        gw = self.gw
        gw.data_received += 1
        if gw.behaviour.delay_seconds:
            await asyncio.sleep(gw.behaviour.delay_seconds)
        await self._hold("DATA")
        if gw.behaviour.fail_next > 0:
            gw.behaviour.fail_next -= 1
            code = gw.behaviour.fail_code
            return f"{code} {'4.3.0 Temporary' if code < 500 else '5.3.0 Permanent'} failure (simulated)"
        data = envelope.original_content or envelope.content
        msg = ReceivedMessage(
            envelope.mail_from, tuple(envelope.rcpt_tos), bytes(data), datetime.now(UTC)
        )
        gw._store(msg)
        for rcpt in msg.rcpt_tos:
            action = gw.recipient_actions.get(rcpt.lower())
            if action == "bounce":
                gw._bounce(msg, rcpt)
            elif action and action.startswith("defer"):
                gw._defer(msg, rcpt, action)
        if gw.behaviour.drop_after_accept_next > 0:
            gw.behaviour.drop_after_accept_next -= 1
            gw.dropped_after_accept += 1
            server.transport.abort()  # taken, and the client never hears it
            await asyncio.sleep(0)
        if gw.behaviour.answer_after_taking_s:
            await asyncio.sleep(gw.behaviour.answer_after_taking_s)  # taken; the answer is late
        return "250 2.0.0 OK: queued"


@dataclass
class SmtpGateway:
    host: str = "127.0.0.1"
    port: int = 0
    maildir: Path | None = None
    tls_context: ssl.SSLContext | None = None  # enables STARTTLS
    require_starttls: bool = False
    pipelining: bool = True  # advertise PIPELINING (RFC 2920) in the EHLO reply
    control_port: int | None = None  # None: no HTTP control API; 0: any free port
    # Like an ESP's bounce webhook: POST a signed JSON receipt {id, reference, status:"bounced"}
    # here for every bounce (e.g. http://127.0.0.1:8003/v1/receipts/smtp). None: DSN only.
    bounce_webhook_url: str | None = None
    webhook_secret: str = "dev-callback-secret"  # noqa: S105 - local test gateway only
    webhooks_sent: list[dict] = field(default_factory=list)
    # Benchmarks: count accepted messages without keeping their bodies (memory stays flat).
    count_only: bool = False
    accepted: int = 0
    data_received: int = 0  # message bodies in (answered or not): what a fault test waits for
    dropped_after_accept: int = 0
    messages: list[ReceivedMessage] = field(default_factory=list)
    bounces: list[ReceivedMessage] = field(default_factory=list)
    recipient_actions: dict[str, Action] = field(default_factory=dict)
    behaviour: SmtpBehaviour = field(default_factory=SmtpBehaviour)

    def __post_init__(self) -> None:
        self._server: asyncio.AbstractServer | None = None
        self._control: AsgiServer | None = None
        self._maildir = mailbox.Maildir(self.maildir, create=True) if self.maildir else None
        self._arrived = asyncio.Condition()
        self._tasks: set[asyncio.Task] = set()

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> int:
        handler = _Handler(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(
                handler,
                hostname="panui-test-smtp",
                tls_context=self.tls_context,
                require_starttls=self.require_starttls,
                auth_require_tls=False,
            ),
            self.host,
            self.port,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.control_port is not None:
            self._control = AsgiServer(create_control_app(self), self.host, self.control_port)
            self.control_port = await self._control.start()
        return self.port

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._control:
            await self._control.stop()
        if self._server:
            self._server.close()
            # Don't wait on idle client connections (a pooled client may still be connected).
            self._server = None

    async def __aenter__(self) -> SmtpGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ---------------------------------------------------------------- control (Python API)
    def set_recipient(self, address: str, action: Action) -> None:
        self.recipient_actions[address.lower()] = action

    def slow_down(self, seconds: float) -> None:
        self.behaviour.delay_seconds = seconds

    def fail_next(self, n: int, code: int = 421) -> None:
        self.behaviour.fail_next, self.behaviour.fail_code = n, code

    def hold(self, command: str, seconds: float) -> None:
        """Hold the answer to MAIL, RCPT or DATA for `seconds` (0: answer at once)."""
        self.behaviour.hold[command.upper()] = seconds

    def answer_after_taking(self, seconds: float) -> None:
        """Store each message at its final dot, then hold the 250 for `seconds` (0: at once)."""
        self.behaviour.answer_after_taking_s = seconds

    def drop_after_accept_next(self, n: int) -> None:
        self.behaviour.drop_after_accept_next = n

    def reset(self) -> None:
        self.messages.clear()
        self.bounces.clear()
        self.recipient_actions.clear()
        self.behaviour = SmtpBehaviour()

    def messages_to(self, address: str) -> list[ReceivedMessage]:
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]

    async def wait_for(
        self, n: int, timeout: float = 5.0  # noqa: ASYNC109 - test convenience
    ) -> list[ReceivedMessage]:
        async with asyncio.timeout(timeout):
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.messages) >= n)
        return self.messages

    # ---------------------------------------------------------------- storage
    def _store(self, msg: ReceivedMessage) -> None:
        self.accepted += 1
        if self.count_only:
            return
        self.messages.append(msg)
        if self._maildir is not None:
            self._maildir.add(msg.data)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._arrived:
            self._arrived.notify_all()

    def _bounce(self, original: ReceivedMessage, rcpt: str) -> None:
        """Build an RFC 3464 delivery status notification back to the envelope sender."""
        orig = original.message
        boundary = f"dsn-{uuid.uuid4().hex}"
        reference = orig["X-Panui-Reference"]
        lines = [
            "From: MAILER-DAEMON@panui-test-smtp",
            f"To: {original.mail_from}",
            "Subject: Undelivered Mail Returned to Sender",
            "Auto-Submitted: auto-replied",
            *([f"X-Panui-Reference: {reference}"] if reference else []),
            "MIME-Version: 1.0",
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
            "",
            f"--{boundary}",
            "Content-Type: text/plain; charset=us-ascii",
            "",
            "This message could not be delivered to one or more recipients.",
            f"--{boundary}",
            "Content-Type: message/delivery-status",
            "",
            "Reporting-MTA: dns; panui-test-smtp",
            "",
            f"Final-Recipient: rfc822; {rcpt}",
            "Action: failed",
            "Status: 5.1.1",
            "Diagnostic-Code: smtp; 550 5.1.1 Mailbox unavailable (simulated bounce)",
            f"Original-Message-ID: {orig['Message-ID'] or ''}",
            "",
            f"--{boundary}--",
            "",
        ]
        data = "\r\n".join(lines).encode()
        bounce = ReceivedMessage("", (original.mail_from,), data, datetime.now(UTC))
        self.bounces.append(bounce)
        if self._maildir is not None:
            self._maildir.add(bounce.data)
        if reference:
            self._receipt(orig["Message-ID"] or "", reference, "bounced")

    def _defer(self, original: ReceivedMessage, rcpt: str, action: str) -> None:
        """The relay could not deliver yet: a "deferred" receipt now; for defer-then-*, the
        outcome after `defer_seconds`."""
        orig = original.message
        reference, message_id = orig["X-Panui-Reference"], orig["Message-ID"] or ""
        if not reference:
            return
        self._receipt(message_id, reference, "deferred")
        if action == "defer":
            return

        async def later() -> None:
            await asyncio.sleep(self.behaviour.defer_seconds)
            if action == "defer-then-bounce":
                self._bounce(original, rcpt)
            else:
                self._receipt(message_id, reference, "delivered")

        self._spawn(later())

    def _receipt(self, message_id: str, reference: str, status: str) -> None:
        if self.bounce_webhook_url:
            self._spawn(self._post_webhook(message_id, reference, status))

    def _spawn(self, coro) -> None:  # noqa: ANN001
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_webhook(self, message_id: str, reference: str, status: str) -> None:
        import httpx

        body = json.dumps(
            {"id": message_id, "reference": reference, "status": status,
             "occurred_at": datetime.now(UTC).isoformat()}
        ).encode()
        delay = 0.1
        async with httpx.AsyncClient(timeout=5.0) as client:
            for _ in range(5):
                headers = {"Content-Type": "application/json",
                           SIGNATURE_HEADER: signature_header(
                               body, self.webhook_secret, provider_of(self.bounce_webhook_url))}
                code = None
                try:
                    code = (await client.post(self.bounce_webhook_url, content=body,
                                              headers=headers)).status_code
                except httpx.HTTPError:
                    pass
                self.webhooks_sent.append({"reference": reference, "status": status,
                                           "http_status": code})
                if code is not None and code < 300:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


class RecipientRule(BaseModel):
    address: str
    action: Action


class BehaviourUpdate(BaseModel):
    delay_seconds: float | None = None
    fail_next: int | None = None
    fail_code: int | None = None
    hold: dict[Literal["MAIL", "RCPT", "DATA"], float] | None = None
    drop_after_accept_next: int | None = None
    defer_seconds: float | None = None
    answer_after_taking_s: float | None = None


def _summary(m: ReceivedMessage) -> dict:
    msg = m.message
    return {
        "mail_from": m.mail_from,
        "rcpt_tos": list(m.rcpt_tos),
        "subject": msg["Subject"],
        "message_id": msg["Message-ID"],
        "reference": msg["X-Panui-Reference"],
        "received_at": m.received_at.isoformat(),
    }


def create_control_app(gw: SmtpGateway) -> FastAPI:
    app = FastAPI(title="Pānui local SMTP gateway control", docs_url=None, redoc_url=None)

    @app.get("/_control/stats")
    async def stats():
        return {"accepted": gw.accepted, "bounces": len(gw.bounces),
                "dropped_after_accept": gw.dropped_after_accept}

    @app.get("/_control/messages")
    async def messages():
        return {"messages": [_summary(m) for m in gw.messages]}

    @app.get("/_control/bounces")
    async def bounces():
        return {"bounces": [_summary(m) for m in gw.bounces]}

    @app.post("/_control/recipients")
    async def recipient(rule: RecipientRule):
        gw.set_recipient(rule.address, rule.action)
        return {"ok": True}

    @app.post("/_control/behaviour")
    async def behaviour(update: BehaviourUpdate):
        for k, v in update.model_dump(exclude_none=True).items():
            setattr(gw.behaviour, k, v)
        return asdict(gw.behaviour)

    @app.post("/_control/reset")
    async def reset():
        gw.reset()
        return {"ok": True}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pānui local SMTP server (dev/test only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--control-port", type=int, default=None, help="HTTP control API port")
    parser.add_argument("--maildir", type=Path, default=None)
    parser.add_argument(
        "--bounce-webhook-url",
        default=os.environ.get("PANUI_SMTP_BOUNCE_WEBHOOK_URL", "http://127.0.0.1:8003/v1/receipts/smtp"),
        help="where to POST signed bounce receipts ('' to disable)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("PANUI_RECEIPT_SECRET", "dev-callback-secret"),
    )
    parser.add_argument("--count-only", action="store_true", help="count, don't keep messages")
    parser.add_argument("--no-pipelining", action="store_true",
                        help="do not advertise PIPELINING (clients send one command at a time)")
    args = parser.parse_args(argv)
    gw = SmtpGateway(
        host=args.host, port=args.port, maildir=args.maildir, control_port=args.control_port,
        count_only=args.count_only, pipelining=not args.no_pipelining,
        bounce_webhook_url=args.bounce_webhook_url or None, webhook_secret=args.webhook_secret,
    )

    def describe(g: SmtpGateway) -> str:
        ctl = f", control on http://{g.host}:{g.control_port}" if g.control_port else ""
        return f"SMTP gateway listening on {g.host}:{g.port}{ctl}"

    run_until_interrupted(gw, describe)


if __name__ == "__main__":
    main()
