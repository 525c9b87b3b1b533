"""The delivery state machine for one notice on one channel, and what a receipt does to it.

queued -> sending -> sent -> delivered | temporary-failure | permanent-failure | technical-failure
unreachable: the row of channel 'none' (no channel left), created in that state and final.

The statuses are the contract's (services.common.messages.DeliveryStatus); the allowed
transitions are data (ALLOWED_TRANSITIONS) so they can be reviewed, tested and rendered in docs
without reading control flow. Pure: no database, no HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from services.common.messages import DeliveryStatus

S = DeliveryStatus

ALLOWED_TRANSITIONS: MappingProxyType[DeliveryStatus, frozenset[DeliveryStatus]] = MappingProxyType(
    {
        S.QUEUED: frozenset({S.SENDING, S.TECHNICAL_FAILURE}),
        S.SENDING: frozenset(
            {
                S.SENT,
                # Receipts can overtake the provider's own HTTP answer.
                S.DELIVERED,
                S.TEMPORARY_FAILURE,
                S.PERMANENT_FAILURE,
                # Also how a notice stuck in "sending" is closed off so it can be retried.
                S.TECHNICAL_FAILURE,
            }
        ),
        S.SENT: frozenset(
            {S.DELIVERED, S.TEMPORARY_FAILURE, S.PERMANENT_FAILURE, S.TECHNICAL_FAILURE}
        ),
        # Retryable failures go back to sending (same provider reference => idempotent).
        S.TEMPORARY_FAILURE: frozenset({S.SENDING, S.PERMANENT_FAILURE}),
        S.TECHNICAL_FAILURE: frozenset({S.SENDING, S.PERMANENT_FAILURE}),
        # A late bounce can still arrive for mail the receiving server first accepted.
        S.DELIVERED: frozenset({S.PERMANENT_FAILURE}),
        S.PERMANENT_FAILURE: frozenset(),
        # Nothing was sent, so nothing can report on it: no receipt or retry moves it.
        S.UNREACHABLE: frozenset(),
    }
)

TERMINAL_STATES: frozenset[DeliveryStatus] = frozenset(
    {S.DELIVERED, S.PERMANENT_FAILURE, S.UNREACHABLE}
)
RETRYABLE_STATES: frozenset[DeliveryStatus] = frozenset({S.TEMPORARY_FAILURE, S.TECHNICAL_FAILURE})
ACCEPTED_STATES: frozenset[DeliveryStatus] = frozenset({S.SENT, S.DELIVERED})
# What the sender claims once due ('sending' only once its lease has expired: the process that
# claimed it is presumed dead). Ordered tuples: they are spelled into SQL.
DUE_STATES: tuple[DeliveryStatus, ...] = (S.QUEUED, S.TEMPORARY_FAILURE, S.TECHNICAL_FAILURE)
# Still in progress: what backpressure counts. Postal rows wait for a mail-out, not for us, so
# they are not counted.
PENDING_STATES: tuple[DeliveryStatus, ...] = (
    S.QUEUED, S.SENDING, S.TEMPORARY_FAILURE, S.TECHNICAL_FAILURE
)
# Channels the sender sends on; postal waits for the mail-out, 'none' for the public notice.
SENDABLE_CHANNELS: tuple[str, ...] = ("email", "sms")


class IllegalTransition(ValueError):
    """Raised when a delivery status change is not in ALLOWED_TRANSITIONS."""

    def __init__(self, current: DeliveryStatus, target: DeliveryStatus) -> None:
        allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[current])) or "none (terminal)"
        super().__init__(
            f"illegal delivery transition {current.value!r} -> {target.value!r}; "
            f"allowed from {current.value!r}: {allowed}"
        )
        self.current = current
        self.target = target


def apply_transition(current: DeliveryStatus | str, target: DeliveryStatus | str) -> DeliveryStatus:
    """Return the new status, or raise IllegalTransition.

    Repeating a terminal status (a provider re-sending the same receipt) is a no-op, not an
    error: duplicate callbacks are normal and must not crash the receipt handler.
    """
    cur, tgt = DeliveryStatus(current), DeliveryStatus(target)
    if cur == tgt and cur in TERMINAL_STATES:
        return cur
    if tgt not in ALLOWED_TRANSITIONS[cur]:
        raise IllegalTransition(cur, tgt)
    return tgt


def initial_status(channel: str) -> DeliveryStatus:
    """A new delivery is queued, except channel 'none', which records that nobody can be
    reached and goes straight to its final state."""
    return S.UNREACHABLE if channel == "none" else S.QUEUED


# ------------------------------------------------------------------------------ references


def reference_for(notice_id: str, channel: str, generation: int = 0) -> str:
    """Our idempotency reference for a send: "<notice_id>:<channel>", plus ":g<n>" once a
    receipt told us to send again (the gateway dedupes on reference, so a resend needs a new
    one)."""
    base = f"{notice_id}:{channel}"
    return f"{base}:g{generation}" if generation else base


def parse_reference(reference: str) -> tuple[str, str]:
    """(notice_id, channel) of a reference made by reference_for."""
    notice_id, _, rest = reference.partition(":")
    return notice_id, rest.split(":", 1)[0]


# ------------------------------------------------------------------------------ outcomes


def outcome_is_current(status: str, attempts: int, attempt: int) -> bool:
    """Whether a gateway's answer to attempt `attempt` still applies. It does not once the
    delivery has moved on: a receipt overtook it, or the lease expired and another attempt
    started; then the row's current state is the truth."""
    return status == S.SENDING and attempts == attempt


class ReceiptOutcome(StrEnum):
    UPDATED = "updated"
    DUPLICATE = "duplicate"  # the delivery already has the reported status
    STALE = "stale"  # contradicts a final state, or is for an earlier generation
    UNKNOWN = "unknown"  # no delivery has that reference


@dataclass(frozen=True)
class ReceiptDecision:
    outcome: ReceiptOutcome
    status: DeliveryStatus | None = None  # the status to record, when UPDATED


def receipt_transition(
    current: DeliveryStatus | str, reported: DeliveryStatus, channel: str, *,
    current_generation: bool = True,
) -> ReceiptDecision:
    """What a provider's receipt does to a delivery in `current`. `current_generation` is False
    when the receipt names an earlier reference of the delivery (it was resent since)."""
    if not current_generation:
        return ReceiptDecision(ReceiptOutcome.STALE)
    if current == reported:
        return ReceiptDecision(ReceiptOutcome.DUPLICATE)
    if current == S.DELIVERED and channel != "email":
        # A handset receipt is final; only email has late bounces.
        return ReceiptDecision(ReceiptOutcome.STALE)
    try:
        return ReceiptDecision(ReceiptOutcome.UPDATED, apply_transition(current, reported))
    except IllegalTransition:
        return ReceiptDecision(ReceiptOutcome.STALE)
