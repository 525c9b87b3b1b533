"""The renderer reads the Kafka contract; raw MIME is valid; CSV cells are neutralised."""

import email
import email.policy

import pytest

from services.common.crypto import Sealer, generate_key_spec
from services.common.csvsafe import csv_safe
from services.common.messages import SealedRecipient, notice_sealing_context
from services.dispatch.content.models import IncidentContent, Notice
from services.dispatch.content.render import render_email, render_sms
from services.dispatch.providers.base import EmailMessage
from services.dispatch.providers.smtp import SmtpConfig, SmtpEmailProvider
from testkit.notices import incident_message, notice_message, person


def test_renderer_accepts_the_contract_incident_and_opened_notice():
    sealer = Sealer(generate_key_spec("t"))
    incident = incident_message(templates_mi={})
    notice = notice_message(sealer, 1, person(1))
    opened = SealedRecipient.model_validate(
        sealer.open(notice.sealed, notice_sealing_context(notice.notice_id)))
    view = Notice.from_contract(notice, opened)
    content = IncidentContent.from_contract(incident)
    assert content.contact.name == "Example Helpline"  # contract: contact.organisation
    mail = render_email(view, incident)  # the contract IncidentMessage directly
    assert "4 March 2026" in mail.text and "Example Helpline" in mail.text
    assert mail.to == "person1@example.nz"
    assert render_sms(view, content).to == "+64210000001"


def test_contract_recipient_with_missing_names_still_renders():
    sealer = Sealer(generate_key_spec("t"))
    notice = notice_message(sealer, 2, {"email": "x@example.nz"})
    view = Notice.from_contract(notice, {"recipient": {"email": "x@example.nz"}})
    mail = render_email(view, incident_message())
    assert mail.text.startswith("Kia ora,")


def test_raw_mime_is_a_valid_two_part_message_with_encoded_subject():
    provider = SmtpEmailProvider(SmtpConfig("127.0.0.1", 25, tls="none"))
    raw = provider.build_raw(EmailMessage(
        reference="ntc-1:email", to="a@example.nz", from_addr="n@example.nz",
        subject="Pānui: Example breach " * 5, text="Kia ora Māui,\n" + "line\n" * 200,
        html="<p>Tēnā koe</p>"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == ("Pānui: Example breach " * 5).strip()
    assert msg["Message-ID"] == provider.message_id("ntc-1:email")
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")  # wire form is CRLF
    assert text == "Kia ora Māui,\n" + "line\n" * 200
    assert msg.get_body(("html",)).get_content().strip() == "<p>Tēnā koe</p>"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_header_injection_is_refused():
    provider = SmtpEmailProvider(SmtpConfig("127.0.0.1", 25, tls="none"))
    with pytest.raises(ValueError):
        provider.build_raw(EmailMessage(reference="r", to="a@example.nz\r\nBcc: x@evil",
                                        from_addr="n@example.nz", subject="s", text="t"))


@pytest.mark.parametrize("value, expected", [
    ("=1+1", "'=1+1"), ("+64 21", "'+64 21"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("Aroha", "Aroha"), (None, ""), ("12 Main St", "12 Main St"),
])
def test_csv_cells_are_neutralised(value, expected):
    assert csv_safe(value) == expected
