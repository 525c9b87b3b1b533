"""Provider contracts. Every client classifies each answer a send can get through an explicit
map (ANSWERS), as GOV.UK Notify's clients do, so "what does a 502 mean for us" is answered by
reading one dict: accepted, permanent (this message will never be accepted here: fall back),
temporary (certainly not taken: retry later; another gateway may be tried) or ambiguous (it may
have been taken: retry only this gateway, with the same reference and the same body). Message
statuses in receipts and status lookups map to our DeliveryStatus through STATUS_MAP, and what a
status lookup's answers mean through LOOKUP_ANSWERS. One more class is ours, not
the provider's: unsent (our own wait for a connection timed out — nothing left this process,
and nothing was learnt about the provider: retry later, same gateway, no health mark)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from services.common.messages import DeliveryStatus


class Answer(StrEnum):
    ACCEPTED = "accepted"
    PERMANENT = "permanent"
    TEMPORARY = "temporary"
    AMBIGUOUS = "ambiguous"
    UNSENT = "unsent"


@dataclass(frozen=True)
class Verdict:
    """What one kind of answer means: its class, and the delivery status it records."""

    answer: Answer
    status: DeliveryStatus

    @property
    def ambiguous(self) -> bool:
        return self.answer is Answer.AMBIGUOUS

    @property
    def unsent(self) -> bool:
        return self.answer is Answer.UNSENT


def accepted(status: DeliveryStatus = DeliveryStatus.SENT) -> Verdict:
    return Verdict(Answer.ACCEPTED, status)


def permanent() -> Verdict:
    return Verdict(Answer.PERMANENT, DeliveryStatus.PERMANENT_FAILURE)


def temporary(status: DeliveryStatus = DeliveryStatus.TECHNICAL_FAILURE) -> Verdict:
    """Certainly not taken. TEMPORARY_FAILURE for the recipient's side (4xx, 429),
    TECHNICAL_FAILURE for ours or the gateway's (connection refused, credentials, 500/503)."""
    return Verdict(Answer.TEMPORARY, status)


def ambiguous() -> Verdict:
    return Verdict(Answer.AMBIGUOUS, DeliveryStatus.TECHNICAL_FAILURE)


def unsent() -> Verdict:
    """Never left us (our own connection wait timed out): not the provider's answer at all."""
    return Verdict(Answer.UNSENT, DeliveryStatus.TECHNICAL_FAILURE)


@dataclass(frozen=True)
class EmailMessage:
    reference: str  # our idempotency reference, e.g. f"{notice_id}:email"
    to: str
    from_addr: str
    subject: str
    text: str
    html: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SmsMessage:
    reference: str  # our idempotency reference, e.g. f"{notice_id}:sms"
    to: str  # E.164
    body: str
    callback_url: str | None = None
    # The gateway the delivery row pins this reference to, and whether that gateway may already
    # hold it (then only it is tried): see providers/failover.py.
    gateway: str | None = None
    pinned: bool = False


@dataclass(frozen=True)
class ProviderResult:
    provider_reference: str | None
    status: DeliveryStatus
    provider: str = ""
    # Short machine-readable cause (e.g. "smtp-451", "http-429", "connect-error"); never
    # personal data, so it is safe to log and store.
    detail: str | None = None
    retry_after: float | None = None  # seconds, when the provider told us
    # True when the request may have reached the provider (timeout after sending): retry the
    # SAME provider with the same reference, never fail over (that could double-send).
    ambiguous: bool = False
    # True when it never left this process (our own connection wait timed out): says nothing
    # about the provider's health, so no failover mark and no move (retried there later).
    unsent: bool = False

    @property
    def accepted(self) -> bool:
        return self.status in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)

    @classmethod
    def of(cls, verdict: Verdict, provider: str, detail: str, provider_reference: str | None = None,
           retry_after: float | None = None) -> ProviderResult:
        return cls(provider_reference, verdict.status, provider, detail, retry_after,
                   verdict.ambiguous, verdict.unsent)


class Lookup(StrEnum):
    """What asking a provider for a message's status can give (an SMS client's LOOKUP_ANSWERS)."""

    STATUS = "status"  # the provider said: its message status, mapped through STATUS_MAP
    NOT_FOUND = "not-found"  # the provider does not know that message id
    UNANSWERED = "unanswered"  # no usable answer (our credentials, its fault, the network)


@dataclass(frozen=True)
class StatusAnswer:
    """A provider's answer to "what became of message <id>?". `status` and `provider_status`
    only with Lookup.STATUS; `reference` is ours, as the provider holds it (when it says)."""

    lookup: Lookup
    detail: str  # short, machine-readable, never personal data
    status: DeliveryStatus | None = None
    provider_status: str | None = None
    reference: str | None = None


class EmailProvider(ABC):
    name: str = "email"
    ANSWERS: ClassVar[Mapping[str, Verdict]]

    @abstractmethod
    async def send(self, message: EmailMessage, deadline: float | None = None,
                   on_handover: Callable[[], None] | None = None) -> ProviderResult:
        """`deadline` (event-loop time) bounds the send up to the hand-over of the message
        and never after it: email has no idempotency, so an exchange cut once the relay may
        have the message would make the retry a second copy. `on_handover` is called when
        the hand-over starts (SMTP: DATA), so the caller cuts nothing from then on either."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class SmsProvider(ABC):
    name: str = "sms"
    ANSWERS: ClassVar[Mapping[str | int, Verdict]]
    STATUS_MAP: ClassVar[Mapping[str, DeliveryStatus]]  # message statuses (answers, receipts)

    @abstractmethod
    async def send(self, message: SmsMessage) -> ProviderResult: ...

    async def send_batch(self, messages: Sequence[SmsMessage]) -> list[ProviderResult]:
        """Each message's answer, in order. A provider with a bulk API sends them in one
        request (HttpSmsProvider); by default, one send each, at once."""
        return list(await asyncio.gather(*(self.send(m) for m in messages)))

    async def status(self, provider_reference: str) -> StatusAnswer:
        """What the provider says became of the message it took as `provider_reference` (the
        status lookup: services/dispatch/status_lookup.py). A provider without a status API
        never answers, so nothing is ever decided from it."""
        return StatusAnswer(Lookup.UNANSWERED, "no-status-api")

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass
