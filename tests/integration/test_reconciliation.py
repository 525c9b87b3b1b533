"""Agency reconciliation on the whole path (issue 16): real broker, real PostgreSQL, the three
services over real HTTP, the local SMTP gateway, and `panui feed status` writing the CSV.

Two agencies share an incident. Every outcome appears for the right records of agency A —
rejected, withdrawn, in review (before the release), held (s 116), notified with its reference
and channel, merged with the other agency's record (a count, never who), unreachable — and
neither agency sees anything of the other's: its key, its ticket and its rows stay its own."""

import asyncio
import csv
import io
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from services.cli.main import app as cli
from services.common.reconciliation import (
    DedupeRecordStatus,
    DispatchNoticeStatus,
    IntakeRecordStatus,
    combine,
    status_csv,
)
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.gateways.smtp_server import SmtpGateway
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit.factories import affected_record, incident_body, ndjson, synthetic_nhi
from testkit.infra import free_port
from testkit.serving import serve_in_thread
from testkit.staff import SIGNING_KEY
from tests.conftest import COORDINATOR_TOKEN

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
INCIDENT, OTHER_INCIDENT = "inc-recon", "inc-recon-other"
A, B = "gp-kowhai", "lab-rata"


def person(n: int, **fields) -> dict:
    """Distinct people: no two share a name, date of birth, NHI or contact."""
    given = ["Aroha", "Hemi", "Mere", "Tama", "Sione", "Mele", "Wei", "Priya"][n]
    return {"nhi": synthetic_nhi(n), "given_names": given, "family_name": f"Recon{n}test",
            "date_of_birth": f"19{50 + n}-0{1 + n % 9}-1{n}", "email": f"recon{n}@example.nz",
            "mobile": None, **fields}


# Agency A's records, each meant for one outcome; B's share a person with A's first.
A_RECORDS = [
    affected_record("a-merged", **person(0)),
    affected_record("a-alone", **person(1)),
    affected_record("a-held", **person(2, hold={"reason": "health_prejudice"})),
    affected_record("a-rejected", **person(3, hold={"reason": "whim"})),  # unknown ground
    affected_record("a-withdrawn", **person(4)),
    affected_record("a-nowhere", **person(5, email=None)),  # an NHI, nothing to reach them by
    # A surname change with nothing else to back it: uncertain against B's b-review.
    affected_record("a-review", nhi=None, given_names="Ngaio", family_name="Reconngata",
                    date_of_birth="1985-09-17", email="ngaio.one@example.nz", mobile=None),
]
B_RECORDS = [
    affected_record("b-merged", **person(0, email="recon0@example.nz")),
    affected_record("b-only", **person(6)),
    affected_record("b-review", nhi=None, given_names="Ngaio", family_name="Reconwilson",
                    date_of_birth="1985-09-17", email="ngaio.two@example.nz", mobile=None),
]
PERSONAL = [v for r in A_RECORDS + B_RECORDS for k, v in r.items()
            if k in ("nhi", "given_names", "family_name", "date_of_birth", "email")]


def _rows(text: str) -> dict[str, dict]:
    return {r["source_record_id"]: r for r in csv.DictReader(io.StringIO(text))}


async def _status(urls: dict[str, str], key: str, out: Path, incident: str = INCIDENT):
    """`panui feed status` as an agency runs it (in a thread: the test's loop serves SMTP)."""
    args = ["feed", "status", "--incident", incident, "--out", str(out), "--url", urls["intake"],
            "--dedupe-url", urls["dedupe"], "--dispatch-url", urls["dispatch"], "--page-size", "2"]
    return await asyncio.to_thread(CliRunner().invoke, cli, args, env={"PANUI_API_KEY": key})


async def _until(urls, key, out, done, what: str, timeout_s: float = 180) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await _status(urls, key, out)
        assert result.exit_code == 0, result.output
        rows = _rows(out.read_text(encoding="utf-8"))
        if done(rows):
            return rows
        assert time.monotonic() < deadline, f"not reached: {what}: {rows}"
        await asyncio.sleep(0.5)


@asynccontextmanager
async def _services(service_env, pg_database, **dedupe):  # noqa: ANN001, ANN202
    """The three services over real HTTP and the local SMTP gateway: (http, urls, smtp)."""
    env = {**service_env, "token_signing_key": SIGNING_KEY}
    smtp = SmtpGateway()
    await smtp.start()
    ports = {s: free_port() for s in ("intake", "dedupe", "dispatch")}
    urls = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    apps = {
        "intake": create_intake(IntakeSettings(**env, database_url=pg_database("intake"))),
        "dedupe": create_dedupe(DedupeSettings(**env, **dedupe,
                                               database_url=pg_database("dedupe"))),
        "dispatch": create_dispatch(DispatchSettings(
            **env, database_url=pg_database("dispatch"), smtp_port=smtp.port,
            quiet_hours_enabled=False, receipt_callback_base_url="")),
    }
    try:
        with serve_in_thread(apps["intake"], ports["intake"], "intake"), \
                serve_in_thread(apps["dedupe"], ports["dedupe"], "dedupe"), \
                serve_in_thread(apps["dispatch"], ports["dispatch"], "dispatch"):
            async with httpx.AsyncClient(timeout=60) as http:
                yield http, urls, smtp
    finally:
        await smtp.stop()


async def test_each_agency_downloads_what_became_of_each_of_its_records(
    service_env, pg_database, tmp_path
):
    async with _services(service_env, pg_database) as (http, urls, smtp):
        await _scenario(http, urls, tmp_path, smtp)


async def test_a_record_whose_correction_was_not_needed_shows_withdrawn_and_nothing_sent(
    service_env, pg_database, tmp_path
):
    """A's record was notified, but the email bounced at the relay (550) and nothing else
    could reach the person; A then withdraws it (sent in error) and the coordinator decides a
    correction. No earlier version reached the person, so the correction is not sent: its
    delivery is `not-needed`. A's reconciliation says what became of the record — withdrawn —
    and never that a correction (or anything after the bounce) went out, in the API's parts
    and in `panui feed status`'s CSV alike; A's other record stays notified."""
    async with _services(service_env, pg_database, review_sync_interval_s=0.2,
                         release_tick_s=0.2) as (http, urls, smtp):
        intake, dedupe, dispatch = urls["intake"], urls["dedupe"], urls["dispatch"]
        bounced = person(1, email="recon.bounce@example.nz")
        smtp.set_recipient(bounced["email"], "reject")
        created = await http.post(f"{intake}/v1/incidents", headers=COORDINATOR,
                                  json=incident_body(INCIDENT, [(A, "Kōwhai Medical Centre")]))
        assert created.status_code == 201, created.text
        key = created.json()["issued_keys"][0]["api_key"]
        auth = {"authorization": f"Bearer {key}"}
        records = [affected_record("a-bounced", **bounced), affected_record("a-kept", **person(2))]
        fed = await http.post(f"{intake}/v1/incidents/{INCIDENT}/feeds", content=ndjson(records),
                              headers=auth | {"content-type": "application/x-ndjson"})
        assert fed.status_code == 202, fed.text
        done = await http.post(f"{intake}/v1/incidents/{INCIDENT}/completion", headers=auth)
        assert done.status_code == 200, done.text
        out = tmp_path / "status.csv"
        rows = await _until(urls, key, out, lambda r: r["a-bounced"]["outcome"] == "unreachable"
                            and r["a-kept"]["delivery_status"] in ("sent", "delivered"),
                            "the bounce and the other notice sent")
        assert rows["a-bounced"]["delivery_status"] == "permanent-failure"

        gone = await http.delete(f"{intake}/v1/incidents/{INCIDENT}/records/a-bounced",
                                 headers=auth)
        assert gone.status_code == 200, gone.text

        async def retraction() -> dict | None:
            answer = await http.get(f"{dedupe}/v1/incidents/{INCIDENT}/reviews",
                                    headers=COORDINATOR)
            return next((i for i in answer.json() if i["kind"] == "retraction"), None)
        deadline = time.monotonic() + 120
        while (item := await retraction()) is None:
            assert time.monotonic() < deadline, "no retraction item"
            await asyncio.sleep(0.3)
        decided = await http.post(
            f"{dedupe}/v1/incidents/{INCIDENT}/reviews/{item['review_id']}/decision",
            headers=COORDINATOR, json={"decision": "send_correction"})
        assert decided.status_code == 200, decided.text

        minted = await http.post(f"{intake}/v1/incidents/{INCIDENT}/status-ticket", headers=auth)
        ticket = {"authorization": f"Bearer {minted.json()['ticket']}"}
        deadline = time.monotonic() + 120
        while True:  # dispatch's part: the correction names A, settled not-needed
            page = (await http.get(f"{dispatch}/v1/incidents/{INCIDENT}/reconciliation/notices",
                                   headers=ticket)).json()
            corrections = [n for n in page["notices"] if n["version"] == 2]
            if corrections and corrections[0]["deliveries"]:
                break
            assert time.monotonic() < deadline, f"no correction in dispatch's part: {page}"
            await asyncio.sleep(0.3)
        assert [(d["channel"], d["status"]) for d in corrections[0]["deliveries"]] == [
            ("email", "not-needed")]
        dedupe_part = (await http.get(f"{dedupe}/v1/incidents/{INCIDENT}/reconciliation/records",
                                      headers=ticket)).json()
        assert {r["source_record_id"]: r["state"] for r in dedupe_part["records"]} == {
            "a-bounced": "withdrawn", "a-kept": "notified"}

        result = await _status(urls, key, out)
        assert result.exit_code == 0, result.output
        rows = _rows(out.read_text(encoding="utf-8"))
        assert rows["a-bounced"]["outcome"] == "withdrawn", rows["a-bounced"]
        assert rows["a-bounced"]["detail"] == "withdrawn by your agency"
        assert rows["a-bounced"]["notice_reference"] == rows["a-bounced"]["delivery_status"] == ""
        assert rows["a-kept"]["outcome"] == "notified"
        assert rows["a-kept"]["delivery_status"] in ("sent", "delivered")
        assert "not-needed" not in out.read_text(encoding="utf-8")
        assert not [m for m in smtp.messages if bounced["email"] in m.rcpt_tos]  # refused, never sent
        report = await http.get(f"{dispatch}/v1/incidents/{INCIDENT}/report", headers=COORDINATOR)
        counts = {c["measure"]: c["value"] for c in report.json()["counts"] if c["agency_id"] is None}
        assert counts["corrections.email.not-needed"] == 1


async def _scenario(http: httpx.AsyncClient, urls: dict[str, str], tmp_path: Path,
                    smtp: SmtpGateway) -> None:
    intake = urls["intake"]
    created = await http.post(f"{intake}/v1/incidents", headers=COORDINATOR, json=incident_body(
        INCIDENT, [(A, "Kōwhai Medical Centre"), (B, "Rātā Laboratories")]))
    assert created.status_code == 201, created.text
    keys = {k["agency_id"]: k["api_key"] for k in created.json()["issued_keys"]}
    other = await http.post(f"{intake}/v1/incidents", headers=COORDINATOR, json=incident_body(
        OTHER_INCIDENT, [("gp-elsewhere", "Elsewhere Health")]))
    assert other.status_code == 201, other.text
    auth = {a: {"authorization": f"Bearer {k}"} for a, k in keys.items()}
    for agency, records in ((A, A_RECORDS), (B, B_RECORDS)):
        fed = await http.post(f"{intake}/v1/incidents/{INCIDENT}/feeds", content=ndjson(records),
                              headers=auth[agency] | {"content-type": "application/x-ndjson"})
        assert fed.status_code == 202, fed.text
    withdrawn = await http.delete(f"{intake}/v1/incidents/{INCIDENT}/records/a-withdrawn",
                                  headers=auth[A])
    assert withdrawn.status_code == 200, withdrawn.text

    # Before the release: nothing notified; the uncertain pair is in review, the hold held.
    out = tmp_path / "status.csv"
    before = await _until(urls, keys[A], out, lambda r: r.get("a-review", {}).get("outcome")
                          == "in_review" and r.get("a-held", {}).get("outcome") == "held",
                          "the review item and the hold")
    assert before["a-alone"]["outcome"] == "pending"
    assert before["a-merged"]["merged_with_other_agencies"] == "1"

    for agency in (A, B):
        done = await http.post(f"{intake}/v1/incidents/{INCIDENT}/completion", headers=auth[agency])
        assert done.status_code == 200, done.text

    rows = await _until(urls, keys[A], out, lambda r: r["a-nowhere"]["outcome"] == "unreachable" and all(
        r[s]["outcome"] == "notified" and r[s]["delivery_status"] in ("sent", "delivered")
        for s in ("a-merged", "a-alone", "a-review")), "the notices sent")
    text = out.read_text(encoding="utf-8")
    assert set(rows) == {r["source_record_id"] for r in A_RECORDS}  # A's own, every one, no B's
    assert list(rows) == sorted(rows)
    assert rows["a-rejected"]["outcome"] == "rejected"
    assert "hold.reason_unknown" in rows["a-rejected"]["detail"]
    assert rows["a-rejected"]["record_version"] == ""
    assert rows["a-withdrawn"]["outcome"] == "withdrawn"
    assert rows["a-held"]["outcome"] == "held" and rows["a-held"]["notice_reference"] == ""
    assert rows["a-nowhere"]["outcome"] == "unreachable" and rows["a-nowhere"]["channels"] == ""
    assert rows["a-nowhere"]["notice_reference"].startswith("PAN-")
    for sid in ("a-merged", "a-alone", "a-review"):
        row = rows[sid]
        assert row["outcome"] == "notified" and row["channels"] == "email", row
        assert row["notice_reference"].startswith("PAN-") and row["record_version"] == "1"
    references = [rows[s]["notice_reference"] for s in ("a-merged", "a-alone", "a-review", "a-nowhere")]
    assert len(set(references)) == 4
    sent_text = "\n".join(m.data.decode(errors="replace") for m in smtp.messages)
    for sid in ("a-merged", "a-alone", "a-review"):  # the reference the person was sent
        assert rows[sid]["notice_reference"] in sent_text
    assert rows["a-merged"]["merged_with_other_agencies"] == "1"
    assert "merged with records from 1 other agency" in rows["a-merged"]["detail"]
    assert rows["a-alone"]["merged_with_other_agencies"] == "0" and rows["a-alone"]["detail"] == ""
    assert "reviewer is deciding" in rows["a-review"]["detail"]  # reviews never hold a release
    # Nothing personal, nothing of the other agency (its id, name or record ids).
    for leak in (*PERSONAL, B, "Rātā", "b-merged", "b-only", "b-review", "@example.nz"):
        assert leak not in text, leak

    await _same_as_joining_the_whole_parts(http, urls, keys[A], out)

    # B sees its own records only; the person it shares with A is merged "with 1 other agency".
    b_out = tmp_path / "b.csv"
    result = await _status(urls, keys[B], b_out)
    assert result.exit_code == 0, result.output
    b_rows = _rows(b_out.read_text(encoding="utf-8"))
    assert set(b_rows) == {"b-merged", "b-only", "b-review"}
    assert b_rows["b-merged"]["notice_reference"] == rows["a-merged"]["notice_reference"]
    assert b_rows["b-merged"]["merged_with_other_agencies"] == "1"
    assert A not in b_out.read_text(encoding="utf-8")

    await _isolation(http, urls, keys)

    # The CLI's refusals: an incident the agency is not in, no key.
    refused = await _status(urls, keys[A], tmp_path / "x.csv", incident=OTHER_INCIDENT)
    assert refused.exit_code == 1 and "incident.not_found" in refused.output
    assert not (tmp_path / "x.csv").exists()
    no_key = await asyncio.to_thread(CliRunner().invoke, cli, ["feed", "status", "--incident", INCIDENT],
                                     env={"PANUI_API_KEY": ""})
    assert no_key.exit_code == 2 and "PANUI_API_KEY" in no_key.output


async def _whole_parts_csv(http: httpx.AsyncClient, urls: dict[str, str], key: str) -> str:
    """The CSV as the CLI made it before it streamed: every page of each part, then `combine`."""
    path = f"/v1/incidents/{INCIDENT}"
    minted = await http.post(f"{urls['intake']}{path}/status-ticket", headers={"authorization": f"Bearer {key}"})
    ticket = minted.json()["ticket"]

    async def every(url: str, token: str, field: str) -> list[dict]:
        items, after = [], ""
        while True:
            page = (await http.get(url, params={"after": after, "limit": 3},
                                   headers={"authorization": f"Bearer {token}"})).json()
            items += page[field]
            if page["next_after"] is None:
                return items
            after = page["next_after"]

    return status_csv(combine(
        [IntakeRecordStatus.model_validate(r) for r in await every(
            f"{urls['intake']}{path}/reconciliation/records", key, "records")],
        [DedupeRecordStatus.model_validate(r) for r in await every(
            f"{urls['dedupe']}{path}/reconciliation/records", ticket, "records")],
        [DispatchNoticeStatus.model_validate(n) for n in await every(
            f"{urls['dispatch']}{path}/reconciliation/notices", ticket, "notices")]))


async def _same_as_joining_the_whole_parts(http: httpx.AsyncClient, urls: dict[str, str], key: str,
                                           out: Path) -> None:
    """The streamed CSV (pages of 2, merged stretch by stretch) is byte for byte the CSV of the
    whole parts joined at once. Deliveries may still move (sent → delivered) between the two
    downloads, so both are taken again until they agree on one state."""
    deadline = time.monotonic() + 120
    while True:
        result = await _status(urls, key, out)
        assert result.exit_code == 0, result.output
        # As written: csv's \r\n line ends, which read_text would turn into \n.
        streamed = (await asyncio.to_thread(out.read_bytes)).decode("utf-8")
        whole = await _whole_parts_csv(http, urls, key)
        if streamed == whole:
            return
        assert time.monotonic() < deadline, f"streamed:\n{streamed}\nwhole:\n{whole}"
        await asyncio.sleep(0.5)


async def _isolation(http: httpx.AsyncClient, urls: dict[str, str], keys: dict[str, str]) -> None:
    """A's key and ticket reach A's rows of this incident and nothing else."""
    intake, dedupe, dispatch = urls["intake"], urls["dedupe"], urls["dispatch"]
    key_a = {"authorization": f"Bearer {keys[A]}"}
    minted = await http.post(f"{intake}/v1/incidents/{INCIDENT}/status-ticket", headers=key_a)
    assert minted.status_code == 201 and minted.json()["agency_id"] == A
    ticket_a = {"authorization": f"Bearer {minted.json()['ticket']}"}

    def refused(response: httpx.Response, status: int, code: str) -> None:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code and response.json()["error"]["message"]

    # Another incident: hidden exactly as a missing one, with the key and with the ticket.
    for url, headers in ((f"{intake}/v1/incidents/{OTHER_INCIDENT}/reconciliation/records", key_a),
                         (f"{intake}/v1/incidents/{OTHER_INCIDENT}/status-ticket", key_a),
                         (f"{dedupe}/v1/incidents/{OTHER_INCIDENT}/reconciliation/records", ticket_a),
                         (f"{dispatch}/v1/incidents/{OTHER_INCIDENT}/reconciliation/notices", ticket_a)):
        method = http.post if url.endswith("ticket") else http.get
        refused(await method(url, headers=headers), 404, "incident.not_found")
    # A key is no ticket (dedupe and dispatch know no agency keys), a ticket no key or staff token.
    refused(await http.get(f"{dedupe}/v1/incidents/{INCIDENT}/reconciliation/records",
                           headers=key_a), 401, "auth.invalid")
    refused(await http.post(f"{intake}/v1/incidents/{INCIDENT}/feeds", headers=ticket_a | {
        "content-type": "application/x-ndjson"}, content=ndjson([affected_record("a-9")])),
        401, "auth.invalid")
    refused(await http.get(f"{dedupe}/v1/incidents/{INCIDENT}/reviews", headers=ticket_a),
            401, "auth.invalid")
    refused(await http.get(f"{dedupe}/v1/incidents/{INCIDENT}/reconciliation/records",
                           headers=COORDINATOR), 401, "auth.invalid")
    # The rows a ticket gets are its agency's; no query names another.
    refused(await http.get(f"{dedupe}/v1/incidents/{INCIDENT}/reconciliation/records",
                           params={"agency_id": B}, headers=ticket_a), 422, "request.invalid")
    answer = await http.get(f"{dedupe}/v1/incidents/{INCIDENT}/reconciliation/records",
                            params={"limit": 100}, headers=ticket_a)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["agency_id"] == A and {r["source_record_id"] for r in page["records"]} == {
        r["source_record_id"] for r in A_RECORDS if r["source_record_id"] != "a-rejected"}
    notices = (await http.get(f"{dispatch}/v1/incidents/{INCIDENT}/reconciliation/notices",
                              params={"limit": 100}, headers=ticket_a)).json()["notices"]
    assert len(notices) == 4  # A's four notified persons; B's own two are not there
    # The lookup the CLI uses: A's ticket naming B's own notice gets it left out, as a made-up id.
    minted_b = await http.post(f"{intake}/v1/incidents/{INCIDENT}/status-ticket",
                               headers={"authorization": f"Bearer {keys[B]}"})
    b_records = (await http.get(f"{dedupe}/v1/incidents/{INCIDENT}/reconciliation/records", headers={
        "authorization": f"Bearer {minted_b.json()['ticket']}"})).json()["records"]
    b_only = next(r["notice_id"] for r in b_records if r["source_record_id"] == "b-only")
    assert b_only and b_only not in {n["notice_id"] for n in notices}
    lookup = f"{dispatch}/v1/incidents/{INCIDENT}/reconciliation/notices/lookup"
    looked = await http.post(lookup, headers=ticket_a, json={
        "notice_ids": [b_only, "no-such-notice", *(n["notice_id"] for n in notices)]})
    assert looked.status_code == 200, looked.text
    assert looked.json()["agency_id"] == A and looked.json()["notices"] == notices
    refused(await http.post(lookup, headers=key_a, json={"notice_ids": [b_only]}), 401, "auth.invalid")
    refused(await http.post(f"{dispatch}/v1/incidents/{OTHER_INCIDENT}/reconciliation/notices/lookup",
                            headers=ticket_a, json={"notice_ids": [b_only]}), 404, "incident.not_found")
    refused(await http.post(lookup, headers=ticket_a, json={"notice_ids": ["n"] * 10_001}),
            422, "request.invalid")
    bad = await http.get(f"{dedupe}/v1/incidents/{INCIDENT}/reconciliation/records",
                         params={"limit": 0}, headers=ticket_a)
    assert bad.status_code == 422 and "error" in bad.json()
