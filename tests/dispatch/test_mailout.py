"""The postal channel end to end (issue 17): people with neither email nor mobile get a letter.
Real Kafka, PostgreSQL and HTTP: the queued letters go into a mail-out batch, its PDF and
manifest are downloaded (the PDF read back with pdftotext), the batch is marked posted, and a
returned letter makes the person unreachable: on the s 115 public-notice list."""

import csv
import io

import pytest

from services.common.messages import decode_delivery_event
from services.dispatch.content.models import derive_reference_code
from testkit.infra import free_port, topic_reader
from testkit.notices import incident_message, notice_message, person
from testkit.rendering import pdf_text

from .stack import COORDINATOR, dispatch_settings, running_dispatch

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def settings(service_env, pg_database, smtp_gw, sms_gw):
    return dispatch_settings(service_env, pg_database("dispatch"), port=free_port(),
                             smtp_port=smtp_gw.port, sms_url=sms_gw.url, quiet_hours_enabled=False)


def _statuses(stack, notice) -> dict[str, str]:
    return {ch: st for (nid, ch), st in stack.delivery_map().items() if nid == notice.notice_id}


async def test_letters_are_batched_downloaded_posted_and_returned_mail_is_unreachable(
    settings, kafka_bootstrap, topic_prefix
):
    async with running_dispatch(settings) as stack:
        http = stack.http
        post_only = [notice_message(stack.sealer, n, person(n, email=False, mobile=False))
                     for n in (1, 2, 3)]
        await stack.publish_incident(incident_message())
        await stack.publish_notices(post_only)
        await stack.wait_until(lambda: all(_statuses(stack, n) == {"postal": "queued"}
                                           for n in post_only), what="letters queued")
        preview = await http.get("/v1/incidents/inc-1/notice-preview?language=en",
                                 headers=COORDINATOR)
        assert preview.status_code == 200, preview.text
        assert preview.json()["email_text"].startswith("Kia ora Aroha,")
        assert preview.json()["templates_mi_fingerprint"] is None
        assert (await http.get("/v1/incidents/inc-x/notice-preview",
                               headers=COORDINATOR)).status_code == 404
        nothing = await http.post("/v1/incidents/inc-1/mailouts", json={}, headers={})
        assert nothing.status_code == 401

        made = await http.post("/v1/incidents/inc-1/mailouts", json={"limit": 2},
                               headers=COORDINATOR)
        assert made.status_code == 201, made.text
        batch = made.json()
        assert batch["letters"] == 2 and batch["posted_at"] is None
        second = (await http.post("/v1/incidents/inc-1/mailouts", json={"large_print": True},
                                  headers=COORDINATOR)).json()
        assert second["letters"] == 1 and second["large_print"] is True
        empty = await http.post("/v1/incidents/inc-1/mailouts", json={}, headers=COORDINATOR)
        assert empty.status_code == 409
        assert empty.json()["error"]["code"] == "mailout.no_letters_waiting"
        bad = await http.post("/v1/incidents/inc-1/mailouts", json={"limit": 0},
                              headers=COORDINATOR)
        assert bad.status_code in (400, 422) and "error" in bad.json()
        assert {_statuses(stack, n)["postal"] for n in post_only} == {"sending"}

        base = f"/v1/incidents/inc-1/mailouts/{batch['batch_id']}"
        pdf = await http.get(f"{base}/letters.pdf", headers=COORDINATOR)
        manifest = await http.get(f"{base}/manifest.csv", headers=COORDINATOR)
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["cache-control"] == "no-store"
        rows = list(csv.DictReader(io.StringIO(manifest.text)))
        in_batch = [n for n in post_only if n.notice_id in {r["notice_id"] for r in rows}]
        assert len(in_batch) == 2
        text = pdf_text(pdf.content)
        by_id = {r["notice_id"]: r for r in rows}
        for n in in_batch:
            row = by_id[n.notice_id]
            ref = derive_reference_code(n.notice_id)
            assert row["reference_code"] == ref and ref in text
            assert row["address_line1"] == f"{int(n.person_id[-6:])} Test Street"
            page = pdf_text(pdf.content, int(row["first_page"]), int(row["first_page"]))
            assert f"Testperson{int(n.person_id[-6:])} Fakename" in page and ref in page
        other = await http.get(f"/v1/incidents/inc-other/mailouts/{batch['batch_id']}",
                               headers=COORDINATOR)
        assert other.status_code == 404 and other.json()["error"]["code"] == "mailout.not_found"

        ref = derive_reference_code(in_batch[0].notice_id)
        early = await http.post("/v1/incidents/inc-1/returned-mail", json={"reference": ref},
                                headers=COORDINATOR)
        assert early.status_code == 409  # not posted yet

        posted = await http.post(f"{base}/posted", headers=COORDINATOR)
        assert posted.status_code == 200 and posted.json()["posted_at"] is not None
        again = (await http.post(f"{base}/posted", headers=COORDINATOR)).json()
        assert again["posted_at"] == posted.json()["posted_at"]
        assert [_statuses(stack, n)["postal"] for n in in_batch] == ["sent", "sent"]

        unknown = await http.post("/v1/incidents/inc-1/returned-mail",
                                  json={"reference": "PAN-ZZZZ-ZZZZ"}, headers=COORDINATOR)
        assert unknown.status_code == 404
        returned = await http.post("/v1/incidents/inc-1/returned-mail",
                                   json={"reference": ref.lower()}, headers=COORDINATOR)
        assert returned.json() == {"outcome": "recorded"}
        twice = await http.post("/v1/incidents/inc-1/returned-mail",
                                json={"reference": in_batch[0].notice_id}, headers=COORDINATOR)
        assert twice.json() == {"outcome": "already-recorded"}
        await stack.wait_until(lambda: _statuses(stack, in_batch[0]) == {
            "postal": "permanent-failure", "none": "unreachable"}, what="returned -> unreachable")
        listed = (await http.get("/v1/incidents/inc-1/mailouts", headers=COORDINATOR)).json()
        assert [b["returned"] for b in listed["batches"]] == [1, 0]
        unreachable = await http.get("/v1/incidents/inc-1/unreachable.csv", headers=COORDINATOR)
        lists = {r["notice_id"]: r["list"] for r in csv.DictReader(io.StringIO(unreachable.text))}
        # Returned: the public notice. Batched letters are no longer waiting for a mail-out.
        assert lists == {in_batch[0].notice_id: "public-notice"}

        def mine(messages: list) -> list[tuple[str, str | None]]:
            return [(e.status.value, e.reason_code) for e in map(decode_delivery_event,
                    (m.value for m in messages)) if e.notice_id == in_batch[0].notice_id]

        async with topic_reader(kafka_bootstrap, f"{topic_prefix}delivery-events.v1") as reader:
            events = mine(await reader.wait_for(lambda m: len(mine(m)) >= 5))
    assert events[0] == ("queued", None)
    assert ("sending", "mailout-batched") in events and ("sent", "mailout-posted") in events
    assert ("permanent-failure", "mail-returned") in events
    assert "unreachable" in {status for status, _ in events}


def _correcting(notice, kind: str):  # noqa: ANN001, ANN202 - a NoticeMessage
    """`notice` (a later version) as dedupe's correction: the lab was named wrongly."""
    from services.common.messages import NoticeAgency, NoticeCorrection

    lab = NoticeAgency(agency_id="lab-1", name="Test Community Lab",
                       data_categories=["lab_results"], document_count=1)
    return notice.model_copy(update={"correction": NoticeCorrection(
        kind=kind, review_id="rev-1",
        agencies=[lab] if kind == "agency_not_involved" else list(notice.agencies))})


async def test_a_correction_letter_names_the_letter_it_corrects_and_one_never_posted_is_the_first(
    settings
):
    """Two people on the postal list. The first was posted version 1; their sent-in-error
    correction letter says which notice it corrects (we wrote to them, when, its reference),
    what changed, and how to check it is real. The second's version 1 was still waiting for a
    mail-out when the correction (an agency named wrongly) came: they never got a letter, so
    theirs is their first notice — never "a correction", never naming the lab. Read back from
    the batch's real PDF."""
    async with running_dispatch(settings) as stack:
        http = stack.http
        posted_to, never_posted = (
            notice_message(stack.sealer, n, person(n, email=False, mobile=False)) for n in (1, 2))
        await stack.publish_incident(incident_message())
        await stack.publish_notices([posted_to])
        await stack.wait_until(lambda: _statuses(stack, posted_to) == {"postal": "queued"},
                               what="the first letter queued")
        first = (await http.post("/v1/incidents/inc-1/mailouts", json={},
                                 headers=COORDINATOR)).json()
        posted = await http.post(f"/v1/incidents/inc-1/mailouts/{first['batch_id']}/posted",
                                 headers=COORDINATOR)
        assert posted.status_code == 200, posted.text
        await stack.publish_notices([never_posted])
        await stack.wait_until(lambda: _statuses(stack, never_posted) == {"postal": "queued"},
                               what="the second's first letter queued")
        corrections = [
            _correcting(notice_message(stack.sealer, 1, person(1, email=False, mobile=False),
                                       version=2), "sent_in_error"),
            _correcting(notice_message(stack.sealer, 2, person(2, email=False, mobile=False),
                                       version=2), "agency_not_involved")]
        await stack.publish_notices(corrections)
        await stack.wait_until(lambda: all(_statuses(stack, n) == {"postal": "queued"}
                                           for n in corrections), what="the corrections queued")
        assert _statuses(stack, never_posted) == {"postal": "superseded"}
        batch = (await http.post("/v1/incidents/inc-1/mailouts", json={},
                                 headers=COORDINATOR)).json()
        assert batch["letters"] == 2
        base = f"/v1/incidents/inc-1/mailouts/{batch['batch_id']}"
        pdf = (await http.get(f"{base}/letters.pdf", headers=COORDINATOR)).content
        rows = {r["notice_id"]: r for r in csv.DictReader(io.StringIO(
            (await http.get(f"{base}/manifest.csv", headers=COORDINATOR)).text))}

    def letter(notice) -> str:  # noqa: ANN001
        row = rows[notice.notice_id]
        start = int(row["first_page"])
        return " ".join(pdf_text(pdf, start, start + int(row["pages"]) - 1).split())

    correction = letter(corrections[0])
    assert "CORRECTION TO A NOTICE WE SENT YOU" in correction
    assert "WHAT WE TOLD YOU BEFORE" in correction and "WHAT HAS CHANGED" in correction
    assert "Example Health wrote to you about a privacy breach" in correction
    squashed = "".join(correction.split())  # a reference may wrap at its hyphen
    assert f"Thatnoticehadthereference{derive_reference_code(posted_to.notice_id)}." in squashed
    assert "sent to you by mistake" in correction
    assert f"Thisletter'sreferenceis{derive_reference_code(corrections[0].notice_id)}." in squashed
    assert "HOW TO CHECK THIS LETTER IS REAL" in correction and "We will never ask for" in correction
    assert "into your browser yourself, or call" in correction and "http" not in correction
    first_notice = letter(corrections[1])
    assert "correction" not in first_notice.lower()
    assert "Test Community Lab" not in first_notice and "earlier notice" not in first_notice
    assert "Privacy Commissioner" in first_notice
    assert derive_reference_code(corrections[1].notice_id) in "".join(first_notice.split())
