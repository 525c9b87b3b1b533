"""Provider contracts. Every client maps its own outcomes to our DeliveryStatus through an
explicit STATUS_MAP, so "what does a 452 mean for us" is answered by reading one dict."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from services.common.messages import DeliveryStatus


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

    @property
    def accepted(self) -> bool:
        return self.status in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)


class EmailProvider(ABC):
    name: str = "email"
    STATUS_MAP: ClassVar[Mapping[str, DeliveryStatus]]

    @abstractmethod
    async def send(self, message: EmailMessage) -> ProviderResult: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class SmsProvider(ABC):
    name: str = "sms"
    STATUS_MAP: ClassVar[Mapping[str, DeliveryStatus]]

    @abstractmethod
    async def send(self, message: SmsMessage) -> ProviderResult: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass
