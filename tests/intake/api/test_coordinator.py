"""The coordinator's side: incidents, enrolment, API keys shown once and stored as a hash."""

import copy
import hashlib
import uuid

import pytest

from services.common.messages import decode_incident
from testkit import infra
from testkit.factories import affected_record, incident_body, ndjson

from .conftest import COORDINATOR, agency_headers

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _incident_id() -> str:
    return f"inc-{uuid.uuid4().hex[:8]}"


async def test_create_incident_issues_keys_and_publishes_it(intake):
    incident_id = _incident_id()
    body = incident_body(incident_id, [("gp-a", "GP A"), ("lab-b", "Lab B")])
    response = await intake.client.post("/v1/incidents", headers=COORDINATOR, json=body)
    assert response.status_code == 201, response.text
    view = response.json()
    assert view["incident_id"] == incident_id
    assert view["content"]["contact"]["web_address"] == "breach.example.nz"
    assert {a["agency_id"] for a in view["agencies"]} == {"gp-a", "lab-b"}
    assert {k["agency_id"] for k in view["issued_keys"]} == {"gp-a", "lab-b"}
    assert all(k["api_key"].startswith("pk_") for k in view["issued_keys"])

    # GET shows the incident but never the keys again.
    got = await intake.client.get(f"/v1/incidents/{incident_id}", headers=COORDINATOR)
    assert got.status_code == 200
    assert got.json()["issued_keys"] == []

    async with infra.topic_reader(intake.kafka_bootstrap, intake.incidents_topic) as reader:
        await reader.wait_for(lambda ms: any(
            m.key == incident_id.encode() and decode_incident(m.value).expected_agency_ids
            and len(decode_incident(m.value).expected_agency_ids) == 2 for m in ms))
        latest = [decode_incident(m.value) for m in reader.messages if m.key == incident_id.encode()][-1]
    assert latest.expected_agency_ids == ["gp-a", "lab-b"]
    assert latest.content.privacy_commissioner_notified is True


async def test_free_text_above_the_plain_language_grade_is_warned_about_not_refused(intake):
    incident_id = _incident_id()
    body = copy.deepcopy(incident_body(incident_id, []))
    body["content"]["steps_taken"] = (
        "Notwithstanding the aforementioned unauthorised exfiltration, organisational "
        "remediation encompassing comprehensive credential rotation was instituted "
        "expeditiously in accordance with contractual obligations.")
    body["content"]["mitigation_advice"] = [
        "Be careful with calls and texts about this.",
        "Subsequently, individuals should contemplate implementing additional authentication "
        "mechanisms across associated organisational accounts immediately.",
    ]
    response = await intake.client.post("/v1/incidents", headers=COORDINATOR, json=body)
    assert response.status_code == 201, response.text
    warnings = response.json()["warnings"]
    assert [(w["code"], w["field"]) for w in warnings] == [
        ("content.reading_grade", "steps_taken"), ("content.reading_grade", "mitigation_advice[1]")]
    assert all(w["grade"] > w["max_grade"] == 8.0 for w in warnings)
    assert "Notwithstanding" not in warnings[0]["message"]  # names the field, never echoes it
    got = await intake.client.get(f"/v1/incidents/{incident_id}", headers=COORDINATOR)
    assert got.json()["warnings"] == warnings
    plain = incident_body(_incident_id(), [])
    assert (await intake.client.post("/v1/incidents", headers=COORDINATOR,
                                     json=plain)).json()["warnings"] == []


async def test_te_reo_templates_are_approved_only_as_previewed(intake):
    from services.common.messages import templates_fingerprint

    incident_id = _incident_id()
    body = copy.deepcopy(incident_body(incident_id, []))
    templates = {"email_text": "Tēnā koe {{ reference_code }}"}
    body["content"]["templates_mi"] = templates
    body["content"]["templates_mi_approved"] = templates_fingerprint(templates)
    created = (await intake.client.post("/v1/incidents", headers=COORDINATOR, json=body)).json()
    assert created["content"]["templates_mi_approved"] is None  # never approved at creation
    url = f"/v1/incidents/{incident_id}/templates-mi/approval"
    wrong = await intake.client.post(url, headers=COORDINATOR, json={"fingerprint": "0" * 64})
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "templates_mi.changed"
    bad = await intake.client.post(url, headers=COORDINATOR, json={"fingerprint": "x"})
    assert bad.status_code == 422
    right = await intake.client.post(url, headers=COORDINATOR,
                                     json={"fingerprint": templates_fingerprint(templates)})
    assert right.status_code == 200, right.text
    assert right.json()["content"]["templates_mi_approved"] == templates_fingerprint(templates)
    assert right.json()["revision"] == created["revision"] + 1
    missing = await intake.client.post("/v1/incidents/inc-none/templates-mi/approval",
                                       headers=COORDINATOR, json={"fingerprint": "0" * 64})
    assert missing.status_code == 404
    async with infra.topic_reader(intake.kafka_bootstrap, intake.incidents_topic) as reader:
        await reader.wait_for(lambda ms: any(
            m.key == incident_id.encode()
            and decode_incident(m.value).content.templates_mi_approved for m in ms))


async def test_editing_the_content_publishes_a_new_revision_and_is_on_record(intake):
    """The console's edit: made from a revision (a stale one is refused, nothing lost), the te
    reo approval kept only for the very templates approved, audited, published for dispatch."""
    from services.common.messages import templates_fingerprint

    incident_id = _incident_id()
    body = copy.deepcopy(incident_body(incident_id, [("gp-e", "GP E")]))
    templates = {"email_text": "Tēnā koe {{ reference_code }}"}
    body["content"]["templates_mi"] = templates
    created = (await intake.client.post("/v1/incidents", headers=COORDINATOR, json=body)).json()
    approved = await intake.client.post(f"/v1/incidents/{incident_id}/templates-mi/approval",
                                        headers=COORDINATOR,
                                        json={"fingerprint": templates_fingerprint(templates)})
    revision = approved.json()["revision"]
    assert revision == created["revision"] + 1
    url = f"/v1/incidents/{incident_id}/content"
    content = copy.deepcopy(body["content"]) | {"steps_taken": "We locked the server."}
    edited = await intake.client.put(url, headers=COORDINATOR, json={
        "revision": revision, "title": "Edited title", "content": content})
    assert edited.status_code == 200, edited.text
    view = edited.json()
    assert (view["revision"], view["title"], view["content"]["steps_taken"]) == (
        revision + 1, "Edited title", "We locked the server.")
    assert view["content"]["templates_mi_approved"] == templates_fingerprint(templates)  # same
    # Made from the old revision: refused, the first edit stands.
    stale = await intake.client.put(url, headers=COORDINATOR, json={
        "revision": revision, "title": "Lost?", "content": content})
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "incident.revision_conflict"
    # The te reo templates changed: the approval no longer holds (whatever the body says).
    changed = copy.deepcopy(content)
    changed["templates_mi"] = {"email_text": "Kia ora {{ reference_code }}"}
    changed["templates_mi_approved"] = templates_fingerprint(changed["templates_mi"])
    again = await intake.client.put(url, headers=COORDINATOR, json={
        "revision": revision + 1, "title": "Edited title", "content": changed})
    assert again.status_code == 200, again.text
    assert again.json()["content"]["templates_mi_approved"] is None
    got = (await intake.client.get(f"/v1/incidents/{incident_id}", headers=COORDINATOR)).json()
    assert (got["revision"], got["title"]) == (revision + 2, "Edited title")
    for wrong, status in ((incident_id.replace("inc-", "inc-none-"), 404),):
        missing = await intake.client.put(f"/v1/incidents/{wrong}/content", headers=COORDINATOR,
                                          json={"revision": 1, "title": "x", "content": content})
        assert missing.status_code == status
    invalid = await intake.client.put(url, headers=COORDINATOR, json={
        "revision": "3", "title": "x", "content": content})
    assert invalid.status_code == 422
    no_advice = copy.deepcopy(content) | {"mitigation_advice": []}
    assert (await intake.client.put(url, headers=COORDINATOR, json={
        "revision": revision + 2, "title": "x", "content": no_advice})).status_code == 422
    audit = (await intake.client.get("/v1/audit", headers=COORDINATOR)).json()["entries"]
    assert [(e["action"], e["object_ids"]) for e in audit if e["incident_id"] == incident_id
            and e["action"] == "incident.edit"] == [
        ("incident.edit", [f"revision:{revision + 1}"]), ("incident.edit", [f"revision:{revision + 2}"])]
    async with infra.topic_reader(intake.kafka_bootstrap, intake.incidents_topic) as reader:
        await reader.wait_for(lambda ms: any(
            m.key == incident_id.encode() and decode_incident(m.value).revision == revision + 2
            and decode_incident(m.value).title == "Edited title"
            and decode_incident(m.value).content.steps_taken == "We locked the server."
            and decode_incident(m.value).content.templates_mi_approved is None for m in ms))


async def test_a_dry_run_is_set_at_creation_and_travels_in_the_incident_message(intake):
    incident_id = _incident_id()
    body = incident_body(incident_id, []) | {"dry_run": True}
    created = await intake.client.post("/v1/incidents", headers=COORDINATOR, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["dry_run"] is True
    listed = (await intake.client.get("/v1/incidents", headers=COORDINATOR)).json()
    assert next(i for i in listed if i["incident_id"] == incident_id)["dry_run"] is True
    # An edit of the content keeps it (it is fixed at creation).
    edited = await intake.client.put(f"/v1/incidents/{incident_id}/content", headers=COORDINATOR,
                                     json={"revision": 1, "title": "Rehearsal",
                                           "content": body["content"]})
    assert edited.status_code == 200 and edited.json()["dry_run"] is True
    plain = incident_body(_incident_id(), [])
    assert (await intake.client.post("/v1/incidents", headers=COORDINATOR,
                                     json=plain)).json()["dry_run"] is False
    lax = incident_body(_incident_id(), []) | {"dry_run": "yes"}
    assert (await intake.client.post("/v1/incidents", headers=COORDINATOR, json=lax)).status_code == 422
    async with infra.topic_reader(intake.kafka_bootstrap, intake.incidents_topic) as reader:
        await reader.wait_for(lambda ms: any(
            m.key == incident_id.encode() and decode_incident(m.value).revision == 2
            and decode_incident(m.value).dry_run is True for m in ms))
        assert all(decode_incident(m.value).dry_run is False for m in reader.messages
                   if m.key == plain["incident_id"].encode())


async def test_duplicate_incident_is_409(intake):
    body = incident_body(_incident_id(), [])
    assert (await intake.client.post("/v1/incidents", headers=COORDINATOR, json=body)).status_code == 201
    again = await intake.client.post("/v1/incidents", headers=COORDINATOR, json=body)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "incident.exists"


@pytest.mark.parametrize("mutate", [
    lambda b: b["content"].pop("contact"),
    lambda b: b["content"].pop("privacy_commissioner_notified"),
    lambda b: b["content"].update(mitigation_advice=[]),
    lambda b: b["content"].update(never_ask=[]),
    lambda b: b["content"]["contact"].update(web_address="breach.example.nz/a\x85b"),
    lambda b: b["content"]["contact"].update(web_address="https://click.example.nz/<x>"),
    lambda b: b["content"].update(breach_description=""),
    lambda b: b.update(incident_id="has spaces"),
    lambda b: b.update(unexpected="field"),
], ids=["no-contact", "no-commissioner", "no-advice", "no-never-ask", "non-ascii-address",
        "link-not-address", "empty-description",
        "bad-id", "extra-field"])
async def test_invalid_incident_content_is_422(intake, mutate):
    body = copy.deepcopy(incident_body(_incident_id(), []))
    mutate(body)
    response = await intake.client.post("/v1/incidents", headers=COORDINATOR, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "request.invalid"


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer not-the-token"},
                                     {"authorization": "Basic abc"}])
async def test_coordinator_endpoints_need_the_token(intake, headers):
    body = incident_body(_incident_id(), [])
    response = await intake.client.post("/v1/incidents", headers=headers, json=body)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] in {"auth.missing", "auth.invalid"}
    assert (await intake.client.get("/v1/incidents/x", headers=headers)).status_code == 401


async def test_agency_key_is_not_a_coordinator_token(intake):
    setup = await intake.new_incident(1)
    key = next(iter(setup.keys.values()))
    response = await intake.client.post("/v1/incidents", headers=agency_headers(key, None),
                                        json=incident_body(_incident_id(), []))
    assert response.status_code == 401


async def test_enrolment_shows_key_once_and_stores_only_its_hash(intake):
    setup = await intake.new_incident(0)
    response = await intake.client.post(
        f"/v1/incidents/{setup.incident_id}/agencies", headers=COORDINATOR,
        json={"agency_id": f"{setup.incident_id}-pharm", "name": "Test Pharmacy"})
    assert response.status_code == 201, response.text
    issued = response.json()
    api_key = issued["api_key"]
    key_id, _, secret = api_key.removeprefix("pk_").partition(".")
    assert key_id == issued["key_id"] and len(secret) >= 32

    rows = intake.query("SELECT key_id, agency_id, secret_sha256 FROM api_key WHERE key_id = %s", key_id)
    assert rows == [(key_id, f"{setup.incident_id}-pharm", hashlib.sha256(secret.encode()).hexdigest())]
    dump = str(intake.query("SELECT * FROM api_key"))
    assert secret not in dump and api_key not in dump

    # The key works for the incident it was enrolled in.
    feed = await intake.post_feed(setup.incident_id, api_key, ndjson([affected_record("p-1")]))
    assert feed.status_code == 202, feed.text

    unknown = await intake.client.post("/v1/incidents/no-such-incident/agencies", headers=COORDINATOR,
                                       json={"agency_id": "x", "name": "X"})
    assert unknown.status_code == 404


async def test_revoked_key_is_401_and_a_new_key_works(intake):
    setup = await intake.new_incident(1)
    agency_id, key = next(iter(setup.keys.items()))
    ok = await intake.post_feed(setup.incident_id, key, ndjson([affected_record("r-1")]))
    assert ok.status_code == 202

    revoked = await intake.client.delete(
        f"/v1/agencies/{agency_id}/keys/{setup.key_ids[agency_id]}", headers=COORDINATOR)
    assert revoked.status_code == 204
    denied = await intake.post_feed(setup.incident_id, key, ndjson([affected_record("r-2")]))
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "auth.invalid"
    feed_id = ok.json()["feed_id"]
    got = await intake.client.get(f"/v1/incidents/{setup.incident_id}/feeds/{feed_id}",
                                  headers=agency_headers(key, None))
    assert got.status_code == 401

    rotated = await intake.client.post(f"/v1/agencies/{agency_id}/keys", headers=COORDINATOR)
    assert rotated.status_code == 201
    again = await intake.post_feed(setup.incident_id, rotated.json()["api_key"],
                                   ndjson([affected_record("r-2")]))
    assert again.status_code == 202

    missing = await intake.client.delete(f"/v1/agencies/{agency_id}/keys/nokey", headers=COORDINATOR)
    assert missing.status_code == 404
    other = await intake.client.post("/v1/agencies/no-such-agency/keys", headers=COORDINATOR)
    assert other.status_code == 404
