"""Delivery state machine for one notice on one channel.

queued -> sending -> sent -> delivered | temporary-failure | permanent-failure | technical-failure

The allowed transitions are data (ALLOWED_TRANSITIONS) so they can be reviewed, tested and
rendered in docs without reading control flow.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"  # accepted by the provider; no receipt yet
    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary-failure"  # recipient side, may succeed later (mailbox full, 4xx)
    PERMANENT_FAILURE = "permanent-failure"  # recipient side, will not succeed (5xx, bad number)
    TECHNICAL_FAILURE = "technical-failure"  # our side or the provider's (connection, 5xx API)


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
    }
)

TERMINAL_STATES: frozenset[DeliveryStatus] = frozenset({S.DELIVERED, S.PERMANENT_FAILURE})
RETRYABLE_STATES: frozenset[DeliveryStatus] = frozenset({S.TEMPORARY_FAILURE, S.TECHNICAL_FAILURE})


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


def can_transition(current: DeliveryStatus | str, target: DeliveryStatus | str) -> bool:
    return DeliveryStatus(target) in ALLOWED_TRANSITIONS[DeliveryStatus(current)]


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
