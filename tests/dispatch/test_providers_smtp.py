import socket

import pytest

from services.dispatch.content.render import render_email
from services.dispatch.delivery_state import DeliveryStatus as S
from services.dispatch.providers.base import EmailMessage
from services.dispatch.providers.smtp import SmtpConfig, SmtpEmailProvider

from .conftest import make_notice


def _msg(to="person1@example.nz", ref="NOTICE-0001:email"):
    return EmailMessage(
        reference=ref,
        to=to,
        from_addr="notices@example.nz",
        subject="Test",
        text="Body PAN-TEST",
        html="<p>Body</p>",
    )


def _provider(gw, **kw):
    return SmtpEmailProvider(SmtpConfig(host="127.0.0.1", port=gw.port, tls="none", **kw))


async def test_send_rendered_notice_over_loopback(smtp_gw, incident):
    rendered = render_email(make_notice(), incident)
    provider = _provider(smtp_gw)
    result = await provider.send(
        EmailMessage(
            "NOTICE-0001:email",
            rendered.to,
            "notices@example.nz",
            rendered.subject,
            rendered.text,
            rendered.html,
        )
    )
    await provider.close()
    assert result.status is S.SENT and result.provider_reference.startswith("<")
    [received] = smtp_gw.messages
    assert received.rcpt_tos == ("person1@example.nz",)
    msg = received.message
    assert msg["X-Panui-Reference"] == "NOTICE-0001:email"
    assert msg["Message-ID"] == result.provider_reference
    assert (
        msg.get_body(("plain",)).get_content().replace("\r\n", "\n").strip()
        == rendered.text.strip()
    )
    assert "Tēnā" not in msg.get_body(("html",)).get_content()
    assert rendered.reference_code in msg.get_body(("html",)).get_content()


async def test_message_id_is_deterministic_per_reference(smtp_gw):
    provider = _provider(smtp_gw)
    a = await provider.send(_msg())
    b = await provider.send(_msg())
    c = await provider.send(_msg(ref="NOTICE-0002:email"))
    await provider.close()
    assert a.provider_reference == b.provider_reference != c.provider_reference


async def test_4xx_is_temporary_and_5xx_permanent(smtp_gw):
    smtp_gw.set_recipient("tempfail@example.nz", "tempfail")
    smtp_gw.set_recipient("reject@example.nz", "reject")
    provider = _provider(smtp_gw)
    temp = await provider.send(_msg("tempfail@example.nz"))
    perm = await provider.send(_msg("reject@example.nz"))
    ok = await provider.send(_msg())  # the pooled connection is still usable
    await provider.close()
    assert (temp.status, temp.detail) == (S.TEMPORARY_FAILURE, "smtp-451")
    assert (perm.status, perm.detail) == (S.PERMANENT_FAILURE, "smtp-550")
    assert ok.status is S.SENT
    assert len(smtp_gw.messages) == 1


async def test_data_stage_failures(smtp_gw):
    provider = _provider(smtp_gw)
    smtp_gw.fail_next(1, 421)
    assert (await provider.send(_msg())).status is S.TEMPORARY_FAILURE
    smtp_gw.fail_next(1, 554)
    assert (await provider.send(_msg())).status is S.PERMANENT_FAILURE
    assert (await provider.send(_msg())).status is S.SENT
    await provider.close()


async def test_connection_refused_is_technical_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listening once closed
    provider = SmtpEmailProvider(SmtpConfig(host="127.0.0.1", port=port, tls="none", timeout=2))
    result = await provider.send(_msg())
    assert result.status is S.TECHNICAL_FAILURE and not result.ambiguous


async def test_slow_server_times_out_as_ambiguous_technical_failure(smtp_gw):
    smtp_gw.slow_down(1.0)
    provider = _provider(smtp_gw, timeout=0.3)
    result = await provider.send(_msg())
    await provider.close()
    assert result.status is S.TECHNICAL_FAILURE and result.ambiguous


async def test_bounce_accepts_then_returns_dsn(smtp_gw):
    smtp_gw.set_recipient("bounce@example.nz", "bounce")
    provider = _provider(smtp_gw)
    result = await provider.send(_msg("bounce@example.nz"))
    await provider.close()
    assert result.status is S.SENT  # the bounce only arrives later, as with real relays
    [dsn] = smtp_gw.bounces
    assert dsn.rcpt_tos == ("notices@example.nz",)
    assert dsn.message.get_content_type() == "multipart/report"
    assert dsn.message["X-Panui-Reference"] == "NOTICE-0001:email"


async def test_pool_reuses_connections_and_bounds_concurrency(smtp_gw):
    import asyncio

    provider = SmtpEmailProvider(
        SmtpConfig(host="127.0.0.1", port=smtp_gw.port, tls="none", pool_size=2)
    )
    results = await asyncio.gather(*(provider.send(_msg(ref=f"N{i}:email")) for i in range(10)))
    assert all(r.status is S.SENT for r in results)
    assert provider._idle.qsize() <= 2
    await provider.close()
    assert len(smtp_gw.messages) == 10


async def test_a_connection_dropped_after_the_message_was_taken_is_ambiguous(smtp_gw):
    smtp_gw.drop_after_accept_next(1)
    provider = _provider(smtp_gw)
    result = await provider.send(_msg())
    again = await provider.send(_msg())  # a fresh connection
    await provider.close()
    assert result.status is S.TECHNICAL_FAILURE and result.ambiguous
    assert again.status is S.SENT
    assert len(smtp_gw.messages) == 2  # SMTP cannot de-duplicate: the documented window


async def test_the_send_deadline_never_cuts_a_started_data(smtp_gw):
    """The relay stores the message at its final dot and answers after the deadline: the send
    waits for the answer (bounded by the command timeout) instead of giving up on a message
    the relay holds — a retry would be a second copy."""
    import asyncio

    smtp_gw.answer_after_taking(1.0)
    provider = _provider(smtp_gw, timeout=10.0)
    result = await provider.send(_msg(), deadline=asyncio.get_running_loop().time() + 0.2)
    await provider.close()
    assert result.status is S.SENT and not result.ambiguous
    assert len(smtp_gw.messages) == 1


@pytest.mark.parametrize("command", ["MAIL", "RCPT"])
async def test_the_send_deadline_cuts_what_comes_before_data_as_certainly_not_sent(
        smtp_gw, command):
    import asyncio

    smtp_gw.hold(command, 2.0)
    provider = _provider(smtp_gw, timeout=10.0)
    result = await provider.send(_msg(), deadline=asyncio.get_running_loop().time() + 0.3)
    smtp_gw.hold(command, 0.0)
    again = await provider.send(_msg())  # the cut connection was not put back in the pool
    await provider.close()
    assert (result.status, result.detail, result.ambiguous) == (
        S.TECHNICAL_FAILURE, "deadline", False)
    assert again.status is S.SENT and smtp_gw.data_received == 1


async def test_the_hand_over_is_reported_when_data_starts_and_never_before(smtp_gw):
    """The sender's stop relies on it: a send reported handed over is never cancelled. A
    recipient refused at RCPT never reaches DATA; an accepted one reports it once."""
    handed: list[str] = []
    smtp_gw.set_recipient("refused@example.nz", "reject")
    provider = _provider(smtp_gw, timeout=10.0)
    refused = await provider.send(_msg(to="refused@example.nz"),
                                  on_handover=lambda: handed.append("refused"))
    sent = await provider.send(_msg(), on_handover=lambda: handed.append("sent"))
    await provider.close()
    assert (refused.status, sent.status) == (S.PERMANENT_FAILURE, S.SENT)
    assert handed == ["sent"]


def test_every_smtp_answer_is_classified_and_only_the_unseen_ones_are_ambiguous():
    from services.dispatch.providers.base import Answer

    answers = SmtpEmailProvider.ANSWERS
    ambiguous = {k for k, v in answers.items() if v.answer is Answer.AMBIGUOUS}
    # Cut off after the message may have gone (no reply seen): retried with the same
    # Message-ID, never treated as refused.
    assert ambiguous == {"disconnected", "timeout"}
    assert answers["5xx"].answer is Answer.PERMANENT and answers["5xx"].status is S.PERMANENT_FAILURE
    assert answers["4xx"].status is S.TEMPORARY_FAILURE and not answers["4xx"].ambiguous
    assert answers["connect-error"].answer is Answer.TEMPORARY  # never reached the relay
    assert answers["deadline"].answer is Answer.TEMPORARY  # cut before DATA
    assert answers["2xx"].status is S.SENT
