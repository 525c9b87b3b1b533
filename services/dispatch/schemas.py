"""Request and response bodies of dispatch's HTTP API.

The receipt callback's body ({id, reference, status, occurred_at?}) is read raw: its signature
covers the exact bytes, so providers/receipts.py verifies and then parses it."""

from typing import Literal

from pydantic import BaseModel, Field


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
