"""Exporting the contracts from the code that implements them.

The JSON Schemas and OpenAPI documents in contracts/ are generated here and committed;
tests/contracts fails when code and committed contracts drift apart, so a change to a
message or an API is always a visible change to contracts/ in review.
"""

import json
from pathlib import Path

from services.common import messages as m
from services.common.settings import REPO_ROOT

CONTRACTS = REPO_ROOT / "contracts"
_ID_BASE = "https://panui.example.nz/contracts/"

MESSAGE_SCHEMAS: dict[str, tuple[type, str, list[type]]] = {
    "affected-record.v1": (
        m.AffectedRecordMessage,
        "One version of one agency's record of one affected person. Topic affected-records.v1, "
        "key incident_id. The personal fields travel only inside `sealed` (AES-256-GCM); their "
        "plaintext shape is #/$defs/SealedPersonalFields.",
        [m.SealedPersonalFields],
    ),
    "record-withdrawn.v1": (
        m.RecordWithdrawnMessage,
        "An agency withdrew a record sent by mistake: the version `record_version` of it (a "
        "record's versions and withdrawals are one ordered sequence; a later version, a "
        "re-send, is not withdrawn). Topic affected-records.v1, key incident_id.",
        [],
    ),
    "contribution-complete.v1": (
        m.ContributionCompleteMessage,
        "An agency has sent everything it will send for an incident, with how many distinct "
        "records that is, live and withdrawn. Topic affected-records.v1, key incident_id.",
        [],
    ),
    "incident.v1": (
        m.IncidentMessage,
        "An incident's current state: notice content (Privacy Act 2020 s 117), enrolled and "
        "expected agencies, release and channel policy. Topic incidents.v1 (compacted), key "
        "incident_id. No personal data.",
        [],
    ),
    "notice.v1": (
        m.NoticeMessage,
        "The one notice (version 1) or an amendment (version > 1) for one person in one "
        "incident. Topic notices.v1, key person_id. The recipient travels only inside `sealed`; "
        "its plaintext shape is #/$defs/SealedRecipient.",
        [m.SealedRecipient],
    ),
    "notice-hold.v1": (
        m.NoticeHoldMessage,
        "Whether dedupe holds a notified person under s 116 now (a hold that came after their "
        "notice: nothing more is sent), for the call centre. Topic notices.v1, key person_id. "
        "No ground, agency or record: a hold is there so the person is not told.",
        [],
    ),
    "delivery-event.v1": (
        m.DeliveryEventMessage,
        "A delivery of one notice on one channel changed state. Topic delivery-events.v1, key "
        "notice_id. No personal data.",
        [],
    ),
    "dead-letter.v1": (
        m.DeadLetterMessage,
        "A message a consumer could not decode or apply, set aside so its partition moves on: "
        "the reason (a code and the exception's class, never its text; validation errors as "
        "location and type), the origin (service, group, topic, partition, offset, key, "
        "timestamp) and the original bytes, base64 (personal fields in them sealed as on the "
        "origin topic). Topic dead-letters.v1, key the origin message's key. No personal value "
        "in clear.",
        [],
    ),
    "dead-letter-replayed.v1": (
        m.DeadLetterReplayedMessage,
        "`panui dead-letters replay` re-published a dead-lettered message (origin_id "
        "<topic>:<partition>:<offset>) to its origin topic, at this partition and offset. "
        "Topic dead-letters.v1, key the origin message's key. No personal data.",
        [],
    ),
    "incident-key.v1": (
        m.IncidentKeyMessage,
        "An incident's data key for one purpose (records: from intake on incident-lifecycle.v1; "
        "notices: from dedupe on notice-keys.v1), wrapped (AES-256-GCM) by that purpose's "
        "key-encryption key, which only the services of the purpose hold. Key "
        "incident_id/key_id; tombstoned when the incident is purged. No personal data.",
        [],
    ),
    "incident-closed.v1": (
        m.IncidentClosedMessage,
        "The coordinator closed an incident: nothing more is accepted for it, and it is purged "
        "at purge_after. Topic incident-lifecycle.v1, key incident_id. No personal data.",
        [],
    ),
    "incident-purged.v1": (
        m.IncidentPurgedMessage,
        "Intake purged an incident (rows deleted, data keys destroyed); dedupe and dispatch do "
        "the same on reading it. Topic incident-lifecycle.v1, key incident_id. No personal data.",
        [],
    ),
}


def message_schema(name: str) -> dict:
    model, description, sealed_models = MESSAGE_SCHEMAS[name]
    schema = model.model_json_schema(mode="serialization")
    schema.pop("title", None)
    schema.pop("description", None)
    defs = schema.pop("$defs", {})
    for sealed in sealed_models:
        sealed_schema = sealed.model_json_schema(mode="serialization")
        defs.update(sealed_schema.pop("$defs", {}))
        defs[sealed.__name__] = sealed_schema
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{_ID_BASE}{name}.json",
        "title": name,
        "description": description,
        **schema,
    }
    if defs:
        doc["$defs"] = dict(sorted(defs.items()))
    return doc


def openapi_documents() -> dict[str, dict]:
    # Imported here: building the apps needs a data key, which a schema export must not.
    from services.common.crypto import generate_key_spec
    from services.dedupe.app import create_app as dedupe_app
    from services.dedupe.settings import DedupeSettings
    from services.dispatch.app import create_app as dispatch_app
    from services.dispatch.settings import DispatchSettings
    from services.intake.app import create_app as intake_app
    from services.intake.settings import IntakeSettings

    keys = generate_key_spec("export")
    return {
        "intake": intake_app(IntakeSettings(data_keys=keys)).openapi(),
        "dedupe": dedupe_app(DedupeSettings(data_keys=keys)).openapi(),
        "dispatch": dispatch_app(DispatchSettings(data_keys=keys)).openapi(),
    }


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def expected_files() -> dict[Path, str]:
    files = {CONTRACTS / "schemas" / f"{name}.json": render(message_schema(name))
             for name in MESSAGE_SCHEMAS}
    for service, doc in openapi_documents().items():
        files[CONTRACTS / "openapi" / f"{service}.json"] = render(doc)
    return files


def export() -> list[Path]:
    written = []
    for path, text in expected_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written
