"""Dispatch's own tables.

- dispatch_incident: the latest revision of each incident (content + channel policy), from the
  compacted incidents topic. No personal data.
- dispatch_notice: every notice received, as its contract JSON. The recipient inside stays
  sealed (AES-GCM, context notice|<notice_id>); nothing personal is stored in clear.
- dispatch_incident_revision: every revision of each incident, so a retried send renders with
  the revision its first attempt used (the same reference always carries the same body).
- delivery: one row per (notice, channel) with the delivery state machine
  (services/dispatch/delivery_state.py). Times the sender schedules on are epoch seconds
  (floats) so comparisons are the same on PostgreSQL and SQLite.
- dispatch_sender: one row per running sender (replica): its lease, renewed by heartbeat on the
  database's clock. A replica's claims are recovered only once its lease has lapsed.
- mailout_batch: one batch of letters for the print house (services/dispatch/mailouts.py). Its
  letters are the postal deliveries whose provider is 'mailout' and provider_reference the
  batch id; the PDF is rendered again from the sealed notices when downloaded, never stored.
- dispatch_delivery_history: every delivery event (the call centre's history).
- dispatch_notice_hold: whether a notified person is held under s 116 now (the call centre).
"""

from datetime import date, datetime

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from services.common.clock import utcnow


class DispatchIncident(SQLModel, table=True):
    __tablename__ = "dispatch_incident"

    incident_id: str = Field(primary_key=True, max_length=128)
    revision: int
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # IncidentMessage JSON
    updated_at: datetime = Field(default_factory=utcnow)


class DispatchIncidentRevision(SQLModel, table=True):
    __tablename__ = "dispatch_incident_revision"

    incident_id: str = Field(primary_key=True, max_length=128)
    revision: int = Field(primary_key=True)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # IncidentMessage JSON


class DispatchNotice(SQLModel, table=True):
    __tablename__ = "dispatch_notice"

    notice_id: str = Field(primary_key=True, max_length=128)
    incident_id: str = Field(index=True, max_length=128)
    person_id: str = Field(max_length=128)
    version: int
    # False until the incident is known and the deliveries are planned.
    planned: bool = Field(default=False)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # NoticeMessage JSON
    created_at: datetime = Field(default_factory=utcnow)
    # What the "is this notice genuine?" check reads (services/dispatch/genuine.py): the
    # reference printed on the notice, the data key its digests are made with, and the keyed
    # digests of the person's dates of birth (never a date).
    reference_code: str | None = Field(default=None, max_length=20, unique=True, index=True)
    check_key_id: str | None = Field(default=None, max_length=64)
    dob_checks: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class Delivery(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("notice_id", "channel"),
        Index(
            "ix_delivery_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued','temporary-failure','technical-failure')"),
            sqlite_where=text("status IN ('queued','temporary-failure','technical-failure')"),
        ),
        Index(
            "ix_delivery_sending",
            "lease_until",
            postgresql_where=text("status = 'sending'"),
            sqlite_where=text("status = 'sending'"),
        ),
        Index("ix_delivery_incident_status", "incident_id", "channel", "status"),
        # Due deliveries sent only if an earlier version reached the person: the few the
        # claim looks at again before sending (store/deliveries.settle_unneeded_corrections).
        Index(
            "ix_delivery_due_only_if_told",
            "channel", "next_attempt_at",
            postgresql_where=text("only_if_told AND status IN "
                                  "('queued','temporary-failure','technical-failure')"),
            sqlite_where=text("only_if_told AND status IN "
                              "('queued','temporary-failure','technical-failure')"),
        ),
        # A person's other versions (supersede, "updates the notice we sent you").
        Index("ix_delivery_person", "person_id", "incident_id"),
        # Emails a provider deferred: the timer that acts if it never says more.
        Index(
            "ix_delivery_deferred",
            "next_attempt_at",
            postgresql_where=text("status = 'sent' AND reason_code = 'receipt-deferred'"),
            sqlite_where=text("status = 'sent' AND reason_code = 'receipt-deferred'"),
        ),
        # SMS with no final receipt yet: when the status lookup asks about each next.
        Index(
            "ix_delivery_sms_sent",
            "next_attempt_at",
            postgresql_where=text("status = 'sent' AND channel = 'sms'"),
            sqlite_where=text("status = 'sent' AND channel = 'sms'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    notice_id: str = Field(max_length=128)
    incident_id: str = Field(max_length=128)
    person_id: str = Field(max_length=128)
    notice_version: int
    channel: str = Field(max_length=16)
    status: str = Field(max_length=32)
    attempts: int = 0
    # Our idempotency reference: "<notice_id>:<channel>", plus ":g<n>" when a receipt told us
    # to send again (the gateway dedupes on reference, so a resend needs a new one).
    reference: str = Field(max_length=200)
    generation: int = 0
    provider: str | None = Field(default=None, max_length=64)
    provider_reference: str | None = Field(default=None, max_length=200)
    reason_code: str | None = Field(default=None, max_length=64)
    next_attempt_at: float = 0.0
    # While 'sending': the replica that claimed it (dispatch_sender.owner) and, for rows claimed
    # before owners existed, the claim's own lease (epoch seconds, database clock).
    lease_owner: str | None = Field(default=None, max_length=128)
    lease_until: float | None = None
    first_attempt_at: float | None = None
    # What the current reference is pinned to, so every attempt under it is the same message:
    # the gateway it goes to (SMS: only that gateway can de-duplicate it), the incident revision
    # and the two choices the text makes. Chosen at the first claim of a reference; kept once
    # `may_hold` (a gateway may have the message: accepted, ambiguous answer, or abandoned);
    # cleared after a failure that certainly left nothing anywhere, and with a new reference.
    gateway: str | None = Field(default=None, max_length=64)
    may_hold: bool = False
    content_revision: int | None = None
    says_emailed: bool | None = None  # SMS: "we have emailed you"
    says_update: bool | None = None  # "this updates the notice we sent you earlier"
    # Sent only if an earlier version of the person's notice reached them (a sent-in-error
    # correction: policy.correction_has_anything_to_say), set when it is planned.
    only_if_told: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DispatchSender(SQLModel, table=True):
    """A sender's lease (epoch seconds on the database's clock, never a replica's)."""

    __tablename__ = "dispatch_sender"

    owner: str = Field(primary_key=True, max_length=128)
    started_at: float
    # Start of its current run of timely heartbeats (reset when it renews a lapsed lease).
    alive_since: float
    lease_until: float
    heartbeat_at: float


class ReceiptNonce(SQLModel, table=True):
    """A receipt's nonce, seen once: a replay of a signed receipt within its tolerance is
    refused (kept in the database, so across restarts and worker processes)."""

    __tablename__ = "dispatch_receipt_nonce"

    provider: str = Field(primary_key=True, max_length=64)
    nonce: str = Field(primary_key=True, max_length=64)
    seen_at: float = Field(index=True)  # unix seconds; forgotten after twice the tolerance



class MailoutBatch(SQLModel, table=True):
    """Letters handed to the print house together: one PDF and one manifest."""

    __tablename__ = "mailout_batch"

    batch_id: str = Field(primary_key=True, max_length=64)
    incident_id: str = Field(index=True, max_length=128)
    letters: int
    large_print: bool = False
    letter_date: date  # printed on every letter of the batch (New Zealand date)
    created_at: datetime = Field(default_factory=utcnow)
    posted_at: datetime | None = None



class DeliveryHistory(SQLModel, table=True):
    """Every delivery-event.v1 as it was written to the outbox (which forgets it once
    published): what the call centre reads as a notice's delivery history. Ids and statuses
    only, no personal data."""

    __tablename__ = "dispatch_delivery_history"

    id: int | None = Field(default=None, primary_key=True)
    notice_id: str = Field(index=True, max_length=128)
    channel: str = Field(max_length=16)
    status: str = Field(max_length=32)
    attempt: int
    provider: str | None = Field(default=None, max_length=64)
    reason_code: str | None = Field(default=None, max_length=64)
    at: datetime


class NoticeHold(SQLModel, table=True):
    """Whether dedupe holds a notified person under s 116 now (notice-hold on notices.v1): the
    call centre says "held — do not disclose" for their notices. The latest message wins (they
    come in order, keyed by the person). No ground, agency or record: none is sent."""

    __tablename__ = "dispatch_notice_hold"

    incident_id: str = Field(primary_key=True, max_length=128)
    person_id: str = Field(primary_key=True, max_length=128)
    held: bool
    changed_at: datetime


class NoticeAgency(SQLModel, table=True):
    """Which agencies a notice names (its payload's `agencies`), one row each, written with the
    notice: an agency's reconciliation finds its notices here instead of reading every payload."""

    __tablename__ = "dispatch_notice_agency"

    incident_id: str = Field(primary_key=True, max_length=128)
    agency_id: str = Field(primary_key=True, max_length=128)
    notice_id: str = Field(primary_key=True, max_length=128)


MODELS = [DispatchIncident, DispatchIncidentRevision, DispatchNotice, Delivery, DispatchSender,
          ReceiptNonce, MailoutBatch, DeliveryHistory, NoticeHold, NoticeAgency]
