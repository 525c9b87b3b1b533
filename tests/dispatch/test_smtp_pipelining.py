"""SMTP PIPELINING (RFC 2920) in the email provider: MAIL, RCPT and DATA go as one group, the
content only after DATA is answered 354, and every refusal inside a group is read in order.

The relay here is scripted: it answers nothing of a group until the whole group (through
DATA) has arrived, so a client sending one command per round trip would wait for ever — these
tests fail (time out) without pipelining. The local gateway (aiosmtpd) is covered by
test_providers_smtp.py, which now runs over the pipelined path."""

from __future__ import annotations

import asyncio

import pytest

from services.dispatch.delivery_state import DeliveryStatus as S
from services.dispatch.providers.base import EmailMessage
from services.dispatch.providers.smtp import SmtpConfig, SmtpEmailProvider
from services.gateways.smtp_server import SmtpGateway


def _msg(to: str, ref: str) -> EmailMessage:
    return EmailMessage(reference=ref, to=to, from_addr="notices@example.nz", subject="Test",
                        text=".a line starting with a dot\nBody PAN-TEST", html="<p>Body</p>")


class ScriptedRelay:
    """An SMTP relay offering PIPELINING that answers a transaction only once MAIL, RCPT and
    DATA have all arrived. `rcpt` maps a recipient to its RCPT reply; `data_reply` is the
    reply to DATA when a recipient was accepted; `open_data_anyway` makes it (wrongly) answer
    354 even when no recipient was. Records each transaction's content and every command."""

    def __init__(self, rcpt: dict[str, str] | None = None, data_reply: str = "354 go ahead",
                 open_data_anyway: bool = False) -> None:
        self.rcpt = rcpt or {}
        self.data_reply = data_reply
        self.open_data_anyway = open_data_anyway
        self.commands: list[str] = []
        self.messages: list[bytes] = []
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> ScriptedRelay:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 scripted ESMTP\r\n")
        try:
            while line := await reader.readline():
                command = line.decode().strip()
                self.commands.append(command.split(":")[0].split(" ")[0].upper())
                verb = self.commands[-1]
                if verb == "EHLO":
                    writer.write(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb in ("RSET", "NOOP"):
                    writer.write(b"250 OK\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                elif verb == "MAIL":
                    await self._transaction(command, reader, writer)
                else:
                    writer.write(b"500 unexpected\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _transaction(self, mail: str, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        # Nothing is answered before the whole group is in: MAIL, RCPT, DATA.
        rcpt = (await reader.readline()).decode().strip()
        data = (await reader.readline()).decode().strip()
        self.commands += [rcpt.split(":")[0].upper(), data.upper()]
        assert self.commands[-2:] == ["RCPT TO", "DATA"], self.commands
        address = rcpt.split("<", 1)[1].rstrip(">")
        rcpt_reply = self.rcpt.get(address, "250 OK")
        accepted = rcpt_reply.startswith("2")
        writer.write(b"250 OK\r\n" + rcpt_reply.encode() + b"\r\n")
        if not accepted and not self.open_data_anyway:
            writer.write(b"554 no valid recipients\r\n")
            return
        writer.write(self.data_reply.encode() + b"\r\n")
        if not self.data_reply.startswith("354"):
            return
        await writer.drain()
        content = bytearray()
        while (line := await reader.readline()) != b".\r\n":
            if not line:
                return  # dropped before the final dot: no message
            content += line
        self.messages.append(bytes(content))
        writer.write(b"250 2.0.0 queued\r\n")


def _provider(port: int, **kw) -> SmtpEmailProvider:
    return SmtpEmailProvider(SmtpConfig(host="127.0.0.1", port=port, tls="none",
                                        timeout=5.0, **kw))


async def test_a_message_is_one_pipelined_group_then_its_content():
    async with ScriptedRelay() as relay:
        provider = _provider(relay.port)
        handed: list[str] = []
        first = await provider.send(_msg("a@example.nz", "N-1:email"),
                                    on_handover=lambda: handed.append("1"))
        second = await provider.send(_msg("b@example.nz", "N-2:email"))
        await provider.close()
    assert (first.status, second.status) == (S.SENT, S.SENT)
    assert first.detail == "smtp-2.0.0" and first.provider_reference.startswith("<")
    assert handed == ["1"]
    assert relay.connections == 1  # several messages per connection
    assert len(relay.messages) == 2
    body = relay.messages[0]
    assert b"\r\n..a line starting with a dot" in body  # dot-stuffed on the wire
    assert b"X-Panui-Reference: N-1:email\r\n" in body


async def test_a_recipient_refused_inside_a_pipeline_is_permanent_and_the_session_reset():
    """550 at RCPT, then the relay's 554 to DATA (no valid recipients): the refusal is read in
    order, nothing of the content is sent, no hand-over, and the pooled session is RSET and
    reused for the next message."""
    async with ScriptedRelay(rcpt={"gone@example.nz": "550 5.1.1 no such mailbox"}) as relay:
        provider = _provider(relay.port)
        handed: list[str] = []
        refused = await provider.send(_msg("gone@example.nz", "N-1:email"),
                                      on_handover=lambda: handed.append("refused"))
        relay.rcpt["busy@example.nz"] = "451 4.2.0 try later"
        later = await provider.send(_msg("busy@example.nz", "N-2:email"))
        ok = await provider.send(_msg("a@example.nz", "N-3:email"))
        await provider.close()
    assert (refused.status, refused.detail) == (S.PERMANENT_FAILURE, "smtp-550")
    assert (later.status, later.detail) == (S.TEMPORARY_FAILURE, "smtp-451")
    assert ok.status is S.SENT and not handed
    assert len(relay.messages) == 1 and relay.connections == 1
    assert relay.commands.count("RSET") == 2


async def test_data_refused_inside_a_pipeline_sends_no_content():
    async with ScriptedRelay(data_reply="554 5.3.0 not now, not ever") as relay:
        provider = _provider(relay.port)
        handed: list[str] = []
        result = await provider.send(_msg("a@example.nz", "N-1:email"),
                                     on_handover=lambda: handed.append("x"))
        await provider.close()
    assert (result.status, result.detail, result.ambiguous) == (
        S.PERMANENT_FAILURE, "smtp-554", False)
    assert relay.messages == [] and not handed


async def test_a_relay_opening_data_after_refusing_the_recipient_gets_no_content():
    """A non-conforming relay answers 354 although RCPT was refused: the content is never
    sent (it would go nowhere, or somewhere unintended); the connection is dropped, which
    abandons the transaction, and the next message gets a fresh one."""
    async with ScriptedRelay(rcpt={"gone@example.nz": "550 no"}, open_data_anyway=True) as relay:
        provider = _provider(relay.port)
        refused = await provider.send(_msg("gone@example.nz", "N-1:email"))
        ok = await provider.send(_msg("a@example.nz", "N-2:email"))
        await provider.close()
    assert refused.status is S.PERMANENT_FAILURE
    assert ok.status is S.SENT
    assert len(relay.messages) == 1 and relay.connections == 2


@pytest.mark.parametrize("command", ["MAIL", "RCPT"])
async def test_a_deadline_inside_a_pipeline_before_354_is_certainly_not_sent(command):
    """The local gateway offers PIPELINING and holds one answer of the group past the send
    deadline: cut there, the relay has no content ("deadline", not ambiguous); the retry on a
    fresh connection is the only copy."""
    async with SmtpGateway() as gw:
        gw.hold(command, 2.0)
        provider = _provider(gw.port)
        handed: list[str] = []
        cut = await provider.send(_msg("a@example.nz", "N-1:email"),
                                  deadline=asyncio.get_running_loop().time() + 0.3,
                                  on_handover=lambda: handed.append("cut"))
        gw.hold(command, 0.0)
        again = await provider.send(_msg("a@example.nz", "N-1:email"))
        await provider.close()
        assert (cut.status, cut.detail, cut.ambiguous) == (S.TECHNICAL_FAILURE, "deadline", False)
        assert again.status is S.SENT and not handed
        assert gw.data_received == 1 and len(gw.messages) == 1


async def test_a_connection_dropped_after_the_final_dot_of_a_pipelined_message_is_ambiguous():
    """The relay stores the message and drops the connection before its 250: the client
    cannot know, so the answer is ambiguous (retried with the same Message-ID: the
    documented window), never a refusal."""
    async with SmtpGateway() as gw:
        gw.drop_after_accept_next(1)
        provider = _provider(gw.port)
        result = await provider.send(_msg("a@example.nz", "N-1:email"))
        await provider.close()
        assert result.status is S.TECHNICAL_FAILURE and result.ambiguous
        assert len(gw.messages) == 1
