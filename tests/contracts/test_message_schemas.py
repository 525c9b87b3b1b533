"""The Python message models and the language-neutral JSON Schemas in contracts/ agree:
what the models emit validates, what the schemas reject the models reject too, and the
committed schema files are exactly what the code exports."""

import json
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from services.cli import contracts
from services.common import messages as m

NOW = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
CONTENT = {
    "sender_name": "Test Coordination Office",
    "breach_description": "A test portal was accessed.",
    "suspected_holder_statement": "A suspect has been identified.",
    "steps_taken": "Contained.",
    "mitigation_advice": ["Be wary of calls about your health records."],
    "privacy_commissioner_notified": True,
    "contact": {"organisation": "Test Line", "phone": "0800 000 000",
                "web_address": "breach.example.nz"},
}

VALID: dict[str, m.BaseModel] = {
    "affected-record.v1": m.AffectedRecordMessage(
        incident_id="inc-1", agency_id="gp-1", source_record_id="r-1", record_version=1,
        feed_id="feed-1", received_at=NOW, data_categories=["lab_results"], document_count=3,
        sealed="v1.k1.AAAA"),
    "record-withdrawn.v1": m.RecordWithdrawnMessage(
        incident_id="inc-1", agency_id="gp-1", source_record_id="r-1", record_version=2,
        withdrawn_at=NOW),
    "contribution-complete.v1": m.ContributionCompleteMessage(
        incident_id="inc-1", agency_id="gp-1", record_count=10, withdrawn_count=1,
        completed_at=NOW),
    "incident.v1": m.IncidentMessage(
        incident_id="inc-1", revision=2, title="Portal breach", content=CONTENT,
        agencies=[{"agency_id": "gp-1", "name": "Test GP"}], expected_agency_ids=["gp-1"],
        release_policy={}, channel_policy={}, updated_at=NOW),
    "notice.v1": m.NoticeMessage(
        notice_id="ntc-1", incident_id="inc-1", person_id="per-1", version=1, created_at=NOW,
        channels=["email"], agencies=[{"agency_id": "gp-1", "name": "Test GP",
                                       "data_categories": ["clinical_notes"], "document_count": 1}],
        sealed="v1.k1.AAAA"),
    "notice-hold.v1": m.NoticeHoldMessage(incident_id="inc-1", person_id="per-1", held=True,
                                          changed_at=NOW),
    "delivery-event.v1": m.DeliveryEventMessage(
        notice_id="ntc-1", incident_id="inc-1", person_id="per-1", channel="email",
        status="queued", attempt=0, occurred_at=NOW),
    "dead-letter.v1": m.DeadLetterMessage(
        reason="apply-failed", error_type="ValidationError",
        errors=[{"loc": "email", "type": "string_too_long"}], attempts=3,
        origin={"service": "dedupe", "group": "panui.dedupe.affected-records",
                "topic": "panui.affected-records.v1", "partition": 1, "offset": 42,
                "key": "inc-1", "timestamp": NOW},
        dead_lettered_at=NOW, payload="eyJ4IjoxfQ==", payload_sha256="0" * 64),
    "dead-letter-replayed.v1": m.DeadLetterReplayedMessage(
        origin_id="panui.affected-records.v1:1:42", republished_partition=1,
        republished_offset=97, replayed_at=NOW),
}

# (schema, mutation, why) — each must be rejected by both the schema and the model.
INVALID = [
    ("affected-record.v1", lambda d: d.pop("sealed"), "personal fields must be sealed"),
    ("affected-record.v1", lambda d: d.update(nhi="ZZZ0016"), "no personal field in clear"),
    ("affected-record.v1", lambda d: d.update(data_categories=["gossip"]), "fixed vocabulary"),
    ("affected-record.v1", lambda d: d.update(record_version=0), "versions start at 1"),
    ("affected-record.v1", lambda d: d.update(incident_id="inc 1/x"), "ids are key-safe"),
    ("record-withdrawn.v1", lambda d: d.pop("source_record_id"), "which record"),
    ("record-withdrawn.v1", lambda d: d.update(record_version=0), "versions start at 1"),
    ("contribution-complete.v1", lambda d: d.update(record_count=-1), "counts are >= 0"),
    ("contribution-complete.v1", lambda d: d.update(withdrawn_count=-1), "counts are >= 0"),
    ("incident.v1", lambda d: d["content"].pop("contact"), "s 117 contact point required"),
    ("incident.v1", lambda d: d["content"]["contact"].update(web_address="https://x.example"),
     "web address is typed, not a link"),
    ("notice.v1", lambda d: d.update(agencies=[]), "a notice names at least one agency"),
    ("notice-hold.v1", lambda d: d.update(held="yes"), "held is a boolean"),
    ("notice-hold.v1", lambda d: d.update(ground="health_prejudice"), "no ground: not told"),
    ("notice.v1", lambda d: d.update(channels=["fax"]), "known channels"),
    ("notice.v1", lambda d: d.update(correction={"kind": "sent_in_error", "agencies": [],
                                                 "review_id": "rev-1"}),
     "a correction names the agencies it corrects"),
    ("notice.v1", lambda d: d.update(correction={"kind": "oops", "agencies": [
        {"agency_id": "gp-1", "name": "Test GP", "data_categories": [], "document_count": None}],
        "review_id": "rev-1"}), "known correction kinds"),
    ("delivery-event.v1", lambda d: d.update(status="lost"), "known delivery states"),
    ("delivery-event.v1", lambda d: d.update(type="notice"), "type is fixed per schema"),
    ("dead-letter.v1", lambda d: d.update(reason="bad-luck"), "known dead-letter reasons"),
    ("dead-letter.v1", lambda d: d.update(error_type="email aroha@example.nz too long"),
     "the exception's class only, never its text"),
    ("dead-letter.v1", lambda d: d["errors"][0].update(input="aroha@example.nz"),
     "validation errors carry no input"),
    ("dead-letter.v1", lambda d: d.pop("origin"), "where it came from"),
]


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((contracts.CONTRACTS / "schemas" / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("name", sorted(contracts.MESSAGE_SCHEMAS))
def test_committed_schema_is_what_the_code_exports(name):
    committed = (contracts.CONTRACTS / "schemas" / f"{name}.json").read_text()
    assert committed == contracts.render(contracts.message_schema(name)), (
        "contracts/schemas drifted from services/common/messages.py: run `make contracts`"
    )


@pytest.mark.parametrize("name", sorted(VALID))
def test_model_output_validates_against_schema(name):
    payload = json.loads(VALID[name].to_bytes())
    _validator(name).validate(payload)


@pytest.mark.parametrize(("name", "mutate", "why"), INVALID, ids=[i[2] for i in INVALID])
def test_invalid_message_is_rejected_by_schema_and_model(name, mutate, why):
    payload = json.loads(VALID[name].to_bytes())
    mutate(payload)
    assert list(_validator(name).iter_errors(payload)), f"schema accepted: {why}"
    model = contracts.MESSAGE_SCHEMAS[name][0]
    with pytest.raises(ValidationError):
        model.model_validate_json(json.dumps(payload))


def test_sealed_personal_fields_shape_is_in_the_contract():
    schema = json.loads((contracts.CONTRACTS / "schemas" / "affected-record.v1.json").read_text())
    sealed = Draft202012Validator({**schema["$defs"]["SealedPersonalFields"], "$defs": schema["$defs"]})
    good = m.SealedPersonalFields(nhi="ZZZ0016", given_names="Aroha", mobile="+64211234567",
                                  hold={"reason": "health_prejudice"})
    sealed.validate(json.loads(good.model_dump_json(exclude_none=True)))
    assert list(sealed.iter_errors({"nhi": "not-an-nhi"}))
    assert list(sealed.iter_errors({"hold": {"reason": "because"}}))
    assert list(sealed.iter_errors({"mobile": "021 123 4567"}))  # sealed values are normalised
