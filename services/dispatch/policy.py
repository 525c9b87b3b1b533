"""Dispatch policy: which channel, in which order after failures, when, and how often.

Pure functions and small value objects (no database, no HTTP): the store persists, the sender
and services/dispatch/tracking.py schedule. The one fallback order is
`next_channel_after_permanent_failure`; production reaches it through `fallback_channel`.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo

from services.common.messages import DeliveryStatus
from services.dispatch.content.models import Notice


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    POSTAL = "postal"


class Outcome(StrEnum):
    SEND = "send"
    HELD = "held"  # s116 hold: do not send until released
    UNREACHABLE = "unreachable"  # no usable channel: goes on the s115 public-notice list


Mode = Literal["email_else_sms", "both", "sms_else_email"]
DEFAULT_FALLBACK: tuple[Channel, ...] = (Channel.EMAIL, Channel.SMS, Channel.POSTAL)


@dataclass(frozen=True)
class IncidentPolicy:
    mode: Mode = "email_else_sms"
    fallback: tuple[Channel, ...] = DEFAULT_FALLBACK

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | IncidentPolicy | None) -> IncidentPolicy:
        if isinstance(data, IncidentPolicy):
            return data
        data = data or {}
        mode = data.get("mode", "email_else_sms")
        if mode not in ("email_else_sms", "both", "sms_else_email"):
            raise ValueError(f"unknown channel mode {mode!r}")
        fallback = tuple(Channel(c) for c in data.get("fallback", DEFAULT_FALLBACK))
        if len(set(fallback)) != len(fallback):
            raise ValueError("fallback lists a channel twice")
        return cls(mode=mode, fallback=fallback)


@dataclass(frozen=True)
class ChannelPlan:
    outcome: Outcome
    send_now: tuple[Channel, ...] = ()  # send these in parallel straight away
    fallback: tuple[Channel, ...] = ()  # then these, in order, after permanent failures


def available_channels(notice: Notice) -> frozenset[Channel]:
    """Channels we hold contact details for, for the addressee (representative if any)."""
    found = set()
    if notice.addressee_email:
        found.add(Channel.EMAIL)
    if notice.addressee_mobile:
        found.add(Channel.SMS)
    if notice.addressee_address:
        found.add(Channel.POSTAL)
    return frozenset(found)


def _preference(policy: IncidentPolicy) -> tuple[Channel, ...]:
    first = {
        "email_else_sms": (Channel.EMAIL, Channel.SMS),
        "sms_else_email": (Channel.SMS, Channel.EMAIL),
        "both": (Channel.EMAIL, Channel.SMS),
    }[policy.mode]
    rest = tuple(c for c in policy.fallback if c not in first)
    # Only channels named in the fallback list are allowed at all.
    return tuple(c for c in first if c in policy.fallback) + rest


def choose_channels(
    notice: Notice | Mapping[str, Any], incident_policy: Mapping[str, Any] | IncidentPolicy | None
) -> ChannelPlan:
    notice = notice if isinstance(notice, Notice) else Notice.model_validate(notice)
    if notice.hold:
        return ChannelPlan(Outcome.HELD)
    return plan_channels(available_channels(notice), incident_policy)


def plan_channels(
    available: Collection[Channel | str],
    incident_policy: Mapping[str, Any] | IncidentPolicy | None,
) -> ChannelPlan:
    """The plan for an addressee with contact details for `available` channels (the contract's
    NoticeMessage.channels), under the incident's channel policy."""
    policy = IncidentPolicy.from_mapping(incident_policy)
    have = {Channel(c) for c in available}
    usable = [c for c in _preference(policy) if c in have]
    if not usable:
        return ChannelPlan(Outcome.UNREACHABLE)
    if policy.mode == "both":
        digital = tuple(c for c in usable if c in (Channel.EMAIL, Channel.SMS))
        now = digital or (usable[0],)
    else:
        now = (usable[0],)
    return ChannelPlan(Outcome.SEND, now, tuple(c for c in usable if c not in now))


def first_channels(
    available: Collection[Channel | str],
    incident_policy: Mapping[str, Any] | IncidentPolicy | None,
) -> tuple[str, ...]:
    """The channels a new notice is queued on: the plan's `send_now`, or 'none' (unreachable)
    when no channel it has contact details for is allowed."""
    plan = plan_channels(available, incident_policy)
    if plan.outcome is not Outcome.SEND:
        return ("none",)
    return tuple(c.value for c in plan.send_now)


def next_channel_after_permanent_failure(
    available: Collection[Channel | str],
    incident_policy: Mapping[str, Any] | IncidentPolicy | None,
    attempted: Collection[Channel | str],
) -> Channel | None:
    """Next channel to try once every channel in `attempted` has failed permanently: the plan's
    channels in order (send_now, then fallback), skipping those tried.

    None means there is nothing left: if no channel delivered, the person is 'unreachable'.
    """
    plan = plan_channels(available, incident_policy)
    tried = {Channel(c) for c in attempted}
    for channel in (*plan.send_now, *plan.fallback):
        if channel not in tried:
            return channel
    return None


def fallback_channel(
    available: Collection[Channel | str],
    incident_policy: Mapping[str, Any] | IncidentPolicy | None,
    deliveries: Mapping[str, str],
) -> str | None:
    """After a permanent failure of one of a notice's `deliveries` ({channel: status}): the
    channel to queue next ('none': nobody can be reached, the public-notice list), or None
    while another channel of the notice is still on its way, delivered or queued (in 'both'
    mode a failure on one channel does not trigger fallback)."""
    if any(status != DeliveryStatus.PERMANENT_FAILURE for status in deliveries.values()):
        return None
    nxt = next_channel_after_permanent_failure(available, incident_policy, deliveries)
    return nxt.value if nxt is not None else "none"


def sms_full_notice_via(
    email_active: bool, has_address: bool, postal_allowed: bool
) -> Literal["email", "postal", "none"]:
    """Where an SMS says the full notice is: "we have emailed you" only while an email of the
    same notice is on its way or delivered; else a letter (postal allowed and an address held);
    else nowhere (the SMS carries a short summary)."""
    if email_active:
        return "email"
    return "postal" if has_address and postal_allowed else "none"


def correction_has_anything_to_say(kind: str, earlier_told: bool) -> bool:
    """Whether a correction notice has anything to say (docs/decisions.md, "A correction for a
    notice never sent"). It corrects what the person was told; when no earlier version of their
    notice reached them (still queued for the morning, superseded, never sent), there is
    nothing to correct. `sent_in_error` then sends nothing: the person was never affected and
    never told, and the wrong notice is superseded unsent. `agency_not_involved` still goes
    out, rendered as the person's first notice about the agencies that stand (the renderer
    decides that from what the delivery pins: `Notice.updates_earlier`)."""
    return earlier_told or kind != "sent_in_error"


# ------------------------------------------------------------------------------ quiet hours

NZ = ZoneInfo("Pacific/Auckland")


@dataclass(frozen=True)
class QuietHours:
    """No SMS between `start` and `end` local time (the window may cross midnight)."""

    start: time = time(21, 0)
    end: time = time(8, 0)
    tz: ZoneInfo = NZ

    def _in_window(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def is_quiet(self, now: datetime) -> bool:
        return self._in_window(_aware(now).astimezone(self.tz).time().replace(tzinfo=None))

    def next_allowed(self, now: datetime) -> datetime:
        """`now` if SMS may be sent now, else the (UTC) instant quiet hours end.

        Computed on the local wall clock and converted back through zoneinfo, so a DST change
        inside the window moves the UTC instant, not the local end time.
        """
        now = _aware(now)
        if not self.is_quiet(now):
            return now
        local = now.astimezone(self.tz)
        day = local.date()
        if local.time().replace(tzinfo=None) >= self.end:
            day += timedelta(days=1)
        end_local = datetime.combine(day, self.end, tzinfo=self.tz)
        # A wall time inside a DST gap does not exist; the UTC round-trip normalises it forward.
        return end_local.astimezone(UTC)


def sendable_channels(quiet: QuietHours | None, now: datetime) -> list[str]:
    """What the sender may claim now: SMS waits for morning in quiet hours; email is not held."""
    if quiet is not None and quiet.is_quiet(now):
        return ["email"]
    return ["email", "sms"]


def first_attempt_at(channel: str, quiet: QuietHours | None, now: datetime) -> datetime:
    """When a newly queued delivery is due: an SMS queued in quiet hours waits for their end."""
    if channel == "sms" and quiet is not None:
        return quiet.next_allowed(now)
    return now


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return dt


# ------------------------------------------------------------------------------ retry backoff


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and total elapsed time.

    Full jitter (delay ~ U(0, min(cap, base*2^n))) spreads retries from a large batch so a
    recovering provider is not hit by a synchronised wave.
    """

    base_seconds: float = 30.0
    cap_seconds: float = 3600.0
    max_attempts: int = 12
    max_total: timedelta = timedelta(hours=24)

    def ceiling(self, attempt: int) -> float:
        return min(self.cap_seconds, self.base_seconds * (2 ** max(attempt - 1, 0)))

    def next_delay(
        self, attempt: int, elapsed: timedelta, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up.

        `attempt` is the number of attempts already made (>= 1); `elapsed` is the time since
        the first attempt.
        """
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        if attempt >= self.max_attempts:
            return None
        remaining = (self.max_total - elapsed).total_seconds()
        if remaining <= 0:
            return None
        delay = (rng or random).uniform(0, self.ceiling(attempt))
        return min(delay, remaining)


@dataclass(frozen=True)
class RetryDecision:
    status: DeliveryStatus  # the failure again (retried when due) or PERMANENT_FAILURE
    next_attempt_at: float  # epoch seconds; 0.0 when giving up

    @property
    def gave_up(self) -> bool:
        return self.status is DeliveryStatus.PERMANENT_FAILURE


def retry_or_give_up(
    retry: RetryPolicy, failure: DeliveryStatus, attempts: int, first_attempt_at: float | None,
    now: datetime, retry_after: float | None = None,
) -> RetryDecision:
    """After a temporary or technical failure: back off and try again, within the policy's
    bounds (attempts, total time since the first attempt), or give up. A provider's
    Retry-After is respected as a minimum."""
    now_s = now.timestamp()
    first = first_attempt_at or now_s
    delay = retry.next_delay(max(attempts, 1), timedelta(seconds=now_s - first))
    if delay is None:
        return RetryDecision(DeliveryStatus.PERMANENT_FAILURE, 0.0)
    return RetryDecision(failure, now_s + max(delay, retry_after or 0.0))


# ------------------------------------------------------------------------------ status lookups

# An SMS the gateway took is asked about this long after, if no receipt has settled it
# (services/dispatch/status_lookup.py; settings.status_lookup_after_s).
STATUS_LOOKUP_AFTER_S = 900.0
# Channels whose provider can be asked what became of a message. Not email: SMTP ends at the
# relay's 250, and nothing in the protocol can be asked afterwards (docs/decisions.md).
LOOKED_UP_CHANNELS: frozenset[str] = frozenset({"sms"})


def status_lookup_at(channel: str, status: DeliveryStatus, now: datetime,
                     after_s: float) -> float | None:
    """When an accepted delivery is first due for a status lookup (epoch seconds), or None to
    leave its timer alone (email; or delivered already: nothing to ask)."""
    if channel not in LOOKED_UP_CHANNELS or status is not DeliveryStatus.SENT:
        return None
    return now.timestamp() + after_s
