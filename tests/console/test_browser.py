"""The coordinator console end to end, in headless Chromium (Debian's `chromium` and
`chromium-driver`, installed by scripts/chromium.sh when missing) driven by Selenium, against
the whole system as processes (testkit/system.py: intake, dedupe, dispatch, both gateways, the
shared Kafka and PostgreSQL).

A small incident: two agencies, three people — one seen by both agencies with the same NHI
(merged without asking), and an uncertain pair ("J Tipene" and "Joseph Tipene", same date of
birth, no NHI) that the resolver keeps apart for review. In the browser the coordinator logs
in, opens the incident, reveals the pair's masked values (audited) and keeps it apart with the
keyboard, edits the incident's content (a new revision), previews the notice for the sample
person in English and te reo, releases with the confirmation dialog, watches the notices be
delivered and previews one person's notice by the code printed on it — word for word the email
the SMTP gateway received; then opens the Privacy Commissioner's report and downloads its PDF
and CSV (read back: the same counts, no personal data). Then a call-centre operator logs in
with a token of that role, finds that person's notice by the code and her date of birth (the
email as sent, its delivery history, the scripted answers, how the public check works), and a
wrong date finds nothing; both lookups are audited. Every number a page shows is checked
against the services' APIs.
Last, the coordinator opens the agencies' reconciliation: each agency's counts by outcome (one
of the lab's records rejected, one withdrawn; the GP's held record) and by channel and delivery
status equal those of the CSV the agency itself downloads with `panui feed status`; the GP's
records page lists its rows by source_record_id as that CSV does, and the page's CSV download is
that very CSV, byte for byte.
Then the lab withdraws Aroha's record after her notice named it: the retraction shows on the
incident page and on its own page, where the coordinator (logged in again) sends a correction
notice (confirmed in a dialog) that reaches the SMTP gateway; the decision is audited.
Screenshots go to var/artifacts/console/.
"""

import asyncio
import csv
import email
import io
import re
import shutil
import subprocess
from email import policy as email_policy

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from typer.testing import CliRunner

from services.cli.main import app as cli
from services.common.references import REFERENCE_PATTERN
from testkit import infra
from testkit.factories import affected_record, incident_body, ndjson
from testkit.rendering import pdf_text
from testkit.staff import SIGNING_KEY
from testkit.staff import token as staff_token
from testkit.system import COORDINATOR_TOKEN, System

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

ARTIFACTS = infra.REPO / "var" / "artifacts" / "console"
DOWNLOADS = ARTIFACTS / "downloads"
COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
J_TIPENE = {"nhi": None, "given_names": "J", "family_name": "Tipene", "date_of_birth": "1988-08-08",
            "email": "j.tipene@example.nz", "mobile": None}
JOSEPH_TIPENE = {"nhi": None, "given_names": "Joseph", "family_name": "Tipene",
                 "date_of_birth": "1988-08-08", "email": None, "mobile": "+64219876543",
                 "data_categories": ["lab_results"]}
EDITED_STEPS = "We shut the portal down and changed every password."
AROHA = {"nhi": "ZZZ0016", "given_names": "Aroha", "family_name": "Testperson",
         "date_of_birth": "1980-04-12", "email": "aroha.testperson@example.nz", "mobile": None}


def _browser() -> webdriver.Chrome:
    found = subprocess.run([str(infra.REPO / "scripts" / "chromium.sh")], capture_output=True,
                           text=True, check=False)
    if found.returncode != 0:
        pytest.fail(f"scripts/chromium.sh could not provide Chromium:\n{found.stderr[-2000:]}")
    chromium, driver = found.stdout.split()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1100"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    # What the console's download buttons save lands here (headless Chromium asks no one).
    shutil.rmtree(DOWNLOADS, ignore_errors=True)
    DOWNLOADS.mkdir(parents=True)
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(DOWNLOADS)})
    return browser


def _text(browser: webdriver.Chrome, css: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, css).text


def _stat(browser: webdriver.Chrome, name: str) -> str:
    return _text(browser, f"#stat-{name} b")


async def _until(browser: webdriver.Chrome, condition, what: str, timeout: float = 90.0):  # noqa: ANN001, ANN202
    """Wait in a thread (the browser blocks) until condition(browser) is truthy."""
    def check(b: webdriver.Chrome):  # noqa: ANN202
        try:
            return condition(b)
        except Exception:  # noqa: BLE001 - an element not rendered yet
            return False
    try:
        return await asyncio.to_thread(WebDriverWait(browser, timeout, poll_frequency=0.3).until, check)
    except Exception as exc:
        raise AssertionError(f"timed out waiting for {what}") from exc


async def _api(client: httpx.AsyncClient, path: str) -> dict | list:
    response = await client.get(path, headers=COORDINATOR)
    assert response.status_code == 200, f"{path}: {response.text}"
    return response.json()


@pytest.fixture
async def system(kafka_bootstrap, pg_admin_url):  # noqa: ANN001, ANN201
    run_dir = ARTIFACTS / "system"  # the processes' logs, kept next to the screenshots
    shutil.rmtree(run_dir, ignore_errors=True)
    # Staff tokens (the call-centre operator's) verify in every service under one signing key.
    running = System(run_dir, kafka_bootstrap=kafka_bootstrap, pg_admin_url=pg_admin_url,
                     env={s: {"PANUI_TOKEN_SIGNING_KEY": SIGNING_KEY} for s in ("intake", "dedupe", "dispatch")})
    try:
        await running.start()
        yield running
    finally:
        await running.close()


@pytest.mark.timeout(600)
async def test_console_follows_an_incident_from_submission_to_delivered(system):
    intake = system.services["intake"].url
    incident_id = "inc-console-e2e"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(base_url=intake, timeout=30) as client:
        made = await client.post("/v1/incidents", headers=COORDINATOR, json=incident_body(
            incident_id, [("gp", "Test GP Practice"), ("lab", "Test Laboratory")],
            release_policy={"settle_window_seconds": 0}))
        assert made.status_code == 201, made.text
        keys = {k["agency_id"]: k["api_key"] for k in made.json()["issued_keys"]}
        feeds = {"gp": [affected_record("gp-1", **J_TIPENE), affected_record("gp-2", **AROHA)],
                 "lab": [affected_record("lab-1", **JOSEPH_TIPENE),
                         affected_record("lab-2", **{**AROHA, "data_categories": ["lab_results"]})]}
        for agency, records in feeds.items():
            sent = await client.post(f"/v1/incidents/{incident_id}/feeds", content=ndjson(records),
                                     headers={"authorization": f"Bearer {keys[agency]}",
                                              "content-type": "application/x-ndjson"})
            assert sent.status_code == 202 and sent.json()["accepted"] == 2, sent.text

        browser = await asyncio.to_thread(_browser)
        try:
            await _run(browser, client, intake, incident_id, system)
            await _retract(browser, client, intake, incident_id, system, keys["lab"])
            await _held(browser, client, incident_id, system, keys["gp"])
            await _reconciliation(browser, client, intake, incident_id, system, keys)
        finally:
            await asyncio.to_thread(browser.quit)


def _words(text: str) -> str:
    return " ".join(text.split())


def _sent_email_text(system: System, reference: str) -> str:
    """The text part of the email the SMTP gateway filed under our reference."""
    for path in sorted([*system.maildir.glob("new/*"), *system.maildir.glob("cur/*")]):
        message = email.message_from_bytes(path.read_bytes(), policy=email_policy.default)
        if message["X-Panui-Reference"] == reference:
            return message.get_body(("plain",)).get_content()
    raise AssertionError(f"no email with reference {reference}")


async def _run(browser: webdriver.Chrome, client: httpx.AsyncClient, intake: str, incident_id: str,
               system: System) -> None:
    dedupe = f"/v1/console/dedupe/v1/incidents/{incident_id}"
    dispatch = f"/v1/console/dispatch/v1/incidents/{incident_id}"

    # Log in: a wrong token is refused, the coordinator's lands on the incident list.
    await asyncio.to_thread(browser.get, f"{intake}/console/")
    await _until(browser, lambda b: b.find_element(By.ID, "token"), "the login form")
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    await _until(browser, lambda b: "Not logged in" in _text(b, "#error"), "the refusal")
    browser.find_element(By.ID, "token").clear()
    browser.find_element(By.ID, "token").send_keys(COORDINATOR_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    row = f'tr[data-incident="{incident_id}"]'
    listed = await _until(browser, lambda b: _text(b, row), "the incident in the list")
    assert "0 / 2" in listed  # no agency complete yet
    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()

    # The incident page: s 117 ticks, agencies and records as dedupe counts them.
    await _until(browser, lambda b: b.find_element(By.CSS_SELECTOR, 'tr[data-agency="lab"] td[data-records="2"]'),
                 "both agencies' records at dedupe")
    marks = [li.get_attribute("data-ok") for li in browser.find_elements(By.CSS_SELECTOR, "#s117 li")]
    assert marks and set(marks) == {"true"}
    review = await _until(browser, lambda b: _stat(b, "in-review") != "0" and _stat(b, "in-review") != "–",
                          "the uncertain pair in review")
    assert review
    progress = await _api(client, dedupe + "/progress")
    assert _stat(browser, "persons") == str(progress["persons"]) == "3"

    # The review queue: the pair side by side, masked; kept apart with the keyboard.
    browser.find_element(By.ID, "open-reviews").click()
    item = await _until(browser, lambda b: b.find_element(By.ID, "review"), "the review item")
    (open_item,) = await _api(client, dedupe + "/reviews")
    assert item.get_attribute("data-review") == open_item["review_id"]
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "Tipene" not in page and "1988" not in page  # values never reach the page
    compared = {r.get_attribute("data-field"): r.get_attribute("data-compared")
                for r in browser.find_elements(By.CSS_SELECTOR, "#comparisons tr[data-field]")}
    assert compared["family"] == "agree" and compared["dob"] == "agree"
    await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "review.png"))
    # Reveal (r): this pair's values, recorded in dedupe's audit log; r again masks them.
    browser.find_element(By.TAG_NAME, "body").send_keys("r")
    await _until(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#side-b table.revealed"), "the values")
    values = {side: {row.get_attribute("data-field"): row.find_element(By.TAG_NAME, "td").text
                     for row in browser.find_elements(By.CSS_SELECTOR, f"#side-{side} tr[data-field]")}
              for side in "ab"}
    assert values["a"]["family_name"] == values["b"]["family_name"] == "Tipene"
    assert {values["a"]["given_names"], values["b"]["given_names"]} == {"J", "Joseph"}
    assert values["a"]["date_of_birth"] == values["b"]["date_of_birth"] == "1988-08-08"
    assert {values["a"]["nhi"], values["b"]["nhi"]} == {"—"}  # neither gave one
    audit = await _api(client, "/v1/console/dedupe/v1/audit")
    assert [e["object_ids"] for e in audit["entries"] if e["action"] == "review.reveal"] == [
        [open_item["review_id"]]]
    await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "review-revealed.png"))
    browser.find_element(By.TAG_NAME, "body").send_keys("r")
    await _until(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, "table.revealed"), "masked again")
    assert "Tipene" not in browser.find_element(By.TAG_NAME, "main").text
    browser.find_element(By.TAG_NAME, "body").send_keys("a")  # keep apart
    await _until(browser, lambda b: b.find_element(By.ID, "review-empty"), "the queue emptied")
    decided = await _api(client, dedupe + "/reviews?status=keep_apart")
    assert [r["review_id"] for r in decided] == [open_item["review_id"]]

    # Release by hand, confirmed in the dialog; then watch the deliveries.
    browser.find_element(By.CSS_SELECTOR, '#main a[href$="/' + incident_id + '"]').click()
    release = await _until(browser, lambda b: b.find_element(By.ID, "release"), "the incident page")
    await _until(browser, lambda b: _stat(b, "in-review") == "0", "the decision applied")

    # Edit the content before release: a new revision, the s 117 ticks still all there.
    before = (await _api(client, f"/v1/incidents/{incident_id}"))["revision"]
    browser.find_element(By.ID, "open-edit").click()
    steps = await _until(browser, lambda b: b.find_element(By.ID, "f-steps_taken"), "the edit form")
    steps.clear()
    steps.send_keys(EDITED_STEPS)
    browser.find_element(By.ID, "save-edit").click()
    await _until(browser, lambda b: f"revision {before + 1}" in _text(b, "h1"), "the new revision")
    edited = await _api(client, f"/v1/incidents/{incident_id}")
    assert (edited["revision"], edited["content"]["steps_taken"]) == (before + 1, EDITED_STEPS)
    assert {li.get_attribute("data-ok") for li in browser.find_elements(By.CSS_SELECTOR, "#s117 li")} == {"true"}

    # The notice preview for the sample person, once dispatch has the new revision.
    browser.find_element(By.ID, "open-preview").click()

    def shows_edit(b: webdriver.Chrome) -> bool:
        b.find_element(By.ID, "preview-lang-en").click()  # loads it again
        return EDITED_STEPS in _text(b, "#preview-email-text")
    await _until(browser, shows_edit, "the preview of the edited content")
    sample = await _api(client, dispatch + "/notice-preview?language=en")
    await _until(browser, lambda b: _words(_text(b, "#preview-email-text")) == _words(sample["email_text"]),
                 "the sample email as dispatch renders it")
    assert _text(browser, "#preview-email-subject") == sample["email_subject"]
    assert _words(_text(browser, "#preview-sms")) == _words(sample["sms"])
    shown = browser.find_element(By.ID, "preview-sms-segments").get_attribute("data-segments")
    assert shown == str(sample["sms_segments"]) and 1 <= sample["sms_segments"] <= 3
    browser.switch_to.frame(browser.find_element(By.ID, "preview-email-html"))
    try:
        assert EDITED_STEPS in browser.find_element(By.TAG_NAME, "body").text
    finally:
        browser.switch_to.default_content()
    await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "preview.png"))
    browser.find_element(By.ID, "preview-lang-mi").click()
    await _until(browser, lambda b: b.find_element(By.CSS_SELECTOR, '#preview[data-language="mi"]'), "te reo")
    mi = await _api(client, dispatch + "/notice-preview?language=mi")
    assert _words(_text(browser, "#preview-email-text")) == _words(mi["email_text"]) != _words(sample["email_text"])
    # No te reo templates in this incident: the page says the bundled wrapper is used.
    assert browser.find_element(By.ID, "templates-mi-status").get_attribute("data-status") == "none"
    assert mi["templates_mi_fingerprint"] is None

    browser.find_element(By.CSS_SELECTOR, '#main a[href$="/' + incident_id + '"]').click()
    release = await _until(browser, lambda b: b.find_element(By.ID, "release"), "the incident page")
    release.click()
    browser.find_element(By.ID, "release-confirm").click()
    # Dispatch has the three notices out: the SMS receipted as delivered, the two emails
    # accepted by the SMTP gateway ("sent": the local gateway sends no delivery receipts).
    async with asyncio.timeout(180):
        while True:
            summary = await _api(client, dispatch + "/deliveries/summary")
            done = sum(n for statuses in summary["by_channel"].values()
                       for status, n in statuses.items() if status in ("sent", "delivered"))
            if done == 3 and summary["by_channel"].get("sms", {}).get("delivered") == 1:
                break
            await asyncio.sleep(0.5)
    assert summary["by_channel"] == {"email": {"sent": 2}, "sms": {"delivered": 1}}
    progress = await _api(client, dedupe + "/progress")
    await _until(browser, lambda b: _stat(b, "delivered") == "1" and _stat(b, "notified") == "3",
                 "the page to catch up")
    assert (progress["persons"], progress["notified"], progress["release_reason"]) == (3, 3, "manual")
    assert _stat(browser, "persons") == "3"
    assert _stat(browser, "notices") == str(summary["notices"]) == "3"
    assert _stat(browser, "sent") == "2"
    assert _stat(browser, "failed") == "0" and _stat(browser, "unreachable") == "0"
    for channel, statuses in summary["by_channel"].items():
        for status in ("sent", "delivered", "permanent-failure"):
            cell = browser.find_element(By.CSS_SELECTOR, f'tr[data-channel="{channel}"] td[data-status="{status}"]')
            assert cell.text == str(statuses.get(status, 0)), (channel, status)
    lag = await _api(client, "/v1/ops/lag")
    shown = {r.get_attribute("data-group") for r in browser.find_elements(By.CSS_SELECTOR, "#lag tr[data-group]")}
    assert shown == {g["group"] for g in lag["groups"]}
    assert browser.find_element(By.ID, "release").get_attribute("disabled") is not None
    await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "incident.png"))

    # The unreachable list through the pass-through keeps dispatch's CSV and its headers.
    csv = await client.get(dispatch + "/unreachable.csv", headers=COORDINATOR)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["content-disposition"] == f'attachment; filename="{incident_id}-unreachable.csv"'

    # One person's notice by the code printed on it: the email exactly as the gateway got it,
    # with the edited content; the preview is in dispatch's audit log.
    [(_, reference, _)] = [e for e in system.emails() if e[0] == AROHA["email"]]
    notice_id = reference.rsplit(":", 1)[0]
    sent = _sent_email_text(system, reference)
    # The code as printed (keyed by the incident's data key: only the notice itself says it).
    code = re.search(REFERENCE_PATTERN.strip("^$"), sent).group(0)
    browser.find_element(By.ID, "open-preview").click()
    box = await _until(browser, lambda b: b.find_element(By.ID, "preview-reference"), "the preview page")
    box.send_keys(code)
    browser.find_element(By.CSS_SELECTOR, "#preview-by-reference button").click()
    await _until(browser, lambda b: "as it was sent" in _text(b, "#preview-who"), "the notice by its code")
    assert EDITED_STEPS in sent
    assert _words(_text(browser, "#preview-email-text")) == _words(sent)
    assert notice_id in _text(browser, "#preview-who")
    assert browser.find_elements(By.ID, "preview-no-sms")  # Aroha gave no mobile
    audit = await _api(client, "/v1/console/dispatch/v1/audit")
    assert [e["object_ids"] for e in audit["entries"] if e["action"] == "notice.preview"] == [[notice_id]]
    await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "preview-notice.png"))

    await _report(browser, client, incident_id)
    await _call_centre(browser, client, incident_id, code, notice_id, sent)
    for name in ("incident.png", "review.png", "review-revealed.png", "preview.png", "preview-notice.png",
                 "report.png", "call-centre.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000


PERSONAL = ("Aroha", "Testperson", "Tipene", "Joseph", "1980-04-12", "1988-08-08", "@example.nz",
            "+6421", "ZZZ0016")


async def _downloaded(name: str) -> bytes:
    path = DOWNLOADS / name
    async with asyncio.timeout(60):
        while not path.exists() or path.stat().st_size == 0 or list(DOWNLOADS.glob("*.crdownload")):
            await asyncio.sleep(0.2)
    return path.read_bytes()


async def _report(browser: webdriver.Chrome, client: httpx.AsyncClient, incident_id: str) -> None:
    """The Privacy Commissioner's report page: its counts are the combined report's (intake's
    with dedupe's and dispatch's parts), which says what the incident did; PDF and CSV download."""
    browser.find_element(By.CSS_SELECTOR, '#main a[href$="/' + incident_id + '"]').click()
    await _until(browser, lambda b: b.find_element(By.ID, "open-report"), "the incident page")
    browser.find_element(By.ID, "open-report").click()
    await _until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#report-incident tr[data-measure]"), "the report")
    combined = await _api(client, f"/v1/incidents/{incident_id}/commissioner-report")
    count = {(c["measure"], c["service"], c["agency_id"]): c["value"] for c in combined["counts"]}
    assert count[("records.received", "intake", None)] == 4
    assert (count[("records.received", "intake", "gp")], count[("records.received", "intake", "lab")]) == (2, 2)
    assert count[("persons.resolved", "dedupe", None)] == 3
    assert count[("persons.notified", "dedupe", None)] == count[("persons.notified", "dispatch", None)] == 3
    assert count[("reviews.decided.keep_apart", "dedupe", None)] == 1
    assert (count[("deliveries.email.sent", "dispatch", None)], count[("deliveries.sms.delivered", "dispatch", None)]) == (2, 1)
    shown = sorted((r.get_attribute("data-measure"), r.get_attribute("data-service"),
                    int(r.find_element(By.CSS_SELECTOR, "td[data-value]").get_attribute("data-value")))
                   for r in browser.find_elements(By.CSS_SELECTOR, "#report-incident tr[data-measure]"))
    assert shown == sorted((c["measure"], c["service"], c["value"]) for c in combined["counts"] if c["agency_id"] is None)
    cells = browser.find_elements(By.CSS_SELECTOR, "#report-agencies td[data-agency]")
    assert {c.get_attribute("data-agency") for c in cells} == {"gp", "lab"}
    for cell in cells:
        row = cell.find_element(By.XPATH, "..")
        key = (row.get_attribute("data-measure"), row.get_attribute("data-service"), cell.get_attribute("data-agency"))
        assert cell.get_attribute("data-value") == (str(count[key]) if key in count else ""), key
    milestones = {r.get_attribute("data-milestone") for r in browser.find_elements(By.CSS_SELECTOR, "#report-milestones tr")}
    assert {"incident.created", "release", "deliveries.first_sent"} <= milestones
    page = browser.find_element(By.TAG_NAME, "main").text
    assert not [p for p in PERSONAL if p in page]
    await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "report.png"))
    browser.find_element(By.ID, "report-pdf").click()
    pdf = await _downloaded(f"{incident_id}-commissioner-report.pdf")
    words = " ".join(pdf_text(pdf, layout=True).split())
    assert pdf.startswith(b"%PDF-") and f"Incident {incident_id}" in words
    assert "records.received intake 4" in words and "persons.resolved dedupe 3" in words
    assert "deliveries.sms.delivered dispatch 1" in words
    assert not [p for p in PERSONAL if p in words]
    browser.find_element(By.ID, "report-csv").click()
    csv = (await _downloaded(f"{incident_id}-commissioner-report.csv")).decode()
    assert f"{incident_id},count,gp,records.received,2,intake" in csv.splitlines()
    assert not [p for p in PERSONAL if p in csv]


async def _call_centre(browser: webdriver.Chrome, client: httpx.AsyncClient, incident_id: str,
                       code: str, notice_id: str, sent: str) -> None:
    operator, _ = staff_token(["call-centre"], name="cc-operator")
    browser.find_element(By.ID, "logout").click()
    await _until(browser, lambda b: b.find_element(By.ID, "token"), "the login form")
    browser.find_element(By.ID, "token").send_keys(operator)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    await _until(browser, lambda b: b.find_element(By.ID, "cc-form"), "the call-centre page")
    # Its only page: the coordinator's links are hidden and their routes lead back here.
    assert not browser.find_element(By.CSS_SELECTOR, '#nav a[href="#/incidents"]').is_displayed()
    browser.execute_script("document.getElementById('cc-form').dataset.old = 'yes'")  # this render
    browser.execute_script(f"location.hash = '#/incident/{incident_id}'")
    await _until(browser, lambda b: "#/call-centre" in b.current_url
                 and b.find_element(By.ID, "cc-form").get_attribute("data-old") is None,
                 "the coordinator page refused, the call centre's drawn again")
    answers = [a["id"] for a in (await _api(client, "/v1/console/dispatch/v1/call-centre/answers"))["answers"]]
    assert len(answers) == 9  # eight, and the answer about a correction notice (retractions)
    await _until(browser, lambda b: [d.get_attribute("data-answer") for d in
                                     b.find_elements(By.CSS_SELECTOR, "#scripted-answers details")] == answers,
                 "the scripted answers")

    async def look_up(dob: str) -> None:
        for field, value in (("cc-incident", incident_id), ("cc-reference", code)):
            box = browser.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        # A date input types in the browser's locale: set the ISO value it submits instead.
        browser.execute_script("arguments[0].value = arguments[1]", browser.find_element(By.ID, "cc-dob"), dob)
        browser.find_element(By.ID, "cc-lookup").click()

    await look_up(AROHA["date_of_birth"])
    result = await _until(browser, lambda b: b.find_element(By.ID, "lookup-result"), "Aroha's notice")
    assert result.get_attribute("data-notice") == notice_id
    assert _words(_text(browser, "#lookup-sent-email")) == _words(sent)  # what the gateway got
    assert browser.find_element(By.ID, "cc-dob").get_attribute("value") == ""  # not kept
    statuses = [(r.get_attribute("data-channel"), r.get_attribute("data-status"))
                for r in browser.find_elements(By.CSS_SELECTOR, "#lookup-deliveries tr[data-channel]")]
    assert statuses == [("email", "sent")]
    history = [(r.get_attribute("data-channel"), r.get_attribute("data-status"))
               for r in browser.find_elements(By.CSS_SELECTOR, "#lookup-history tr[data-channel]")]
    assert ("email", "sent") in history
    assert [r.get_attribute("data-version") for r in browser.find_elements(By.CSS_SELECTOR, "#lookup-versions tr[data-version]")] == ["1"]
    assert browser.find_elements(By.ID, "lookup-reachable")
    agencies = _text(browser, "#lookup-agencies")
    assert "Test GP Practice" in agencies and "Test Laboratory" in agencies
    # How the public check works, with the address the notices tell people to type.
    assert _text(browser, "#check-address") == "breach.example.nz"
    assert browser.find_element(By.ID, "check-link").get_attribute("href") == "https://breach.example.nz/"
    await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "call-centre.png"))

    await look_up("1980-04-13")  # a day out: nothing, and nothing of hers stays on the page
    await _until(browser, lambda b: b.find_element(By.ID, "lookup-none"), "no notice found")
    assert not browser.find_elements(By.ID, "lookup-result")
    assert "Aroha" not in browser.find_element(By.TAG_NAME, "main").text
    audit = await _api(client, "/v1/console/dispatch/v1/audit")
    lookups = [(e["actor"], e["object_ids"]) for e in audit["entries"] if e["action"] == "notice.lookup"]
    assert sorted(lookups) == sorted([("cc-operator", [notice_id, "found", "verified:date-of-birth"]),
                                      ("cc-operator", ["-", "not-found", "verified:date-of-birth"])])


async def _retract(browser: webdriver.Chrome, client: httpx.AsyncClient, intake: str,
                   incident_id: str, system: System, lab_key: str) -> None:
    dedupe = f"/v1/console/dedupe/v1/incidents/{incident_id}"
    withdrawn = await client.delete(f"/v1/incidents/{incident_id}/records/lab-2",
                                    headers={"authorization": f"Bearer {lab_key}"})
    assert withdrawn.status_code == 200, withdrawn.text
    # The call-centre operator logged in last: the coordinator logs in again.
    browser.find_element(By.ID, "logout").click()
    await _until(browser, lambda b: b.find_element(By.ID, "token"), "the login form")
    browser.find_element(By.ID, "token").send_keys(COORDINATOR_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    await _until(browser, lambda b: b.find_element(By.CSS_SELECTOR, f'tr[data-incident="{incident_id}"]'),
                 "the incident list")
    await asyncio.to_thread(browser.get, f"{intake}/console/#/incident/{incident_id}")
    # The review queue is refreshed every 30 s at most (dedupe's review_sync_interval_s).
    await _until(browser, lambda b: _stat(b, "retractions") == "1", "the retraction counted",
                 timeout=120)
    browser.find_element(By.ID, "open-retractions").click()
    card = await _until(browser, lambda b: b.find_element(
        By.CSS_SELECTOR, '.retraction[data-status="open"]'), "the retraction")
    (item,) = [i for i in await _api(client, dedupe + "/reviews") if i["kind"] == "retraction"]
    assert card.get_attribute("data-review") == item["review_id"]
    assert card.find_element(By.CSS_SELECTOR, "td.withdrawn").text == "lab"
    assert card.find_element(By.CSS_SELECTOR, "td.standing").text == "gp"
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "Aroha" not in page and AROHA["email"] not in page  # agencies and ids only
    card.find_element(By.CSS_SELECTOR, "button.send-correction").click()
    browser.find_element(By.ID, "correction-confirm").click()
    link = await _until(browser, lambda b: b.find_element(
        By.CSS_SELECTOR, '.retraction[data-status="send_correction"] a.correction-notice'),
        "the decision and its correction notice")
    notice_id = link.text
    await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "retraction.png"))
    async with asyncio.timeout(120):
        while not [e for e in system.emails() if e[0] == AROHA["email"]
                   and e[1].startswith(notice_id + ":")]:
            await asyncio.sleep(0.5)
    [(_, reference, _)] = [e for e in system.emails() if e[0] == AROHA["email"]
                           and e[1].startswith(notice_id + ":")]
    sent = _sent_email_text(system, reference)
    assert "Test Laboratory was not involved" in sent and "Test GP Practice" in sent
    audit = await _api(client, "/v1/console/dedupe/v1/audit")
    assert [e["object_ids"] for e in audit["entries"] if e["action"] == "review.decide"][-1] == [
        item["review_id"], "send_correction"]


async def _held(browser: webdriver.Chrome, client: httpx.AsyncClient, incident_id: str,
                system: System, gp_key: str) -> None:
    """A hold after the notice, on the whole path: the GP sends another record of Aroha's under
    an s 116 hold; dedupe holds her (nothing more goes to her) and says so on notices.v1;
    the operator looking up her notice sees "held — do not disclose" first, and never why."""
    held = affected_record("gp-3", **{**AROHA, "data_categories": ["referral_letters"]},
                           hold={"reason": "health_prejudice", "note": "practitioner's judgement"})
    fed = await client.post(f"/v1/incidents/{incident_id}/feeds", content=ndjson([held]),
                            headers={"authorization": f"Bearer {gp_key}",
                                     "content-type": "application/x-ndjson"})
    assert fed.status_code == 202 and fed.json()["accepted"] == 1, fed.text
    [(_, reference, _)] = [e for e in system.emails() if e[0] == AROHA["email"]][:1]
    code = re.search(REFERENCE_PATTERN.strip("^$"), _sent_email_text(system, reference)).group(0)
    operator, _ = staff_token(["call-centre"], name="cc-operator")
    browser.find_element(By.ID, "logout").click()
    await _until(browser, lambda b: b.find_element(By.ID, "token"), "the login form")
    browser.find_element(By.ID, "token").send_keys(operator)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    await _until(browser, lambda b: b.find_element(By.ID, "cc-form"), "the call-centre page")
    async with asyncio.timeout(120):  # the hold travels intake → dedupe → notices.v1 → dispatch
        while True:
            for field, value in (("cc-incident", incident_id), ("cc-reference", code)):
                box = browser.find_element(By.ID, field)
                box.clear()
                box.send_keys(value)
            browser.execute_script("arguments[0].value = arguments[1]",
                                   browser.find_element(By.ID, "cc-dob"), AROHA["date_of_birth"])
            browser.find_element(By.ID, "cc-lookup").click()
            await _until(browser, lambda b: b.find_element(By.ID, "lookup-result"), "her notice")
            if browser.find_elements(By.ID, "lookup-held"):
                break
            await asyncio.sleep(2.0)
    warning = _text(browser, "#lookup-held")
    assert "Held under s 116 — do not disclose" in warning and "Do not disclose" in warning
    page = browser.find_element(By.TAG_NAME, "main").text
    # Never the ground or the note ("written by health professionals" is a category's label).
    assert "prejudice" not in page.lower() and "practitioner" not in page.lower()
    assert "judgement" not in page
    assert "referral" not in page.lower()  # the held record's part is nowhere on the page
    first = browser.find_element(By.CSS_SELECTOR, "#lookup-result > section")
    assert first.get_attribute("id") == "lookup-held"  # before anything to read out
    await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "call-centre-held.png"))



def _csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


async def _reconciliation(browser: webdriver.Chrome, client: httpx.AsyncClient, intake: str,
                          incident_id: str, system: System, keys: dict[str, str]) -> None:
    """The coordinator's view of each agency's reconciliation is the agency's own: the counts
    of what `panui feed status` writes for it, its rows, and that CSV itself."""
    rejected = affected_record("lab-3", **{**JOSEPH_TIPENE, "hold": {"reason": "whim"}})  # unknown ground
    fed = await client.post(f"/v1/incidents/{incident_id}/feeds", content=ndjson([rejected]),
                            headers={"authorization": f"Bearer {keys['lab']}",
                                     "content-type": "application/x-ndjson"})
    assert fed.status_code == 202 and fed.json()["accepted"] == 0, fed.text
    own: dict[str, str] = {}
    for agency, key in keys.items():  # each agency's own download, with its own key
        out = ARTIFACTS / f"{agency}-status.csv"
        result = await asyncio.to_thread(CliRunner().invoke, cli, [
            "feed", "status", "--incident", incident_id, "--out", str(out), "--url", intake,
            "--dedupe-url", system.services["dedupe"].url,
            "--dispatch-url", system.services["dispatch"].url], env={"PANUI_API_KEY": key})
        assert result.exit_code == 0, result.output
        own[agency] = out.read_bytes().decode()  # as written: csv rows end "\r\n"
    rows = {agency: _csv_rows(text) for agency, text in own.items()}
    outcomes = {agency: {r["source_record_id"]: r["outcome"] for r in agency_rows}
                for agency, agency_rows in rows.items()}
    assert outcomes == {"gp": {"gp-1": "notified", "gp-2": "notified", "gp-3": "held"},
                        "lab": {"lab-1": "notified", "lab-2": "withdrawn", "lab-3": "rejected"}}

    browser.find_element(By.ID, "logout").click()
    await _until(browser, lambda b: b.find_element(By.ID, "token"), "the login form")
    browser.find_element(By.ID, "token").send_keys(COORDINATOR_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    await _until(browser, lambda b: b.find_element(By.CSS_SELECTOR, f'tr[data-incident="{incident_id}"]'),
                 "the incident list")
    await asyncio.to_thread(browser.get, f"{intake}/console/#/incident/{incident_id}")
    await _until(browser, lambda b: b.find_element(By.ID, "open-reconciliation"), "the incident page")
    browser.find_element(By.ID, "open-reconciliation").click()
    await _until(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, '#recon-agencies td[data-count="records"]')) == 2,
                 "both agencies' counts")
    channels_seen = set()
    for agency, agency_rows in rows.items():
        shown = {c.get_attribute("data-count"): c.text for c in browser.find_elements(
            By.CSS_SELECTOR, f'#recon-agencies tr[data-agency="{agency}"] td[data-count]')}
        want = {o: str(sum(r["outcome"] == o for r in agency_rows)) for o in
                ("rejected", "withdrawn", "received", "pending", "in_review", "held", "notified", "unreachable")}
        assert shown == {**want, "records": str(len(agency_rows)),
                         "merged": str(sum(r["merged_with_other_agencies"] != "0" for r in agency_rows))}, agency
        deliveries: dict[tuple[str, str], int] = {}
        for r in agency_rows:
            for channel, status in zip(r["channels"].split(";"), r["delivery_status"].split(";"), strict=True):
                if channel:
                    deliveries[(channel, status)] = deliveries.get((channel, status), 0) + 1
        assert {(d.get_attribute("data-channel"), d.get_attribute("data-status")):
                int(d.find_element(By.CSS_SELECTOR, "td[data-value]").get_attribute("data-value"))
                for d in browser.find_elements(By.CSS_SELECTOR, f'#recon-deliveries tr[data-agency="{agency}"]')
                } == deliveries, agency
        channels_seen |= {channel for channel, _ in deliveries}
    assert channels_seen == {"email", "sms"}  # the GP's emails, the lab's SMS
    page = browser.find_element(By.TAG_NAME, "main").text
    assert not [p for p in PERSONAL if p in page]
    await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "reconciliation.png"))

    # The GP's rows by its own record ids, as in its CSV; then the page's CSV is that CSV.
    browser.find_element(By.CSS_SELECTOR, '#recon-agencies tr[data-agency="gp"] a.recon-records').click()
    await _until(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#recon-records tr[data-record]")) == 3,
                 "the GP's records")
    listed = [(r.get_attribute("data-record"), r.get_attribute("data-outcome"),
               r.find_element(By.CSS_SELECTOR, "td.reference").text)
              for r in browser.find_elements(By.CSS_SELECTOR, "#recon-records tr[data-record]")]
    assert listed == [(r["source_record_id"], r["outcome"], r["notice_reference"]) for r in rows["gp"]]
    assert all(re.fullmatch(REFERENCE_PATTERN, ref) for _, outcome, ref in listed if outcome == "notified")
    assert not browser.find_element(By.ID, "recon-more").is_displayed()  # one page holds them
    paged, after = [], ""  # the API behind it, a row at a time: the same rows, then the end
    while after is not None:
        page = await _api(client, f"/v1/incidents/{incident_id}/agencies/gp/reconciliation/records"
                                  f"?limit=1&after={after}")
        paged, after = paged + page["rows"], page["next_after"]
    assert [(r["source_record_id"], r["outcome"]) for r in paged] == [
        (r["source_record_id"], r["outcome"]) for r in rows["gp"]]
    page = browser.find_element(By.TAG_NAME, "main").text
    assert not [p for p in PERSONAL if p in page]
    await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "reconciliation-records.png"))
    browser.find_element(By.ID, "recon-csv").click()
    downloaded = (await _downloaded(f"{incident_id}-gp-status.csv")).decode()
    assert downloaded == own["gp"]
    # Asked through the console, audited as the coordinator's, naming the agency and the view.
    audit = await _api(client, "/v1/audit")
    views = [e["object_ids"][1:] for e in audit["entries"] if e["action"] == "reconciliation.view"]
    assert ["gp", "records"] in views and ["gp", "csv"] in views and ["lab", "summary"] in views
