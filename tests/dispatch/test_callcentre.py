"""The call centre's lookup (issue 16) on the real dispatch service: what it shows is exactly
what the gateways got (rendered again from the sealed notice and the pinned revision), with the
delivery history, the amendments and the unreachable flag; wrong verification finds nothing;
every lookup is audited."""


import pytest

from services.common.clock import utcnow
from services.common.messages import NoticeHoldMessage
from testkit.infra import free_port
from testkit.notices import incident_message, notice_message, person
from testkit.staff import SIGNING_KEY, token

from .stack import COORDINATOR, dispatch_settings, running_dispatch, until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

DOB = "1979-11-30"


@pytest.fixture
def settings(service_env, pg_database, smtp_gw, sms_gw):
    return dispatch_settings(service_env, pg_database("dispatch"), port=free_port(),
                             smtp_port=smtp_gw.port, sms_url=sms_gw.url, quiet_hours_enabled=False,
                             token_signing_key=SIGNING_KEY)


def _operator() -> dict:
    return {"authorization": f"Bearer {token(['call-centre'])[0]}"}


async def test_the_lookup_shows_exactly_what_was_sent_with_history_and_amendments(
        settings, smtp_gw, sms_gw):
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        first = notice_message(stack.sealer, 1, person(1), dates_of_birth=[DOB])
        texted = notice_message(stack.sealer, 2, person(2, email=False), dates_of_birth=[DOB])
        nowhere = notice_message(stack.sealer, 3, person(3, email=False, mobile=False,
                                                         address=False), dates_of_birth=[DOB])
        await stack.publish_notices([first, texted, nowhere])
        await stack.wait_until(lambda: len(smtp_gw.messages) >= 1 and len(sms_gw.messages) >= 1,
                               what="the email and the SMS")
        amendment = notice_message(stack.sealer, 1, person(1), version=2, dates_of_birth=[DOB])
        await stack.publish_notices([amendment])
        await stack.wait_until(lambda: len(smtp_gw.messages) >= 2, what="the amendment")
        await stack.wait_until(lambda: stack.delivery_map().get((nowhere.notice_id, "none"))
                               == "unreachable", what="unreachable")

        url = "/v1/incidents/inc-1/notice-lookups"
        found = await stack.http.post(url, headers=_operator(), json={
            "reference": first.reference_code, "date_of_birth": DOB})
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["notice_id"] == first.notice_id and body["reference"] == first.reference_code
        mail = next(m for m in smtp_gw.messages_to("person1@example.nz")
                    if "updates the notice" not in m.message.get_body(("plain",)).get_content())
        [email] = [s for s in body["sent"] if s["channel"] == "email"]
        # The same text (SMTP carries it with CRLF line ends).
        assert email["text"] == mail.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert email["subject"] == mail.message["Subject"]
        assert [h["status"] for h in body["history"] if h["channel"] == "email"] == \
            ["queued", "sending", "sent"]
        assert [d["status"] for d in body["deliveries"]] == ["sent"]
        assert [v["notice_id"] for v in body["versions"]] == [first.notice_id, amendment.notice_id]
        assert body["versions"][1]["reference"] == amendment.reference_code
        assert body["unreachable"] is False and body["scripted_answers"]

        sms_body = (await stack.http.post(url, headers=_operator(), json={
            "reference": texted.reference_code, "verified_detail": "mobile"})).json()
        [gateway_sms] = sms_gw.messages.values()
        assert [s["text"] for s in sms_body["sent"]] == [gateway_sms.body]

        unreachable = (await stack.http.post(url, headers=_operator(), json={
            "reference": nowhere.reference_code, "date_of_birth": DOB})).json()
        assert unreachable["unreachable"] is True and unreachable["sent"] == []

        wrong = await stack.http.post(url, headers=_operator(), json={
            "reference": first.reference_code, "date_of_birth": "1979-11-29"})
        unknown = await stack.http.post(url, headers=_operator(), json={
            "reference": "PAN-2222-3333-4444", "date_of_birth": DOB})
        elsewhere = await stack.http.post("/v1/incidents/inc-2/notice-lookups", headers=_operator(),
                                          json={"reference": first.reference_code,
                                                "date_of_birth": DOB})
        assert wrong.status_code == unknown.status_code == elsewhere.status_code == 404
        assert wrong.content == unknown.content == elsewhere.content
        neither = await stack.http.post(url, headers=_operator(),
                                        json={"reference": first.reference_code})
        both = await stack.http.post(url, headers=_operator(), json={
            "reference": first.reference_code, "date_of_birth": DOB, "verified_detail": "email"})
        assert neither.status_code == both.status_code == 422  # one or the other (the schema's)

        audit = (await stack.http.get("/v1/audit", headers=COORDINATOR)).json()["entries"]
        lookups = [e for e in audit if e["action"] == "notice.lookup"]
        assert [e["object_ids"] for e in lookups] == [
            [first.notice_id, "found", "verified:date-of-birth"],
            [texted.notice_id, "found", "verified:mobile"],
            [nowhere.notice_id, "found", "verified:date-of-birth"],
            ["-", "not-found", "verified:date-of-birth"],
            ["-", "not-found", "verified:date-of-birth"],
            ["-", "not-found", "verified:date-of-birth"],
        ]
        assert all(e["actor"] == "test-staff" for e in lookups)
        assert DOB not in str(audit) and "1979-11-29" not in str(audit)

        answers = await stack.http.get("/v1/call-centre/answers", headers=_operator())
        assert answers.status_code == 200
        assert {a["id"] for a in answers.json()["answers"]} >= {"is-it-genuine", "complain"}


async def test_a_person_held_after_their_notice_is_shown_held_with_no_detail(
        settings, smtp_gw, sms_gw):
    """A hold that came after the notice (dedupe's notice-hold on notices.v1): the operator
    sees `held` and what not to say — never why (the message carries no ground) — and the
    lifting of the hold clears it. Another person of the incident is not held."""
    async with running_dispatch(settings) as stack:
        await stack.publish_incident(incident_message())
        held = notice_message(stack.sealer, 1, person(1), dates_of_birth=[DOB])
        other = notice_message(stack.sealer, 2, person(2), dates_of_birth=[DOB])
        await stack.publish_notices([held, other])
        await stack.wait_until(lambda: len(smtp_gw.messages) >= 2, what="the emails")
        url = "/v1/incidents/inc-1/notice-lookups"

        async def lookup(notice) -> dict:  # noqa: ANN001
            found = await stack.http.post(url, headers=_operator(), json={
                "reference": notice.reference_code, "date_of_birth": DOB})
            assert found.status_code == 200, found.text
            return found.json()

        before = await lookup(held)
        assert before["held"] is False and before["held_guidance"] is None
        await stack.publish_notices([NoticeHoldMessage(
            incident_id="inc-1", person_id=held.person_id, held=True, changed_at=utcnow())])
        await until(lambda: _is_held(stack, held.person_id), "the hold stored")
        body = await lookup(held)
        assert body["held"] is True and body["unreachable"] is False
        assert "Do not disclose" in body["held_guidance"]
        assert "health" not in body["held_guidance"] and "prejudice" not in str(body)
        assert [s["channel"] for s in body["sent"]] == ["email"]  # what they got, as before
        assert (await lookup(other))["held"] is False
        await stack.publish_notices([NoticeHoldMessage(
            incident_id="inc-1", person_id=held.person_id, held=False, changed_at=utcnow())])
        await until(lambda: not _is_held(stack, held.person_id), "the hold lifted")
        assert (await lookup(held))["held"] is False


def _is_held(stack, person_id: str) -> bool:  # noqa: ANN001
    from sqlmodel import Session

    from services.dispatch.store.holds import is_held

    with Session(stack.app.state.runtime.engine) as session:
        return is_held(session, "inc-1", person_id)
