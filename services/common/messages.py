"""Python models of the Kafka messages defined in contracts/schemas/*.json.

contracts/ is the language-neutral source of truth; tests/contracts checks that these models
produce messages the schemas accept and that the schemas reject what the models reject.
Personal fields travel only inside `sealed` (see services.common.crypto); the clear fields
are ids, counts, categories and flags that routing, ordering and ops need.

Every contract model lives here, one section per topic, so this module mirrors contracts/
(and is longer than most for that reason).
"""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal, get_args

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    WithJsonSchema,
)

from services.common.ids import Id
from services.common.references import DIGEST_PATTERN, MAX_DOB_CHECKS, REFERENCE_PATTERN

# The schema versions this code reads; a message with another is dead-lettered (see kafka.py).
SCHEMA_VERSIONS = (1,)

DataCategory = Literal[
    "clinical_notes",
    "lab_results",
    "referral_letters",
    "discharge_summaries",
    "prescriptions",
    "identity_documents",
    "images",
    "contact_details",
    "other",
]
DATA_CATEGORIES = get_args(DataCategory)
Language = Literal["en", "mi"]


class DeliveryStatus(StrEnum):
    """The status of one notice's delivery on one channel: the contract's set (delivery-event.v1).
    Which changes are allowed is services/dispatch/delivery_state.py's business."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"  # accepted by the provider; no receipt yet
    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary-failure"  # recipient side, may succeed later (mailbox full, 4xx)
    PERMANENT_FAILURE = "permanent-failure"  # recipient side, will not succeed (5xx, bad number)
    TECHNICAL_FAILURE = "technical-failure"  # our side or the provider's (connection, 5xx API)
    UNREACHABLE = "unreachable"  # channel 'none': no channel left, the s 115 public-notice list
    SUPERSEDED = "superseded"  # never sent: a newer version of the person's notice replaced it
    # Never sent: a sent-in-error correction, when no earlier version reached the person
    # (all bounced, failed or were never sent), so there is nothing to correct.
    NOT_NEEDED = "not-needed"


# In the JSON Schema the status set stays inline (an enum of strings, no $defs entry).
_INLINE_DELIVERY_STATUS = WithJsonSchema({"enum": [s.value for s in DeliveryStatus], "type": "string"})
Channel = Literal["email", "sms", "postal", "none"]


# Validation errors never echo their input: a message's fields may hold personal values.
_CONFIG = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def new_message_id() -> str:
    return str(uuid.uuid4())


class _Message(BaseModel):
    model_config = _CONFIG

    schema_version: Literal[1] = 1
    message_id: str = Field(default_factory=new_message_id, min_length=1, max_length=64)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))


# --- sealed payloads: plaintext shapes of the `sealed` fields below ------------------------------


class _Sealed(BaseModel):
    model_config = _CONFIG


class Address(_Sealed):
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    suburb: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=200)
    postcode: str | None = Field(default=None, pattern=r"^[0-9]{4}$")


class Representative(_Sealed):
    """Who receives the notice for someone else (e.g. a parent for an under-16, s 116)."""

    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    mobile: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    relationship: str | None = Field(default=None, max_length=100)


class Hold(_Sealed):
    reason: Literal["health_prejudice", "representative", "other"]
    note: str | None = Field(default=None, max_length=1000)
    representative: Representative | None = None


class SealedPersonalFields(_Sealed):
    """Plaintext of AffectedRecordMessage.sealed (the validated personal fields)."""

    nhi: str | None = Field(default=None, pattern=r"^[A-HJ-NP-Z]{3}([0-9]{4}|[0-9]{2}[A-HJ-NP-Z]{2})$")
    given_names: str | None = Field(default=None, max_length=200)
    family_name: str | None = Field(default=None, max_length=200)
    date_of_birth: date | None = None
    email: str | None = Field(default=None, max_length=254)
    mobile: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    address: Address | None = None
    hold: Hold | None = None


class Recipient(_Sealed):
    given_names: str | None = Field(default=None, max_length=200)
    family_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    mobile: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    address: Address | None = None


class SealedRecipient(_Sealed):
    """Plaintext of NoticeMessage.sealed: who the notice goes to."""

    recipient: Recipient
    representative: Representative | None = None


# --- affected-records.v1 (from intake; key = incident_id) -------------------------------------


class AffectedRecordMessage(_Message):
    """One version of one agency's record of one affected person."""

    type: Literal["affected-record"] = "affected-record"
    incident_id: Id
    agency_id: Id
    source_record_id: str = Field(min_length=1, max_length=128)
    record_version: int = Field(ge=1)
    feed_id: Id
    received_at: datetime
    data_categories: list[DataCategory] = Field(max_length=len(DATA_CATEGORIES))
    # None: the agency did not say how many documents (never read as zero).
    document_count: int | None = Field(ge=0)
    preferred_language: Language = "en"
    on_hold: bool = False
    # Sealed JSON of the personal fields: nhi, given_names, family_name, date_of_birth, email,
    # mobile, address, hold. Context: sealing_context() below.
    sealed: str = Field(min_length=1)

    def sealing_context(self) -> str:
        return record_sealing_context(
            self.incident_id, self.agency_id, self.source_record_id, self.record_version
        )


def record_sealing_context(incident_id: str, agency_id: str, source_record_id: str, version: int) -> str:
    return f"affected-record|{incident_id}|{agency_id}|{source_record_id}|{version}"


class RecordWithdrawnMessage(_Message):
    """An agency withdrew a record it sent by mistake.

    A record's versions and withdrawals are one ordered sequence: version v, then (perhaps)
    the withdrawal of version v, then version v + 1 (a re-send), and so on. `record_version`
    is the version this withdrawal withdraws, so a consumer replaying the topic never applies
    a withdrawal over a later re-send. Absent only in messages written before it existed
    (they withdraw whatever version the consumer holds)."""

    type: Literal["record-withdrawn"] = "record-withdrawn"
    incident_id: Id
    agency_id: Id
    source_record_id: str = Field(min_length=1, max_length=128)
    record_version: int | None = Field(
        default=None, ge=1,
        description="The version withdrawn; a later version (a re-send) is not withdrawn.")
    withdrawn_at: datetime


class ContributionCompleteMessage(_Message):
    """An agency has sent everything it will send for an incident.

    The counts are of distinct records (source_record_ids) at completion: dedupe holds the
    release until it has seen as many (record_count + withdrawn_count, live or withdrawn),
    so a lost message is noticed."""

    type: Literal["contribution-complete"] = "contribution-complete"
    incident_id: Id
    agency_id: Id
    record_count: int = Field(ge=0, description="Records sent and not withdrawn.")
    withdrawn_count: int = Field(
        default=0, ge=0, description="Records sent and withdrawn (and not sent again).")
    completed_at: datetime


AffectedRecordsTopicMessage = Annotated[
    AffectedRecordMessage | RecordWithdrawnMessage | ContributionCompleteMessage,
    Field(discriminator="type"),
]

# --- incidents.v1 (from intake; key = incident_id; compacted: latest state wins) ---------------


class IncidentAgency(BaseModel):
    model_config = _CONFIG

    agency_id: Id
    name: str = Field(min_length=1, max_length=200)


# A host, then an optional path of visible ASCII other than quotes and angle brackets. Spelled
# as explicit ranges, not \s: Python's and JSON Schema's (ECMA) \s disagree (U+0085, U+FEFF),
# so a schema-valid address would be refused (found by schemathesis).
WEB_ADDRESS_PATTERN = r"^[A-Za-z0-9.\-]+(/[!#-&(-;=?-~]*)?$"


class ContactPoint(BaseModel):
    model_config = _CONFIG

    organisation: str = Field(min_length=1, max_length=200)
    phone: str = Field(min_length=3, max_length=40)
    # Typed by the person, never a link: notices carry nothing to click.
    web_address: str = Field(min_length=3, max_length=200, pattern=WEB_ADDRESS_PATTERN)
    hours: str | None = Field(default=None, max_length=200)


DEFAULT_NEVER_ASK = (
    "passwords or PINs",
    "payment or bank details",
    "one-time codes sent to your phone",
    "remote access to your computer or phone",
)
DEFAULT_COMPLAINT_RIGHT = (
    "You have the right to complain to the Privacy Commissioner about this breach "
    "(privacy.org.nz, 0800 803 909)."
)


def _text_not_number(value: object) -> object:
    """Dates and times come as ISO 8601 text (the schema's format), never as a number that lax
    parsing would read as a Unix time."""
    if isinstance(value, int | float):
        raise ValueError("expected an ISO 8601 date or date-time string")
    return value


def _json_integer(value: object) -> object:
    """A JSON Schema integer: a number with no fractional part (7.0 is one), never text ("7")
    or a boolean."""
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError("expected an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]


class IncidentContent(BaseModel):
    """What every notice must say (Privacy Act 2020 s 117), supplied by the coordinator."""

    model_config = _CONFIG

    sender_name: str = Field(min_length=1, max_length=200)
    breach_description: str = Field(min_length=1, max_length=5000)
    suspected_holder_statement: str = Field(min_length=1, max_length=2000)
    steps_taken: str = Field(min_length=1, max_length=5000)
    mitigation_advice: list[str] = Field(min_length=1, max_length=20)
    privacy_commissioner_notified: StrictBool  # strict: 0 or "yes" is not a yes
    privacy_commissioner_notified_on: Annotated[date | None, BeforeValidator(_text_not_number)] = None
    complaint_right: str = Field(default=DEFAULT_COMPLAINT_RIGHT, max_length=2000)
    contact: ContactPoint
    # At least one: the never-ask list is what makes a notice phishing-resistant (dispatch
    # cannot render without it; an empty list once passed intake and then 500'd the preview).
    never_ask: list[str] = Field(default_factory=lambda: list(DEFAULT_NEVER_ASK), min_length=1,
                                 max_length=20)
    # Coordinator-supplied te reo Māori templates (Jinja2 source); English is the fallback.
    templates_mi: dict[str, str] = Field(default_factory=dict)
    # The coordinator approves templates_mi after previewing them: the fingerprint
    # (templates_fingerprint) of exactly what was approved. Dispatch uses the templates only
    # while it matches; any edit needs a new approval.
    templates_mi_approved: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # Notices to te reo readers carry te reo (the approved templates) and English in one message.
    bilingual: StrictBool = False  # strict: 0 or "yes" is not a yes
    sms_segment_budget: JsonInt = Field(default=3, ge=1, le=10)


def templates_fingerprint(templates: dict[str, str]) -> str:
    """SHA-256 of the te reo templates as approved (canonical JSON, keys sorted)."""
    import hashlib

    return hashlib.sha256(orjson.dumps(templates, option=orjson.OPT_SORT_KEYS)).hexdigest()


class ReleasePolicy(BaseModel):
    model_config = _CONFIG

    # Release when every expected agency is complete, or at this deadline, whichever is first.
    hold_deadline: Annotated[datetime | None, BeforeValidator(_text_not_number)] = None
    # After release, a new person's notice waits this long for their other records to join.
    settle_window_seconds: JsonInt = Field(default=300, ge=0, le=7 * 24 * 3600)
    # After release, a joining record triggers an amendment when it adds:
    amend_on: Literal["new_agency_or_category", "new_agency", "never"] = "new_agency_or_category"


class ChannelPolicy(BaseModel):
    model_config = _CONFIG

    mode: Literal["email_else_sms", "sms_else_email", "both"] = "email_else_sms"
    fallback: list[Literal["email", "sms", "postal"]] = ["email", "sms", "postal"]


class IncidentMessage(_Message):
    """An incident's current state: the notice content the law requires, the agencies
    expected to contribute, and the release policy. Contains no personal data."""

    type: Literal["incident"] = "incident"
    incident_id: Id
    revision: int = Field(ge=1)
    title: str = Field(min_length=1, max_length=200)
    content: IncidentContent
    agencies: list[IncidentAgency]
    expected_agency_ids: list[Id]
    release_policy: ReleasePolicy
    channel_policy: ChannelPolicy
    updated_at: datetime
    # A rehearsal (like GOV.UK Notify's test keys), fixed at creation: everything runs, but
    # dispatch delivers only to the local simulated gateways and marks every notice a dry run.
    dry_run: StrictBool = False
    # HMAC of every other field (services/common/signing.py), set by the producing service's
    # outbox relay and checked by every consumer; absent only where no keyring is configured.
    signature: str | None = Field(default=None, pattern=r"^v1\.[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9_-]{43}$")


def decode_incident(value: bytes) -> IncidentMessage:
    return IncidentMessage.model_validate_json(value)


# --- notices.v1 (from dedupe; key = person_id) --------------------------------------------------


class NoticeAgency(BaseModel):
    model_config = _CONFIG

    agency_id: Id
    name: str = Field(min_length=1, max_length=200)
    data_categories: list[DataCategory]
    # None: at least one of the agency's records for the person gave no count.
    document_count: int | None = Field(ge=0)


class NoticeCorrection(BaseModel):
    """Set on a correction notice: a coordinator decided (a `retraction` review item) that an
    earlier notice of this person's must be corrected, after records it was about were
    withdrawn. `sent_in_error`: every record it was about was withdrawn (the person was not
    affected; `agencies` are the ones the earlier notice named). `agency_not_involved`:
    `agencies` were named wrongly; the notice's own `agencies` are the ones that stand."""

    model_config = _CONFIG

    kind: Literal["sent_in_error", "agency_not_involved"]
    agencies: list[NoticeAgency] = Field(min_length=1)
    review_id: Id  # the coordinator's decision it carries out


class NoticeMessage(_Message):
    """The one notice (version 1) or an amendment (version > 1) for one person; with
    `correction`, a correction notice (a later version of the same lineage)."""

    type: Literal["notice"] = "notice"
    notice_id: Id  # deterministic: stable across replays
    incident_id: Id
    person_id: Id  # opaque, derived from no personal data
    version: int = Field(ge=1)
    created_at: datetime
    preferred_language: Language = "en"
    channels: list[Literal["email", "sms", "postal"]]  # which contact kinds are present
    has_representative: bool = False
    agencies: list[NoticeAgency] = Field(min_length=1)
    # Sealed JSON: {"recipient": {given_names, family_name, email, mobile, address},
    # "representative": {...} | null}. Context: notice_sealing_context().
    sealed: str = Field(min_length=1)
    # The reference printed on the notice: a keyed digest of notice_id under the data key that
    # sealed `sealed` (services/common/references.py). None on notices made before it existed:
    # they printed references.legacy_reference(notice_id).
    reference_code: str | None = Field(default=None, pattern=REFERENCE_PATTERN)
    # Keyed digests (same key) of each date of birth the person's records hold, never the date:
    # what the "is this notice genuine?" check compares a typed date of birth with.
    dob_checks: list[Annotated[str, Field(pattern=DIGEST_PATTERN)]] = Field(
        default_factory=list, max_length=MAX_DOB_CHECKS)
    correction: NoticeCorrection | None = None
    # HMAC of every other field (services/common/signing.py), set by the producing service's
    # outbox relay and checked by every consumer; absent only where no keyring is configured.
    signature: str | None = Field(default=None, pattern=r"^v1\.[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9_-]{43}$")


def notice_sealing_context(notice_id: str) -> str:
    return f"notice|{notice_id}"


class NoticeHoldMessage(_Message):
    """Whether dedupe holds a notified person under s 116 now (issue 16, the call centre): an
    s 116 hold on one of their records came after their notice went out, so nothing more is
    sent to them, or their notice went out without one agency's held records (a hold conflict
    a coordinator released), so part of what they are owed is held back (`held`); or it no
    longer holds them (`held` false: an amendment follows if they are owed one). Keyed like the person's
    notices (the lineage's `person_id`), so it is ordered with them. A hold is there so the
    person is NOT told: this says only that one applies — no ground, no agency, no record."""

    type: Literal["notice-hold"] = "notice-hold"
    incident_id: Id
    person_id: Id  # the person_id of the notices it is about (notice.v1)
    held: StrictBool
    changed_at: datetime
    # HMAC of every other field (services/common/signing.py), as on notices.
    signature: str | None = Field(default=None, pattern=r"^v1\.[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9_-]{43}$")


NoticesTopicMessage = Annotated[NoticeMessage | NoticeHoldMessage, Field(discriminator="type")]


# --- delivery-events.v1 (from dispatch; key = notice_id) ----------------------------------------


class DeliveryEventMessage(_Message):
    """A delivery of one notice on one channel changed state."""

    type: Literal["delivery-event"] = "delivery-event"
    notice_id: Id
    incident_id: Id
    person_id: Id
    channel: Channel
    status: Annotated[DeliveryStatus, _INLINE_DELIVERY_STATUS] = Field(title="Status")
    attempt: int = Field(ge=0)
    provider: str | None = Field(default=None, max_length=64)
    reason_code: str | None = Field(default=None, max_length=64)
    occurred_at: datetime


_affected_records_adapter = TypeAdapter(AffectedRecordsTopicMessage,
                                        config=ConfigDict(hide_input_in_errors=True))


def decode_affected_records_topic(value: bytes) -> AffectedRecordsTopicMessage:
    return _affected_records_adapter.validate_json(value)


def decode_notice(value: bytes) -> NoticeMessage:
    return NoticeMessage.model_validate_json(value)


_notices_adapter = TypeAdapter(NoticesTopicMessage, config=ConfigDict(hide_input_in_errors=True))


def decode_notices_topic(value: bytes) -> NoticeMessage | NoticeHoldMessage:
    """A message of notices.v1: a notice, or a notified person's hold changing."""
    return _notices_adapter.validate_json(value)


def decode_delivery_event(value: bytes) -> DeliveryEventMessage:
    return DeliveryEventMessage.model_validate_json(value)


# --- dead-letters.v1 (from every consuming service; key = the origin message's key) -------------


class DeadLetterReason(StrEnum):
    """Why a consumer could not take a message. Decoding failures are deterministic and are
    dead-lettered at once; an apply failure only after bounded tries of the message alone."""

    UNDECODABLE = "undecodable"  # not UTF-8 JSON, not an object, no known message type
    SCHEMA_INVALID = "schema-invalid"  # JSON of a known type that the contract model rejects
    UNKNOWN_VERSION = "unknown-version"  # a schema_version this code does not read
    UNEXPECTED_TOMBSTONE = "unexpected-tombstone"  # a null value on a topic that is not compacted
    APPLY_FAILED = "apply-failed"  # decoded, but applying it failed every time
    UNAUTHENTICATED = "unauthenticated"  # a signed topic's message unsigned or tampered


_INLINE_REASON = WithJsonSchema({"enum": [r.value for r in DeadLetterReason], "type": "string"})
_PYTHON_NAME = r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$"


class DeadLetterError(BaseModel):
    """One validation error: where and what kind, never the offending value."""

    model_config = _CONFIG

    loc: str = Field(max_length=300)  # dotted path in the message; unknown field names masked
    type: str = Field(max_length=64)  # pydantic's error type, e.g. string_too_long


class MessageOrigin(BaseModel):
    """Where a message was read: enough to find it again and to replay it."""

    model_config = _CONFIG

    service: str = Field(min_length=1, max_length=64)
    group: str = Field(min_length=1, max_length=249)  # the consumer group, or follow:<topic>
    topic: str = Field(min_length=1, max_length=249)  # the full name, deployment prefix included
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None = Field(default=None, max_length=200)  # never personal data (topics.py)
    timestamp: datetime | None = None

    @property
    def id(self) -> str:
        """The origin message's id, as `panui dead-letters` shows it: topic:partition:offset."""
        return f"{self.topic}:{self.partition}:{self.offset}"


class DeadLetterMessage(_Message):
    """A message a consumer set aside so its partition could move on. Carries the original
    bytes (personal fields in them are sealed as on the origin topic) and no value in clear."""

    type: Literal["dead-letter"] = "dead-letter"
    reason: Annotated[DeadLetterReason, _INLINE_REASON] = Field(title="Reason")
    error_type: str = Field(pattern=_PYTHON_NAME)  # the exception's class, never its text
    errors: list[DeadLetterError] = Field(default_factory=list, max_length=20)
    attempts: int = Field(ge=1)  # how often it was tried (1 for decoding failures)
    origin: MessageOrigin
    dead_lettered_at: datetime
    payload: str | None = Field(default=None)  # base64 of the original value; null: tombstone
    payload_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class DeadLetterReplayedMessage(_Message):
    """`panui dead-letters replay` re-published a dead-lettered message to its origin topic."""

    type: Literal["dead-letter-replayed"] = "dead-letter-replayed"
    origin_id: str = Field(min_length=1, max_length=300)  # MessageOrigin.id of the dead letter
    republished_partition: int = Field(ge=0)
    republished_offset: int = Field(ge=0)
    replayed_at: datetime


DeadLettersTopicMessage = Annotated[DeadLetterMessage | DeadLetterReplayedMessage,
                                    Field(discriminator="type")]
_dead_letters_adapter = TypeAdapter(DeadLettersTopicMessage,
                                    config=ConfigDict(hide_input_in_errors=True))


def decode_dead_letters_topic(value: bytes) -> DeadLettersTopicMessage:
    return _dead_letters_adapter.validate_json(value)


# --- incident-lifecycle.v1 (intake and dedupe; compacted) ----------------------------------------
# An incident's data keys (key "<incident_id>/<key_id>", tombstoned at the purge) and its
# lifecycle: closed, then purged (key incident_id; the latest state wins). docs/decisions.md,
# "Crypto-shredding".


class IncidentKeyMessage(_Message):
    """An incident's data key for one purpose, wrapped by that purpose's key-encryption key:
    only the services holding the KEK can unwrap it. No personal data."""

    type: Literal["incident-key"] = "incident-key"
    incident_id: Id
    purpose: Literal["records", "notices"]
    key_id: str = Field(pattern=r"^dk[0-9a-f]{20}$")
    kek_id: str = Field(min_length=1, max_length=64)
    wrapped_key: str = Field(min_length=1, max_length=200)
    created_at: datetime
    # HMAC of every other field (services/common/signing.py), as on incidents and notices: a
    # forged key or purge message must not be taken (a tombstone carries no value to sign).
    signature: str | None = Field(default=None, pattern=r"^v1\.[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9_-]{43}$")

    def kafka_key(self) -> str:
        return incident_key_kafka_key(self.incident_id, self.key_id)


def incident_key_kafka_key(incident_id: str, key_id: str) -> str:
    return f"{incident_id}/{key_id}"


class IncidentClosedMessage(_Message):
    """The coordinator closed the incident: nothing more is taken for it, and at `purge_after`
    every service deletes its rows and destroys its data keys."""

    type: Literal["incident-closed"] = "incident-closed"
    incident_id: Id
    closed_at: datetime
    purge_after: datetime
    # HMAC of every other field (services/common/signing.py), as on incidents and notices: a
    # forged key or purge message must not be taken (a tombstone carries no value to sign).
    signature: str | None = Field(default=None, pattern=r"^v1\.[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9_-]{43}$")


class IncidentPurgedMessage(_Message):
    """Intake purged the incident: dedupe and dispatch delete their rows and destroy their data
    keys on reading it (what remains is an audit summary without personal data)."""

    type: Literal["incident-purged"] = "incident-purged"
    incident_id: Id
    purged_at: datetime
    # HMAC of every other field (services/common/signing.py), as on incidents and notices: a
    # forged key or purge message must not be taken (a tombstone carries no value to sign).
    signature: str | None = Field(default=None, pattern=r"^v1\.[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9_-]{43}$")


IncidentLifecycleTopicMessage = Annotated[
    IncidentKeyMessage | IncidentClosedMessage | IncidentPurgedMessage, Field(discriminator="type")
]
_lifecycle_adapter = TypeAdapter(IncidentLifecycleTopicMessage,
                               config=ConfigDict(hide_input_in_errors=True))


def decode_incident_lifecycle(value: bytes | None) -> IncidentLifecycleTopicMessage | None:
    """None for a tombstone (a purged incident's destroyed key)."""
    if value is None:
        return None
    return _lifecycle_adapter.validate_json(value)
