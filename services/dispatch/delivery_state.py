"""The delivery state machine for one notice on one channel, and what a receipt does to it.

queued -> sending -> sent -> delivered | temporary-failure | permanent-failure | technical-failure
unreachable: the row of channel 'none' (no channel left), created in that state and final.
superseded: never sent, because a newer version of the person's notice arrived first; final.
not-needed: never sent, a sent-in-error correction none of whose person's earlier versions
reached them (bounced, failed, never sent): nothing to correct; final.

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
        S.QUEUED: frozenset({S.SENDING, S.TECHNICAL_FAILURE, S.SUPERSEDED, S.NOT_NEEDED}),
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
        # Retryable failures go back to sending (same provider reference => idempotent), unless
        # a newer version of the notice replaced them first.
        S.TEMPORARY_FAILURE: frozenset({S.SENDING, S.PERMANENT_FAILURE, S.SUPERSEDED,
                                        S.NOT_NEEDED}),
        # ... or a receipt says the attempt we never heard back from (a crash, a deadline)
        # was delivered after all: nothing to resend.
        S.TECHNICAL_FAILURE: frozenset(
            {S.SENDING, S.PERMANENT_FAILURE, S.SUPERSEDED, S.DELIVERED, S.NOT_NEEDED}
        ),
        # A late bounce can still arrive for mail the receiving server first accepted.
        S.DELIVERED: frozenset({S.PERMANENT_FAILURE}),
        S.PERMANENT_FAILURE: frozenset(),
        # Nothing was sent, so nothing can report on it: no receipt or retry moves it.
        S.UNREACHABLE: frozenset(),
        S.SUPERSEDED: frozenset(),
        S.NOT_NEEDED: frozenset(),
    }
)

TERMINAL_STATES: frozenset[DeliveryStatus] = frozenset(
    {S.DELIVERED, S.PERMANENT_FAILURE, S.UNREACHABLE, S.SUPERSEDED, S.NOT_NEEDED}
)
RETRYABLE_STATES: frozenset[DeliveryStatus] = frozenset({S.TEMPORARY_FAILURE, S.TECHNICAL_FAILURE})
ACCEPTED_STATES: frozenset[DeliveryStatus] = frozenset({S.SENT, S.DELIVERED})
# What the sender claims once due ('sending' only once its lease has expired: the process that
# claimed it is presumed dead). Ordered tuples: they are spelled into SQL.
DUE_STATES: tuple[DeliveryStatus, ...] = (S.QUEUED, S.TEMPORARY_FAILURE, S.TECHNICAL_FAILURE)
# Not handed to any gateway (or handed and certainly refused): what a newer version of the
# person's notice supersedes. A delivery in 'sending' or later stays; the newer one follows it.
UNSENT_STATES: tuple[DeliveryStatus, ...] = DUE_STATES
# What an earlier version must have reached for a newer one to say "this updates the notice we
# sent you earlier".
TOLD_STATES: tuple[DeliveryStatus, ...] = (S.SENDING, S.SENT, S.DELIVERED)
# Certain never to reach the person: what a sent-in-error correction looks for in every earlier
# version before it is sent (anything else — on its way, accepted, delivered, or due to be
# retried — may reach them, so the correction goes).
NEVER_REACHED_STATES: tuple[DeliveryStatus, ...] = (
    S.PERMANENT_FAILURE, S.UNREACHABLE, S.SUPERSEDED, S.NOT_NEEDED)
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


def resend_needs_new_reference(channel: str) -> bool:
    """A resend after a receipt's temporary failure: SMS needs a new reference (the gateway
    would answer with the original message and send nothing); email keeps its reference, so
    the resend carries the same Message-ID and receivers can drop a duplicate."""
    return channel == "sms"


def parse_reference(reference: str) -> tuple[str, str]:
    """(notice_id, channel) of a reference made by reference_for."""
    notice_id, _, rest = reference.partition(":")
    return notice_id, rest.split(":", 1)[0]


# ------------------------------------------------------------------------------ outcomes


def outcome_is_current(status: str, attempts: int, attempt: int,
                       lease_owner: str | None = None, owner: str | None = None) -> bool:
    """Whether a gateway's answer to attempt `attempt`, held by sender `owner`, still applies.
    It does not once the delivery has moved on: a receipt overtook it, or the claim was
    recovered from an owner presumed dead (another sender may be sending it now); then the row's
    current state is the truth, and a sender that lost its claim never records over another's."""
    return status == S.SENDING and attempts == attempt and lease_owner == owner


def may_hold_after(held_before: bool, status: DeliveryStatus, ambiguous: bool) -> bool:
    """Whether a gateway may hold the message under this reference after an attempt: once it
    may (accepted, or an answer that does not say), every later attempt must go to that gateway
    with the same body; a failure that certainly left nothing there changes nothing."""
    return held_before or ambiguous or status in ACCEPTED_STATES


# An email provider's "deferred": it could not deliver yet and keeps trying. Not a failure to act
# on: the delivery stays 'sent' (a timer notes it, see tracking.expire_deferrals); only a bounce,
# or no word at all for `email_deferral_timeout_s`, moves it on.
DEFERRAL_STATUSES: frozenset[str] = frozenset({"deferred"})


def is_deferral(channel: str, provider_status: str) -> bool:
    return channel == "email" and provider_status in DEFERRAL_STATUSES


def lookup_settles(reported: DeliveryStatus) -> bool:
    """Whether a status lookup's answer is applied (as a receipt): anything but "still on its
    way" — which would change nothing, and is asked again later."""
    return reported not in (S.SENT, S.SENDING)


class ReceiptOutcome(StrEnum):
    UPDATED = "updated"
    DUPLICATE = "duplicate"  # the delivery already has the reported status
    STALE = "stale"  # contradicts a final state, or is for an earlier generation
    UNKNOWN = "unknown"  # no delivery has that reference
    WRONG_PROVIDER = "wrong-provider"  # the delivery went through another provider
    REPLAYED = "replayed"  # this signed receipt (its nonce) was taken already


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
