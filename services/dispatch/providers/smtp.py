"""SMTP email provider (aiosmtplib) with TLS options and a small connection pool."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import functools
import hashlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage as MimeMessage
from email.utils import formatdate
from types import MappingProxyType
from typing import Literal

import aiosmtplib
import aiosmtplib.smtp as _aiosmtplib_smtp
from aiosmtplib.protocol import normalize_message_line_endings

# aiosmtplib validates each address with email.utils.parseaddr four times per message (twice
# in sendmail, again when quoting for MAIL and RCPT): ~0.3 ms of CPU per email. The functions
# are pure (str -> str, or ValueError, which lru_cache does not cache), so memoise the ones
# its SMTP class calls. The sender address is always the same; a recipient repeats 3 times.
if not hasattr(_aiosmtplib_smtp.parse_address, "cache_info"):
    _aiosmtplib_smtp.parse_address = functools.lru_cache(maxsize=4096)(
        _aiosmtplib_smtp.parse_address
    )
    _aiosmtplib_smtp.quote_address = functools.lru_cache(maxsize=4096)(
        _aiosmtplib_smtp.quote_address
    )

from services.common.messages import DeliveryStatus
from services.dispatch.providers.base import (
    EmailMessage,
    EmailProvider,
    ProviderResult,
    accepted,
    ambiguous,
    permanent,
    temporary,
)

TlsMode = Literal["none", "starttls", "tls"]  # tls: TLS from the first byte (port 465)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    tls: TlsMode = "starttls"
    tls_context: ssl.SSLContext | None = None
    validate_certs: bool = True
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    pool_size: int = 4
    message_id_domain: str = "panui.invalid"


# Email receipts (bounce/delivery webhooks, as ESPs send them and as the local SMTP gateway
# sends for its simulated bounces) -> ours. A bounce after 250 is the classic late failure.
# "deferred" means the provider still holds the message and keeps retrying: the delivery stays
# 'sent' (see delivery_state.is_deferral) — resending now would deliver it twice.
RECEIPT_STATUS_MAP = MappingProxyType(
    {
        "delivered": DeliveryStatus.DELIVERED,
        "bounced": DeliveryStatus.PERMANENT_FAILURE,
        "failed": DeliveryStatus.PERMANENT_FAILURE,
        "deferred": DeliveryStatus.SENT,
    }
)


def parse_dsn(data: bytes) -> tuple[str | None, DeliveryStatus | None]:
    """Read an RFC 3464 delivery status notification (a bounce arriving in the return-path
    mailbox): our reference (X-Panui-Reference, copied by the bouncing MTA or ours) and the
    outcome. Returns (None, None) for anything that is not a DSN we can attribute."""
    import email
    import email.policy

    msg = email.message_from_bytes(data, policy=email.policy.default)
    if msg.get_content_type() != "multipart/report":
        return None, None
    reference = msg["X-Panui-Reference"]
    action = None
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else [part]
            for block in blocks:
                for key, value in block.items():
                    if key.lower() == "action":
                        action = str(value).strip().lower()
    status = {"failed": DeliveryStatus.PERMANENT_FAILURE,
              "delayed": DeliveryStatus.TEMPORARY_FAILURE,
              "delivered": DeliveryStatus.DELIVERED}.get(action or "")
    return (str(reference) if reference else None), status


def smtp_status_key(code: int) -> str:
    return f"{code // 100}xx"


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client (connect, EHLO, STARTTLS, AUTH, pooled sessions), saying when the
    message starts to go: from then on the relay may take it, so the send deadline must no
    longer cut the exchange (SmtpEmailProvider.send). Where the relay offers PIPELINING
    (RFC 2920) a message is one group — MAIL, RCPT and DATA in one write — then its content
    once DATA is answered 354: two round trips instead of four (send_pipelined)."""

    handing_over: Callable[[], None] | None = None

    async def data(self, message: str | bytes, /, **kwargs) -> aiosmtplib.SMTPResponse:
        if self.handing_over is not None:
            self.handing_over()
        return await super().data(message, **kwargs)

    async def send_message_bytes(self, sender: str, recipient: str, raw: bytes) -> str:
        """One message to one recipient: pipelined where the relay offers it and the message
        is plain ASCII (build_raw's own output), else aiosmtplib's sendmail. Returns the
        relay's final reply text, as sendmail does; raises aiosmtplib's exceptions either
        way."""
        if self.is_ehlo_or_helo_needed:
            await self.ehlo()
        if not (self.supports_extension("pipelining") and raw.isascii()
                and sender.isascii() and recipient.isascii()):
            _, response = await self.sendmail(sender, [recipient], raw)
            return response
        return (await self.send_pipelined(sender, recipient, raw)).message

    async def send_pipelined(self, sender: str, recipient: str,
                             raw: bytes) -> aiosmtplib.SMTPResponse:
        protocol = self.protocol
        if protocol is None or not protocol.is_connected:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        mail_from = _aiosmtplib_smtp.quote_address(sender).encode("ascii")
        rcpt_to = _aiosmtplib_smtp.quote_address(recipient).encode("ascii")
        timeout = self.timeout
        transport = protocol.transport
        # While the group is in flight the replies are read by _Replies: aiosmtplib's protocol
        # parses one reply per read and drops what arrives while no command of its own waits.
        replies = _Replies(protocol)
        transport.set_protocol(replies)
        try:
            transport.write(b"MAIL FROM:" + mail_from + b"\r\nRCPT TO:" + rcpt_to
                            + b"\r\nDATA\r\n")
            mail = await replies.next(timeout)
            rcpt = await replies.next(timeout)
            data = await replies.next(timeout)
            if data.code == 354 and (mail.code != 250 or rcpt.code not in (250, 251)):
                # A relay that opens DATA without a sender or recipient: never send the
                # content; dropping the connection abandons the transaction (RFC 5321 §4.1.1.4).
                self.close()
            if mail.code != 250:
                raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, sender)
            if rcpt.code not in (250, 251):
                refused = aiosmtplib.SMTPRecipientRefused(rcpt.code, rcpt.message, recipient)
                transport.set_protocol(protocol)
                await self._reset_quietly()
                raise aiosmtplib.SMTPRecipientsRefused([refused])
            if data.code != 354:
                raise aiosmtplib.SMTPDataError(data.code, data.message)
            # From here the relay may take the message (at the final dot): never cut.
            if self.handing_over is not None:
                self.handing_over()
            transport.write(_dot_stuffed(raw))
            final = await replies.next(timeout)
            if final.code != 250:
                raise aiosmtplib.SMTPDataError(final.code, final.message)
            return final
        finally:
            if not transport.is_closing():
                transport.set_protocol(protocol)

    async def _reset_quietly(self) -> None:
        """RSET after a refused recipient, so the pooled session starts clean (the relay still
        holds the MAIL); a session that cannot be reset is closed, not reused."""
        try:
            await self.rset()
        except (aiosmtplib.SMTPException, OSError):
            self.close()


class _Replies(asyncio.Protocol):
    """The transport's protocol while a pipelined group is in flight: every SMTP reply parsed
    as it comes, kept in order. Connection loss is passed on to aiosmtplib's protocol, which
    owns the session."""

    MAX_BUFFER = 64 * 1024

    def __init__(self, inner: asyncio.BaseProtocol) -> None:
        self.inner = inner
        self.buffer = bytearray()
        self.replies: collections.deque[aiosmtplib.SMTPResponse] = collections.deque()
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            while (reply := _take_reply(self.buffer)) is not None:
                self.replies.append(reply)
        except aiosmtplib.SMTPResponseException as exc:
            self.error = exc
        if len(self.buffer) > self.MAX_BUFFER:
            self.error = aiosmtplib.SMTPResponseException(-1, "Response too long")
        self._wake()

    def eof_received(self) -> bool:
        self.error = self.error or aiosmtplib.SMTPServerDisconnected("Unexpected EOF received")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = self.error or aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._wake()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self, timeout: float | None) -> aiosmtplib.SMTPResponse:  # noqa: ASYNC109 - the SMTP command timeout
        while not self.replies:
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.waiter, timeout)
            except TimeoutError as exc:
                raise aiosmtplib.SMTPReadTimeoutError(
                    "Timed out waiting for server response") from exc
            finally:
                self.waiter = None
        return self.replies.popleft()


def _take_reply(buffer: bytearray) -> aiosmtplib.SMTPResponse | None:
    """The first complete (possibly multi-line) reply, removed from `buffer`; None if it has
    not all arrived."""
    offset, lines = 0, []
    while (end := buffer.find(b"\n", offset)) != -1:
        line = bytes(buffer[offset:end + 1])
        offset = end + 1
        try:
            code = int(line[:3])
        except ValueError:
            raise aiosmtplib.SMTPResponseException(-1, "Malformed SMTP response") from None
        lines.append(line[4:].strip(b" \t\r\n"))
        if line[3:4] != b"-":
            del buffer[:offset]
            return aiosmtplib.SMTPResponse(code, b"\n".join(lines).decode("utf-8", "replace"))
    return None


def _dot_stuffed(raw: bytes) -> bytes:
    """The DATA content as sent: CRLF line ends, a leading dot doubled (RFC 5321 §4.5.2), the
    final dot. build_raw already writes CRLF only, so this is a few C-level counts and one
    replace, not aiosmtplib's two regexes over the whole message."""
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:  # a lone CR or LF somewhere
        raw = normalize_message_line_endings(raw)
    if raw.startswith(b"."):
        raw = b"." + raw
    raw = raw.replace(b"\r\n.", b"\r\n..")
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw + b".\r\n"


def _lift(deadline: asyncio.Timeout, on_handover: Callable[[], None] | None) -> None:
    if not deadline.expired():  # expired: its cancellation lands before the message is sent
        deadline.reschedule(None)
        if on_handover is not None:
            on_handover()


class SmtpEmailProvider(EmailProvider):
    # A pooled connection idle longer than this is checked with NOOP before reuse; one in
    # constant use is not (a NOOP per message was a fifth of the round trips).
    IDLE_CHECK_AFTER_S = 5.0

    # SMTP reply classes (RFC 5321 §4.2.1) and client-side failures. The relay takes the
    # message when it answers the end of DATA with 2xx; a reply that never came (timeout, the
    # connection dropped) leaves that open. The send deadline never cuts a started DATA.
    ANSWERS = MappingProxyType(
        {
            "2xx": accepted(),  # accepted by the relay, not yet delivered
            "4xx": temporary(DeliveryStatus.TEMPORARY_FAILURE),
            "5xx": permanent(),
            "connect-error": temporary(),
            "deadline": temporary(),  # the send deadline passed before DATA: nothing was sent
            "disconnected": ambiguous(),
            "timeout": ambiguous(),
            "tls-error": temporary(),
            "auth-error": temporary(),
            "sender-refused": temporary(),
            "smtp-error": temporary(),
        }
    )

    def __init__(self, config: SmtpConfig, *, name: str = "smtp") -> None:
        self.config = config
        self.name = name
        self._idle: asyncio.LifoQueue[_Client] = asyncio.LifoQueue()
        self._last_used: dict[int, float] = {}
        self._slots = asyncio.Semaphore(config.pool_size)
        self._closed = False

    # ---- pool: at most pool_size live connections, reused while healthy

    async def _connect(self) -> _Client:
        c = self.config
        client = _Client(
            hostname=c.host,
            port=c.port,
            use_tls=c.tls == "tls",
            start_tls=True if c.tls == "starttls" else False,
            validate_certs=c.validate_certs,
            tls_context=c.tls_context,
            timeout=c.timeout,
            username=c.username,
            password=c.password,
        )
        await client.connect()
        return client

    def _release(self, client: _Client) -> None:
        self._last_used[id(client)] = time.monotonic()
        self._idle.put_nowait(client)

    async def _checkout(self) -> _Client:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                idle_for = time.monotonic() - self._last_used.pop(id(client), 0.0)
                if idle_for < self.IDLE_CHECK_AFTER_S:
                    return client  # busy connection: skip the NOOP round trip
                try:
                    await client.noop()  # the server may have dropped an idle connection
                    return client
                except aiosmtplib.SMTPException:
                    pass
            await _quietly_close(client)
        return await self._connect()

    async def send(self, message: EmailMessage, deadline: float | None = None,
                   on_handover: Callable[[], None] | None = None) -> ProviderResult:
        """Send one message. `deadline` (event-loop time) bounds only what comes before the
        hand-over: the connection slot, connect/EHLO/STARTTLS/AUTH, MAIL and RCPT — cut there,
        the relay certainly has nothing ("deadline", retried). Once DATA has started the
        exchange runs to the relay's answer, bounded by the command timeout alone: the relay
        may already hold the message, and giving up on its answer would not unsend it — it
        would only turn the retry into a second copy (SMTP does not de-duplicate)."""
        if self._closed:
            raise RuntimeError("provider is closed")
        message_id = self.message_id(message.reference)
        raw = self.build_raw(message, message_id)
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            return ProviderResult.of(self.ANSWERS["deadline"], self.name, "deadline")
        try:
            return await self._send_raw(message.from_addr, message.to, raw, message_id, deadline,
                                        on_handover)
        finally:
            self._slots.release()

    async def _send_raw(self, from_addr: str, to: str, raw: bytes, message_id: str,
                        deadline: float | None,
                        on_handover: Callable[[], None] | None = None) -> ProviderResult:
        client: _Client | None = None
        try:
            async with asyncio.timeout_at(deadline) as cut:
                try:
                    client = await self._checkout()
                    client.handing_over = functools.partial(_lift, cut, on_handover)
                    response = await client.send_message_bytes(from_addr, to, raw)
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    code = exc.recipients[0].code if exc.recipients else 550
                    return self._result(smtp_status_key(code), f"smtp-{code}", client, reuse=True)
                except aiosmtplib.SMTPAuthenticationError as exc:
                    # Our credentials, not the recipient's address: never a permanent failure.
                    return self._result("auth-error", f"smtp-{exc.code}", client)
                except aiosmtplib.SMTPSenderRefused as exc:
                    # MAIL FROM refused (e.g. 530 STARTTLS required): our setup, not the recipient.
                    return self._result("sender-refused", f"smtp-{exc.code}", client)
                except aiosmtplib.SMTPConnectTimeoutError:
                    return self._result("connect-error", "connect-timeout", client)
                except aiosmtplib.SMTPResponseException as exc:
                    return self._result(smtp_status_key(exc.code), f"smtp-{exc.code}", client)
                except aiosmtplib.SMTPConnectError:
                    return self._result("connect-error", "connect-error", client)
                except aiosmtplib.SMTPTimeoutError:
                    # Possibly accepted; the deterministic Message-ID lets receivers de-duplicate.
                    return self._result("timeout", "timeout", client)
                except aiosmtplib.SMTPServerDisconnected:
                    return self._result("disconnected", "disconnected", client)
                except ssl.SSLError:
                    return self._result("tls-error", "tls-error", client)
                except OSError:
                    return self._result("connect-error", "connect-error", client)
                except aiosmtplib.SMTPException:
                    return self._result("smtp-error", "smtp-error", client)
                except asyncio.CancelledError:
                    # The deadline (before DATA) or shutdown: the session is mid-command.
                    if client is not None:
                        client.close()
                    raise
                finally:
                    if client is not None:
                        client.handing_over = None
        except TimeoutError:  # the deadline, before DATA: the relay has nothing of it
            return ProviderResult.of(self.ANSWERS["deadline"], self.name, "deadline")
        self._release(client)
        return ProviderResult.of(
            self.ANSWERS["2xx"], self.name,
            f"smtp-{response.split()[0] if response else '250'}", provider_reference=message_id,
        )

    def _result(
        self,
        key: str,
        detail: str,
        client: aiosmtplib.SMTP | None,
        *,
        reuse: bool = False,
    ) -> ProviderResult:
        if client is not None:
            if reuse and client.is_connected:
                self._release(client)  # a refused recipient leaves the session usable
            else:
                asyncio.get_running_loop().create_task(_quietly_close(client))
        return ProviderResult.of(self.ANSWERS[key], self.name, detail)

    def message_id(self, reference: str) -> str:
        # Deterministic per reference: a retry after an ambiguous timeout (or a crash) produces
        # the same Message-ID, which receiving systems may use to drop duplicates.
        return f"<{_ref_token(reference)}@{self.config.message_id_domain}>"

    def build_raw(self, message: EmailMessage, message_id: str | None = None) -> bytes:
        """The message as RFC 5322 bytes, built directly: the stdlib `email` package costs
        ~10 ms of CPU per notice (header parsing, flattening), which caps throughput at a few
        hundred a second. Same structure as build_mime: multipart/alternative (text, html),
        UTF-8, quoted-printable bodies, RFC 2047 encoded subject."""
        if not (_is_ascii(message.to) and _is_ascii(message.from_addr)):
            return bytes(self.build_mime(message))  # internationalised addresses: stdlib path
        for value in (message.to, message.from_addr, message.reply_to or "", message.reference,
                      *message.headers.values()):
            if "\r" in value or "\n" in value:
                raise ValueError("header values must not contain line breaks")
        boundary = f"==panui-{_ref_token(message.reference)}"
        lines = [
            f"From: {message.from_addr}",
            f"To: {message.to}",
            f"Subject: {_encode_header(message.subject)}",
            f"Date: {formatdate(localtime=False)}",
            f"Message-ID: {message_id or self.message_id(message.reference)}",
            f"X-Panui-Reference: {message.reference}",
        ]
        if message.reply_to:
            lines.append(f"Reply-To: {message.reply_to}")
        lines += [f"{k}: {_encode_header(v)}" for k, v in message.headers.items()]
        lines.append("MIME-Version: 1.0")
        parts = [("plain", message.text)] + ([("html", message.html)] if message.html else [])
        if len(parts) == 1:
            lines += _part_headers("plain") + ["", _qp(message.text)]
        else:
            lines += [f'Content-Type: multipart/alternative; boundary="{boundary}"', ""]
            for subtype, body in parts:
                lines += [f"--{boundary}", *_part_headers(subtype), "", _qp(body)]
            lines += [f"--{boundary}--", ""]
        return "\r\n".join(lines).encode("ascii")

    def build_mime(self, message: EmailMessage) -> MimeMessage:
        mime = MimeMessage()
        mime["From"] = message.from_addr
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = formatdate(localtime=False)
        mime["Message-ID"] = self.message_id(message.reference)
        mime["X-Panui-Reference"] = message.reference
        if message.reply_to:
            mime["Reply-To"] = message.reply_to
        for k, v in message.headers.items():
            mime[k] = v
        mime.set_content(message.text)
        if message.html:
            mime.add_alternative(message.html, subtype="html")
        return mime

    async def close(self) -> None:
        self._closed = True
        while not self._idle.empty():
            await _quietly_close(self._idle.get_nowait())


def _is_ascii(value: str) -> bool:
    return value.isascii()


def _encode_header(value: str) -> str:
    """RFC 2047 'B' encoded-words (UTF-8), folded, when the value is not plain ASCII."""
    value = " ".join(value.split())
    if value.isascii() and len(value) < 900:
        return value
    words, chunk = [], ""
    for ch in value:  # <= 45 bytes of UTF-8 per word keeps each encoded-word under 75 chars
        if len((chunk + ch).encode()) > 45:
            words.append(chunk)
            chunk = ""
        chunk += ch
    words.append(chunk)
    return "\r\n ".join(
        f"=?utf-8?b?{base64.b64encode(w.encode()).decode()}?=" for w in words if w
    )


def _part_headers(subtype: str) -> list[str]:
    return [f'Content-Type: text/{subtype}; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable"]


def _qp(text: str) -> str:
    # binascii's C encoder; CRLF line ends as SMTP requires.
    body = text.replace("\r\n", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(body, quotetabs=False, istext=True, header=False).decode("ascii")
    return encoded.replace("\n", "\r\n")


def _ref_token(reference: str) -> str:
    return hashlib.sha256(reference.encode()).hexdigest()[:24]


async def _quietly_close(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
