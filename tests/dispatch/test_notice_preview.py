"""Any stored notice by reference, rendered as it was sent (issue 14's preview page): on real
Kafka, PostgreSQL and the local SMTP and SMS gateways, the preview of a sent notice is what the
person received, word for word; it shows personal data, so every preview is in the audit log."""

import asyncio

import pytest

from services.dispatch.content.models import derive_reference_code
from testkit.notices import incident_message, notice_message, person

from .stack import COORDINATOR, dispatch_settings, running_dispatch

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture
def settings(service_env, pg_database, smtp_gw, sms_gw):
    from testkit.infra import free_port

    return dispatch_settings(service_env, pg_database("dispatch"), port=free_port(),
                             smtp_port=smtp_gw.port, sms_url=sms_gw.url, quiet_hours_enabled=False)


async def test_a_sent_notice_previews_as_the_person_received_it(settings, smtp_gw, sms_gw):
    async with running_dispatch(settings) as stack:
        http = stack.http
        await stack.publish_incident(incident_message(mode="both"))
        notice = notice_message(stack.sealer, 1, person(1))
        await stack.publish_notices([notice])
        await stack.wait_until(lambda: len(smtp_gw.messages) == 1 and len(sms_gw.messages) == 1,
                               what="the email and the SMS")
        await stack.wait_until(lambda: {ch for (nid, ch), st in stack.delivery_map().items()
                                        if st in ("sent", "delivered")} == {"email", "sms"},
                               what="both recorded")
        url = f"/v1/incidents/inc-1/notices/{notice.notice_id}/preview"
        response = await http.get(url, headers=COORDINATOR)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        [mail] = smtp_gw.messages
        [sms] = sms_gw.messages.values()
        assert (body["notice_id"], body["version"], body["incident_revision"], body["language"],
                body["sent"]) == (notice.notice_id, 1, 1, "en", True)
        # SMTP carries CRLF line ends; the text is otherwise the same, character for character.
        assert body["email_text"] == mail.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert body["email_subject"] == mail.message["subject"]
        assert body["sms"] == sms.body and body["sms_segments"] >= 1
        assert "Testperson1" in body["email_text"]
        # By the code printed on it, as the person reads it out on the phone.
        code = derive_reference_code(notice.notice_id)
        assert code in body["email_text"]
        by_code = await http.get(f"/v1/incidents/inc-1/notices/{code.lower()}/preview",
                                 headers=COORDINATOR)
        assert by_code.status_code == 200 and by_code.json() == body
        # The same notice in te reo (the bundled wrapper, as no templates are approved).
        mi = (await http.get(url, params={"language": "mi"}, headers=COORDINATOR)).json()
        assert mi["language"] == "mi" and mi["email_text"] != body["email_text"]

        # Another incident's notice, an unknown one, a bad language: refused.
        elsewhere = await http.get(f"/v1/incidents/inc-2/notices/{notice.notice_id}/preview",
                                   headers=COORDINATOR)
        assert (elsewhere.status_code, elsewhere.json()["error"]["code"]) == (404, "notice.not_found")
        unknown = await http.get("/v1/incidents/inc-1/notices/ntc-nobody/preview", headers=COORDINATOR)
        assert unknown.status_code == 404
        assert (await http.get(url, params={"language": "fr"}, headers=COORDINATOR)).status_code == 422
        assert (await http.get(url)).status_code == 401
        audit = (await http.get("/v1/audit", headers=COORDINATOR)).json()["entries"]
        assert [(e["action"], e["incident_id"], e["object_ids"]) for e in audit] == [
            ("notice.preview", "inc-1", [notice.notice_id])] * 3
        assert "Testperson1" not in str(audit)


async def test_content_that_cannot_be_rendered_is_a_conflict_not_a_bad_request(settings):
    """The incident schema allows content the renderer refuses (here: the Privacy Commissioner
    not notified); a well-formed preview request then gets 409 with the reason, never a 5xx or
    a 422 that would blame the request (schemathesis' positive-data check found the 422)."""
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message("inc-3", privacy_commissioner_notified=False))
        async with asyncio.timeout(30):
            while (response := await stack.http.get("/v1/incidents/inc-3/notice-preview?language=en",
                                                    headers=COORDINATOR)).status_code == 404:
                await asyncio.sleep(0.1)  # dispatch has not read the incident yet
        assert response.status_code == 409, response.text
        body = response.json()["error"]
        assert body["code"] == "preview.render_failed" and "Privacy Commissioner" in body["message"]
