"""The coordinator API's bodies and errors, on a real PostgreSQL database. No consumers run
here (the app's lifespan is not started): the state is written straight into the tables."""

from datetime import UTC, datetime

import httpx
import pytest

from services.common.crypto import Sealer
from services.common.db import make_engine, session_scope
from services.common.messages import record_sealing_context
from services.dedupe.app import create_app
from services.dedupe.models import IncidentState, PersonState, RecordState, ReviewState
from services.dedupe.settings import DedupeSettings
from testkit.staff import SIGNING_KEY, token
from tests.conftest import COORDINATOR_TOKEN

pytestmark = [pytest.mark.postgres]

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
AUTH = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
EVIDENCE = {"weight": 4.5, "comparisons": [{"field": "given", "level": "initial", "weight": 1.0}]}


@pytest.fixture
async def client(pg_database, data_keys):  # noqa: ANN001, ANN201
    url = pg_database("dedupe")
    engine = make_engine(url)
    with session_scope(engine) as session:
        session.add(IncidentState(
            incident_id="inc-1", revision=1, agency_names={"gp": "Test GP", "lab": "Test Lab"},
            expected_agency_ids=["gp", "lab"], completed={"gp": 1}, partition=0,
            completed_withdrawn={"gp": 2}, missing={"gp": 1},
            release_policy={"hold_deadline": "2026-12-01T00:00:00Z", "settle_window_seconds": 0}))
        for i, (agency, withdrawn) in enumerate([("gp", False), ("gp", True), ("lab", False)]):
            session.add(RecordState(incident_id="inc-1", agency_id=agency,
                                    source_record_id=f"r-{i}", record_version=1,
                                    message_id=f"m-{i}", sealed="x", data_categories=[],
                                    withdrawn=withdrawn, person_id="P-1"))
        session.add(PersonState(incident_id="inc-1", person_id="P-1", status="pending"))
        session.add(PersonState(incident_id="inc-1", person_id="P-2", status="empty"))
        for rid, status in (("rev-1", "open"), ("rev-2", "resolved")):
            session.add(ReviewState(review_id=rid, incident_id="inc-1", a_agency_id="gp",
                                    a_source_record_id="r-0", b_agency_id="lab",
                                    b_source_record_id=rid, reason="uncertain",
                                    evidence=EVIDENCE, status=status))
    engine.dispose()
    app = create_app(DedupeSettings(database_url=url, data_keys=data_keys,
                                    coordinator_tokens=COORDINATOR_TOKEN,
                                    token_signing_key=SIGNING_KEY))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        yield http
    app.state.runtime.engine.dispose()


def error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


async def test_progress(client):
    response = await client.get("/v1/incidents/inc-1/progress", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {
        "incident_id": "inc-1", "released_at": None, "release_reason": None,
        "hold_deadline": "2026-12-01T00:00:00Z",
        "agencies": [
            {"agency_id": "gp", "name": "Test GP", "expected": True, "complete": True,
             "records": 1, "withdrawn": 1, "missing": 1},
            {"agency_id": "lab", "name": "Test Lab", "expected": True, "complete": False,
             "records": 1, "withdrawn": 0, "missing": 0},
        ],
        "records_missing": 1, "persons": 1, "pending_release": 1, "notified": 0, "on_hold": 0, "in_review": 1,
        "held_for_contact": 0, "contact_conflicts": 0, "hold_conflicts": 0, "retractions": 0,
    }


async def test_reviews_by_status_and_a_decision(client):
    open_ = (await client.get("/v1/incidents/inc-1/reviews", headers=AUTH)).json()
    assert open_ == [{"review_id": "rev-1", "a": ["gp", "r-0"], "b": ["lab", "rev-1"],
                      "reason": "uncertain", "status": "open", "evidence": EVIDENCE,
                      "kind": "pair", "chosen": None, "decided_at": None,
                      "correction_notice_id": None}]
    everything = await client.get("/v1/incidents/inc-1/reviews?status=all", headers=AUTH)
    assert [r["review_id"] for r in everything.json()] == ["rev-1", "rev-2"]
    resolved = await client.get("/v1/incidents/inc-1/reviews?status=resolved", headers=AUTH)
    assert [r["review_id"] for r in resolved.json()] == ["rev-2"]
    assert (await client.get("/v1/incidents/inc-9/reviews", headers=AUTH)).json() == []

    response = await client.post("/v1/incidents/inc-1/reviews/rev-1/decision", headers=AUTH,
                                 json={"decision": "keep_apart"})
    assert response.status_code == 200
    body = response.json()
    assert datetime.fromisoformat(body.pop("decided_at")) > T0
    assert body == {k: v for k, v in open_[0].items() if k != "decided_at"} | {"status": "keep_apart"}
    after = await client.get("/v1/incidents/inc-1/reviews?status=keep_apart", headers=AUTH)
    assert [r["review_id"] for r in after.json()] == ["rev-1"]


async def test_release_by_hand_keeps_the_first_request(client):
    first = await client.post("/v1/incidents/inc-1/release", headers=AUTH)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"incident_id", "manual_release_requested_at", "released_at"}
    assert (body["incident_id"], body["released_at"]) == ("inc-1", None)
    again = await client.post("/v1/incidents/inc-1/release", headers=AUTH)
    assert again.json()["manual_release_requested_at"] == body["manual_release_requested_at"]


@pytest.mark.parametrize(("method", "path", "body", "status", "expected"), [
    ("get", "/v1/incidents/inc-9/progress", None, 404,
     error("incident.not_found", "No such incident.")),
    ("post", "/v1/incidents/inc-9/release", None, 404,
     error("incident.not_found", "No such incident.")),
    ("post", "/v1/incidents/inc-1/reviews/rev-9/decision", {"decision": "merge"}, 404,
     error("review.not_found", "No such review item in this incident.")),
    ("post", "/v1/incidents/inc-2/reviews/rev-1/decision", {"decision": "merge"}, 404,
     error("review.not_found", "No such review item in this incident.")),
])
async def test_unknown_incidents_and_reviews(client, method, path, body, status, expected):
    response = await client.request(method.upper(), path, headers=AUTH, json=body)
    assert (response.status_code, response.json()) == (status, expected)


async def test_coordinator_token_required(client):
    missing = await client.get("/v1/incidents/inc-1/progress")
    assert (missing.status_code, missing.json()) == (401, error(
        "auth.missing", "Send an API key as 'Authorization: Bearer <key>'."))
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await client.post("/v1/incidents/inc-1/release",
                              headers={"authorization": "Bearer not-the-token"})
    assert (wrong.status_code, wrong.json()) == (401, error(
        "auth.invalid", "The coordinator token is not valid."))
    assert wrong.headers["www-authenticate"] == "Bearer"
    # Who is asking is checked before what is asked.
    invalid = await client.get("/v1/incidents/inc 1/progress")
    assert (invalid.status_code, invalid.json()["error"]["code"]) == (401, "auth.missing")


@pytest.mark.parametrize(("method", "path", "body", "loc", "type_"), [
    ("get", "/v1/incidents/inc 1/progress", None, ["path", "incident_id"], "string_pattern_mismatch"),
    ("get", "/v1/incidents/inc-1/reviews?status=maybe", None, ["query", "status"], "literal_error"),
    ("post", "/v1/incidents/inc-1/reviews/rev-1/decision", {"decision": "perhaps"},
     ["body", "decision"], "literal_error"),
    ("post", f"/v1/incidents/{'x' * 129}/release", None, ["path", "incident_id"], "string_too_long"),
])
async def test_invalid_requests(client, method, path, body, loc, type_):
    response = await client.request(method.upper(), path, headers=AUTH, json=body)
    assert response.status_code == 422
    error_ = response.json()["error"]
    assert (error_["code"], error_["message"]) == ("request.invalid", "The request is not valid.")
    assert [(d["loc"], d["type"]) for d in error_["details"]] == [(loc, type_)]


async def test_decisions_and_releases_are_on_record_with_who_made_them(client):
    reviewer = {"authorization": f"Bearer {token(['reviewer'], ['inc-1'], name='rita')[0]}"}
    ops = {"authorization": f"Bearer {token(['ops'], name='oscar')[0]}"}
    decided = await client.post("/v1/incidents/inc-1/reviews/rev-1/decision", headers=reviewer,
                                json={"decision": "merge"})
    assert decided.status_code == 200
    # A reviewer may not release; the refusal changes nothing and records nothing.
    assert (await client.post("/v1/incidents/inc-1/release", headers=reviewer)).status_code == 403
    assert (await client.post("/v1/incidents/inc-1/release", headers=AUTH)).status_code == 200
    assert (await client.post("/v1/incidents/inc-9/release", headers=AUTH)).status_code == 404
    assert (await client.get("/v1/audit", headers=reviewer)).status_code == 403
    page = (await client.get("/v1/audit", headers=ops)).json()
    assert [(e["actor_kind"], e["actor"], e["action"], e["incident_id"], e["object_ids"])
            for e in page["entries"]] == [
        ("coordinator", "rita", "review.decide", "inc-1", ["rev-1", "merge"]),
        ("coordinator", "configured", "incident.release", "inc-1", []),
    ]
    assert page["next_after_id"] is None
    first = page["entries"][0]["id"]
    after = (await client.get("/v1/audit", headers=ops, params={"after_id": first})).json()
    assert [e["action"] for e in after["entries"]] == ["incident.release"]
    # A token scoped to another incident sees none of them.
    elsewhere = {"authorization": f"Bearer {token(['ops'], ['inc-2'])[0]}"}
    assert (await client.get("/v1/audit", headers=elsewhere)).json()["entries"] == []


async def test_reveal_opens_the_pairs_values_only_and_is_on_record(client, data_keys):
    """Masked by default (the queue carries levels and weights only); a reveal returns the
    two records' values of that one pair, answers no-store and writes an audit entry."""
    runtime = client._transport.app.state.runtime
    sealer = Sealer(data_keys)
    personal = {"r-0": ("gp", {"nhi": "ZZZ0016", "given_names": "Aroha", "family_name": "Tauira",
                               "date_of_birth": "1980-02-03", "email": "aroha@example.invalid",
                               "address": {"line1": "1 Tauira Street", "city": "Wellington"}}),
                "rev-1": ("lab", {"given_names": "Arohanui", "family_name": "Tauira",
                                  "mobile": "+64210000001"}),
                "r-2": ("lab", {"given_names": "Someone", "family_name": "Else"})}
    with session_scope(runtime.engine) as session:
        session.execute(RecordState.__table__.delete().where(
            RecordState.incident_id == "inc-1", RecordState.source_record_id == "r-2"))
        session.execute(RecordState.__table__.update().where(
            RecordState.source_record_id == "r-0").values(
            sealed=sealer.seal(personal["r-0"][1], record_sealing_context("inc-1", "gp", "r-0", 1))))
        for rid in ("rev-1", "r-2"):
            agency, fields = personal[rid]
            session.add(RecordState(incident_id="inc-1", agency_id=agency, source_record_id=rid,
                                    record_version=1, message_id=f"m-{rid}", person_id="P-2",
                                    data_categories=[], sealed=sealer.seal(
                                        fields, record_sealing_context("inc-1", agency, rid, 1))))
    queue = (await client.get("/v1/incidents/inc-1/reviews?status=all", headers=AUTH)).text
    assert "Aroha" not in queue and "ZZZ0016" not in queue  # masked: no value in the queue

    reviewer = {"authorization": f"Bearer {token(['reviewer'], ['inc-1'], name='rita')[0]}"}
    response = await client.post("/v1/incidents/inc-1/reviews/rev-1/reveal", headers=reviewer)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body == {"review_id": "rev-1", "a": {
        "agency_id": "gp", "source_record_id": "r-0", "held": True, "values": {
            "nhi": "ZZZ0016", "given_names": "Aroha", "family_name": "Tauira",
            "date_of_birth": "1980-02-03", "email": "aroha@example.invalid", "mobile": None,
            "address": "1 Tauira Street, Wellington"}}, "b": {
        "agency_id": "lab", "source_record_id": "rev-1", "held": True, "values": {
            "nhi": None, "given_names": "Arohanui", "family_name": "Tauira",
            "date_of_birth": None, "email": None, "mobile": "+64210000001", "address": None}}}
    assert "Someone" not in response.text  # another record of the incident: never
    # Not a review of this incident; the ops role may not reveal; neither is on record.
    missing = await client.post("/v1/incidents/inc-2/reviews/rev-1/reveal", headers=AUTH)
    assert (missing.status_code, missing.json()) == (404, error(
        "review.not_found", "No such review item in this incident."))
    ops = {"authorization": f"Bearer {token(['ops'], name='oscar')[0]}"}
    assert (await client.post("/v1/incidents/inc-1/reviews/rev-1/reveal", headers=ops)).status_code == 403
    page = (await client.get("/v1/audit", headers=ops)).json()
    assert [(e["actor"], e["action"], e["incident_id"], e["object_ids"]) for e in page["entries"]] \
        == [("rita", "review.reveal", "inc-1", ["rev-1"])]
    assert "Aroha" not in str(page)
