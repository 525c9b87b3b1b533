"""Request and response bodies of dispatch's HTTP API.

The receipt callback's body ({id, reference, status, occurred_at?}) is read raw: its signature
covers the exact bytes, so providers/receipts.py verifies and then parses it."""

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field


class ReceiptResult(BaseModel):
    # delivery_state.ReceiptOutcome, less 'unknown' (answered 404 receipt.reference_unknown).
    outcome: Literal["updated", "duplicate", "stale"] = Field(
        description="updated; duplicate (already recorded); stale (contradicts a final state, "
        "or names an earlier reference of the delivery)"
    )


class DeliverySummary(BaseModel):
    incident_id: str
    notices: int = Field(description="notices received for the incident")
    awaiting_incident: int = Field(description="notices stored before their incident arrived")
    by_channel: dict[str, dict[str, int]] = Field(
        description="deliveries by channel and status, e.g. {\"email\": {\"sent\": 3}}"
    )


class MailoutCreate(BaseModel):
    model_config = {"extra": "forbid"}

    limit: int = Field(default=500, ge=1, le=1000, description="at most this many letters")
    large_print: bool = Field(default=False, description="16 pt large-print letters")


class MailoutBatchView(BaseModel):
    batch_id: str
    incident_id: str
    letters: int
    large_print: bool
    letter_date: str = Field(description="the date printed on the letters (New Zealand)")
    created_at: str
    posted_at: str | None = Field(description="when the print house posted it; null: not yet")
    returned: int = Field(description="letters that came back undelivered")


class MailoutBatchList(BaseModel):
    batches: list[MailoutBatchView]


class ReturnedMail(BaseModel):
    model_config = {"extra": "forbid"}

    reference: str = Field(min_length=1, max_length=128,
                           description="the reference printed on the letter, or its notice id")


class ReturnedMailResult(BaseModel):
    outcome: Literal["recorded", "already-recorded"]


class NoticePreview(BaseModel):
    language: Literal["en", "mi"]
    bilingual: bool = Field(description="te reo and English in one message")
    templates_mi_fingerprint: str | None = Field(
        description="approve exactly these te reo templates with this value (intake); "
        "null: the incident has none")
    templates_mi_approved: bool = Field(description="whether dispatch uses them now")
    dry_run: bool = Field(description="a rehearsal: marked, and sent only to the simulated gateways")
    email_subject: str
    email_text: str
    email_html: str
    sms: str
    sms_segments: int
    sms_encoding: str
    letter_text: str


# --- "is this notice genuine?" (public) -----------------------------------------------------


def _iso_text(value: object) -> object:
    # ISO 8601 text (the schema's format), never a number lax parsing would read as Unix time.
    if not isinstance(value, str):
        raise ValueError("expected a date as YYYY-MM-DD")
    return value


class NoticeCheck(BaseModel):
    model_config = {"extra": "forbid"}

    reference: str = Field(min_length=1, max_length=40,
                           description="the reference printed on the notice, e.g. PAN-7K3Q-9XWD-M2TR "
                           "(case, spaces and dashes as typed)")
    date_of_birth: Annotated[date, BeforeValidator(_iso_text)] = Field(
        description="the person's date of birth (YYYY-MM-DD)")


class CheckedAgency(BaseModel):
    name: str
    data_categories: list[str] = Field(description="the kinds of information it held")


class CheckedContact(BaseModel):
    organisation: str
    phone: str
    web_address: str
    hours: str | None


class CheckedNotice(BaseModel):
    incident_title: str
    sender_name: str
    breach_description: str
    agencies: list[CheckedAgency]
    contact: CheckedContact
    version: int = Field(description="1, or the number of the update")


class NoticeCheckResult(BaseModel):
    result: Literal["confirmed", "not-confirmed"] = Field(
        description="not-confirmed: no notice has this reference, or the date of birth is not "
        "the one it was sent for — the two are never told apart")
    notice: CheckedNotice | None = Field(description="what the notice said; null unless confirmed")
    advice: str


# --- the call centre ------------------------------------------------------------------------


class NoticeLookupByDateOfBirth(BaseModel):
    model_config = {"extra": "forbid"}

    reference: str = Field(min_length=1, max_length=40, description="the reference the caller reads out")
    date_of_birth: Annotated[date, BeforeValidator(_iso_text)] = Field(
        description="the caller's date of birth (checked against the notice)")


class NoticeLookupByDetail(BaseModel):
    model_config = {"extra": "forbid"}

    reference: str = Field(min_length=1, max_length=40, description="the reference the caller reads out")
    verified_detail: Literal["name-and-address", "email", "mobile"] = Field(
        description="instead of a date of birth: the detail the operator verified with the caller "
        "(recorded in the audit log)")


# One or the other, never both or neither (the schema says so: each forbids the other's field).
NoticeLookup = NoticeLookupByDateOfBirth | NoticeLookupByDetail


class LookupDelivery(BaseModel):
    channel: str
    status: str
    attempts: int
    provider: str | None
    reason_code: str | None
    created_at: str
    updated_at: str


class LookupEvent(BaseModel):
    channel: str
    status: str
    attempt: int
    provider: str | None
    reason_code: str | None
    at: str


class LookupSent(BaseModel):
    channel: str
    revision: int = Field(description="the incident revision it was rendered with")
    subject: str | None
    text: str = Field(description="the message as sent (an SMS body, an email's text part, the "
                      "letter's text)")
    problem: str | None = Field(description="why it could not be rendered again; null: it was")


class LookupVersion(BaseModel):
    notice_id: str
    version: int
    reference: str | None
    received_at: str


class ScriptedAnswer(BaseModel):
    id: str
    question: str
    answer: str


class ScriptedAnswers(BaseModel):
    answers: list[ScriptedAnswer]


class NoticeLookupResult(BaseModel):
    notice_id: str
    reference: str
    version: int
    preferred_language: str
    has_representative: bool
    unreachable: bool = Field(description="no channel reached them: on the s 115 public-notice list")
    held: bool = Field(description="dedupe holds the person under s 116 now (a hold that came "
                       "after this notice: nothing more is sent to them); never why")
    held_guidance: str | None = Field(description="when held: what the operator must (not) say")
    agencies: list[CheckedAgency]
    deliveries: list[LookupDelivery]
    history: list[LookupEvent]
    sent: list[LookupSent]
    versions: list[LookupVersion] = Field(description="every version of the person's notice "
                                          "(amendments), oldest first")
    scripted_answers: list[ScriptedAnswer]
class StoredNoticePreview(BaseModel):
    """A stored notice rendered as it was sent (with the incident revision and wording its
    deliveries were pinned to) or would be sent now; shows the person's name and contacts."""

    notice_id: str
    version: int
    incident_revision: int = Field(description="the incident revision it is rendered with")
    language: Literal["en", "mi"]
    sent: bool = Field(description="true: as it was sent (its deliveries' pinned revision); "
                       "false: as it would be sent now")
    dry_run: bool = Field(description="a rehearsal: marked, and sent only to the simulated gateways")
    email_subject: str | None = Field(description="null: the addressee has no email address")
    email_text: str | None
    email_html: str | None
    sms: str | None = Field(description="null: the addressee has no mobile number")
    sms_segments: int | None
    sms_encoding: str | None
    letter_text: str
