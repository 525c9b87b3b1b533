"""Dry-run incidents (issue 14, like GOV.UK Notify's test keys): everything runs, but their
notices go only to the local simulated gateways, marked as a rehearsal — on real Kafka and
PostgreSQL, with two pairs of local gateways standing for the real providers and the
simulated ones. A dry-run SMS gateway that is not on the loopback keeps dispatch from starting."""

import pytest
from pydantic import ValidationError

from services.dispatch.settings import DispatchSettings
from services.gateways.sms_server import SmsGateway
from services.gateways.smtp_server import SmtpGateway
from testkit.infra import free_port
from testkit.notices import incident_message, notice_message, person

from .stack import COORDINATOR, dispatch_settings, running_dispatch

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_a_dry_run_incident_reaches_only_the_simulated_gateways_marked(
        service_env, pg_database, smtp_gw, sms_gw):
    async with SmtpGateway() as dry_smtp, SmsGateway(callback_secret="test-secret") as dry_sms:
        settings = dispatch_settings(
            service_env, pg_database("dispatch"), port=free_port(), smtp_port=smtp_gw.port,
            sms_url=sms_gw.url, quiet_hours_enabled=False,
            dry_run_smtp_port=dry_smtp.port, dry_run_sms_url=dry_sms.url)
        async with running_dispatch(settings) as stack:
            rehearsal = incident_message("inc-dry", mode="both").model_copy(update={"dry_run": True})
            await stack.publish_incident(rehearsal)
            await stack.publish_incident(incident_message("inc-1", mode="both"))
            dry = notice_message(stack.sealer, 1, person(1), incident_id="inc-dry")
            real = notice_message(stack.sealer, 2, person(2), incident_id="inc-1")
            await stack.publish_notices([dry, real])
            await stack.wait_until(
                lambda: len(dry_smtp.messages) == len(smtp_gw.messages) == 1
                and len(dry_sms.messages) == len(sms_gw.messages) == 1, what="all four sends")
            await stack.wait_until(lambda: set(stack.delivery_map().values()) <= {"sent", "delivered"}
                                   and len(stack.delivery_map()) == 4, what="all recorded")
            preview = (await stack.http.get(f"/v1/incidents/inc-dry/notices/{dry.notice_id}/preview",
                                            headers=COORDINATOR)).json()
            sample = (await stack.http.get("/v1/incidents/inc-dry/notice-preview?language=en",
                                           headers=COORDINATOR)).json()
            plain = (await stack.http.get("/v1/incidents/inc-1/notice-preview?language=en",
                                          headers=COORDINATOR)).json()
            # No letter of a rehearsal is ever batched for the (real) print house.
            letters = await stack.http.post("/v1/incidents/inc-dry/mailouts", json={},
                                            headers=COORDINATOR)
            assert (letters.status_code, letters.json()["error"]["code"]) == (409, "mailout.dry_run")

    # The rehearsal went to the simulated gateways only; the real incident to the real ones.
    assert dry_smtp.messages_to("person1@example.nz") and not smtp_gw.messages_to("person1@example.nz")
    assert smtp_gw.messages_to("person2@example.nz") and not dry_smtp.messages_to("person2@example.nz")
    [dry_text] = dry_sms.messages.values()
    [real_text] = sms_gw.messages.values()
    assert (dry_text.to, real_text.to) == ("+64210000001", "+64210000002")
    # Marked: subject, text, HTML and SMS; the real notice is not.
    [mail] = dry_smtp.messages
    assert mail.message["subject"].startswith("[DRY RUN] ")
    assert mail.message.get_body(("plain",)).get_content().startswith("DRY RUN: a rehearsal")
    assert "DRY RUN: a rehearsal" in mail.message.get_body(("html",)).get_content()
    assert dry_text.body.startswith("[DRY RUN] ")
    [real_mail] = smtp_gw.messages
    assert "DRY RUN" not in real_mail.message.as_string() and "DRY RUN" not in real_text.body
    # The previews show the mark too: the stored one exactly as the gateway got it.
    assert preview["dry_run"] is True and preview["email_subject"] == mail.message["subject"]
    assert preview["sms"] == dry_text.body
    assert sample["dry_run"] is True and sample["email_subject"].startswith("[DRY RUN] ")
    assert sample["sms"].startswith("[DRY RUN] ") and sample["letter_text"].startswith("DRY RUN")
    assert plain["dry_run"] is False and "DRY RUN" not in plain["email_text"]


@pytest.mark.parametrize("url", ["https://sms.example.com/send", "http://10.0.0.5:8025",
                                 "ftp://127.0.0.1:8025"])
def test_dispatch_refuses_a_dry_run_gateway_that_is_not_local(url):
    with pytest.raises(ValidationError, match="local simulated gateway"):
        DispatchSettings(dry_run_sms_url=url)
    assert DispatchSettings(dry_run_sms_url="http://127.0.0.1:9999").dry_run_sms_url
