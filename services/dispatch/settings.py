"""Dispatch configuration (env PANUI_*). Defaults point at the local gateways that
`python -m services.gateways.smtp_server` (port 1025) and `python -m services.gateways.sms_server`
(port 8025) start, so a laptop needs no configuration."""

from datetime import time
from enum import StrEnum
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from services.common.settings import ServiceSettings, env_name, is_loopback

RECEIPT_PROVIDERS = ("sms-primary", "sms-secondary", "smtp")
DEVELOPMENT_RECEIPT_SECRET = "dev-callback-secret"  # noqa: S105 - the laptop default, refused in production
MIN_RECEIPT_SECRET_CHARS = 32


class SmtpTls(StrEnum):
    NONE = "none"  # the local gateway only: refused in production
    STARTTLS = "starttls"  # upgrade on the submission port (587)
    TLS = "tls"  # TLS from the first byte (465)


class DispatchSettings(ServiceSettings):
    service_name: str = "dispatch"
    key_purposes: ClassVar[tuple[str, ...]] = ("notices",)  # never the records KEK
    notices_keys: SecretStr = SecretStr("")  # the notices KEK keyring (PANUI_NOTICES_KEYS)
    port: int = 8003

    # --- email over SMTP ---------------------------------------------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_tls: SmtpTls = SmtpTls.NONE
    smtp_validate_certs: bool = True
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_s: float = 30.0
    smtp_pool_size: int = 48
    email_from_address: str = "notices@panui.example.nz"
    email_reply_to: str | None = None
    message_id_domain: str = "panui.example.nz"

    # --- SMS over HTTP gateways (primary, optional secondary for failover) -------------------
    sms_primary_url: str = "http://127.0.0.1:8025"
    sms_primary_api_key: SecretStr | None = None
    sms_secondary_url: str = ""
    sms_secondary_api_key: SecretStr | None = None
    sms_timeout_s: float = 10.0
    sms_failover_cooldown_s: float = 30.0
    # Share of traffic each healthy gateway gets; 0 = used only when the other one errors.
    sms_primary_weight: int = 1
    sms_secondary_weight: int = 0
    sms_http_connections: int = 20  # httpx's pool gets slow with many
    # SMS sent per request to a gateway's bulk API (POST /v1/messages/batch), each answered on
    # its own; 1: one request per SMS (a gateway without a bulk API). Per request, httpx and
    # the gateway's HTTP stack cost more than the message itself (docs/benchmarks.md).
    # OFF (1) by default: the duplicates found with 50 in session 6 are fixed, and a bulk
    # request failed as a whole is now "maybe taken" for each message (session 7), but the
    # dispatch fault suite has not yet run green at 50 (decisions.md, session 7).
    # The gateways' bulk API, 50 messages a request: one HTTP round trip per SMS was dispatch's
    # largest CPU item (docs/dispatch.md). 1 sends each alone. The local gateway takes up to 500.
    sms_batch_size: int = Field(default=50, ge=1, le=500)

    # --- dry-run incidents (issue 14) --------------------------------------------------------
    # A dry-run incident's notices go only to the local simulated gateways (services/gateways,
    # on this host or as a sidecar): SMTP on 127.0.0.1 at this port (no other host can be
    # given) and this SMS gateway, which must be on the loopback (else dispatch refuses to
    # start). Never to the real providers above, whatever those are.
    dry_run_smtp_port: int = Field(default=1025, ge=1, le=65535)
    dry_run_sms_url: str = "http://127.0.0.1:8025"

    # --- delivery receipts --------------------------------------------------------------------
    # The secret each provider signs its callbacks with (X-Panui-Signature, HMAC-SHA256):
    # "provider=secret[,provider=secret…]" (providers: RECEIPT_PROVIDERS). A provider without one
    # uses receipt_secret — for laptops and tests only: production wants one per provider.
    receipt_secrets: SecretStr = SecretStr("")
    receipt_secret: SecretStr = SecretStr(DEVELOPMENT_RECEIPT_SECRET)
    receipt_tolerance_s: int = 300
    receipt_max_bytes: int = 64 * 1024  # a receipt is a few hundred bytes
    # Group commit (services/dispatch/receipt_batches.py): receipts arriving within the window
    # are applied in one transaction (at most receipt_batch_max); the answer comes after the
    # commit. A receipt waiting longer than receipt_queue_max_s (or arriving while the oldest
    # waiting one has) is answered 503 with Retry-After: shorter than a provider's webhook
    # timeout (15 s is believed to be Twilio's, unchecked), so it hears "later" before it gives up.
    receipt_batch_window_s: float = Field(default=0.01, ge=0)
    receipt_batch_max: int = Field(default=200, ge=1)
    receipt_queue_max_s: float = Field(default=10.0, gt=0)
    receipt_retry_after_s: int = Field(default=5, ge=1)
    # Where providers send receipts: <base>/v1/receipts/<provider>. Empty: no callbacks.
    receipt_callback_base_url: str = "http://127.0.0.1:8003"

    # --- "is this notice genuine?" (public, services/dispatch/genuine.py) ---------------------
    # Per client (its address as the service sees it: behind a proxy, the proxy's — so set the
    # proxy to pass the client on, or rate-limit there too) and for everyone together; shared
    # by every replica (token buckets in the database: services/common/shared_buckets.py).
    check_requests_per_minute: int = Field(default=10, ge=1)
    check_burst: int = Field(default=5, ge=1)
    check_global_per_s: float = Field(default=20.0, gt=0)
    check_global_burst: int = Field(default=40, ge=1)
    check_max_bytes: int = 2048  # a reference and a date

    # --- policy -------------------------------------------------------------------------------
    quiet_hours_enabled: bool = True
    quiet_hours_start: time = time(21, 0)  # Pacific/Auckland wall clock
    quiet_hours_end: time = time(8, 0)
    retry_base_s: float = 30.0
    retry_cap_s: float = 3600.0
    retry_max_attempts: int = 12
    retry_max_total_s: float = 24 * 3600.0

    # --- throughput and flow control ----------------------------------------------------------
    email_rate_per_s: float = 0.0  # token bucket per gateway; 0 = unlimited
    email_burst: int = 100
    sms_rate_per_s: float = 0.0
    sms_burst: int = 100
    sender_concurrency: int = 256  # sends in flight at once
    sender_batch_size: int = 500  # deliveries claimed per database round trip
    sender_idle_poll_s: float = 0.25
    # Extra wait before committing results, to gather bigger batches. 0: commit as soon as the
    # previous commit is done (answers queue up behind it: batches form under load by
    # themselves), which keeps a gateway's "accepted" unrecorded for the shortest time — the
    # window in which a crash sends an email twice (docs/dispatch.md).
    result_flush_s: float = 0.0
    # A sender's lease on its claims, on the database's clock, renewed by heartbeat every
    # `sender_heartbeat_s` (0: a quarter of the lease). Its claims are recovered (and sent again,
    # same reference) only once it has not renewed for this long: presumed dead.
    sending_lease_s: float = 120.0
    sender_heartbeat_s: float = 0.0
    # An SMS request ends within this (then: ambiguous, retried at the same gateway); an email
    # is handed over (DATA started) within this or not at all (then: certainly not sent,
    # retried) — a started DATA is never cut, only bounded by `smtp_timeout_s` per command.
    # Shorter than the lease, so a sender cut off from the database starts no hand-over after
    # anyone may recover its claims.
    send_deadline_s: float = 60.0
    sender_stop_grace_s: float = 10.0
    # Backpressure: stop taking notices off Kafka while this many deliveries are unfinished.
    max_pending: int = 20_000
    # An email the provider deferred and then never reported on again is acted on (resent,
    # same Message-ID, or fallen back) after this long: longer than MTAs keep retrying (Postfix
    # gives up after 5 days), so by then it has been delivered, bounced or lost.
    email_deferral_timeout_s: float = 5 * 86400.0

    # --- status lookup: SMS left 'sent' with no final receipt (services/dispatch/status_lookup.py)
    # A receipt can be lost (a provider gives up retrying while dispatch is down): then a
    # failed SMS would never fall back. An SMS still 'sent' this long after its gateway took it
    # is asked about at that gateway, and again every `status_lookup_interval_s` while the
    # answer is not final, until `status_lookup_max_age_s` after its first attempt (then it
    # stays 'sent' and is counted: panui_dispatch_sms_unconfirmed). Longer than receipts take
    # (seconds to minutes), so only the lost ones are asked about. Email is never looked up:
    # SMTP has no status to ask for (docs/decisions.md).
    status_lookup_enabled: bool = True
    status_lookup_after_s: float = Field(default=900.0, gt=0)
    status_lookup_interval_s: float = Field(default=900.0, gt=0)
    # Believed longer than carriers' SMS validity periods (hours); not checked per provider.
    status_lookup_max_age_s: float = Field(default=2 * 86400.0, gt=0)
    status_lookup_batch: int = Field(default=200, ge=1)  # deliveries asked about per pass
    status_lookup_period_s: float = Field(default=30.0, gt=0)  # between passes

    @model_validator(mode="after")
    def _deadline_within_lease(self) -> "DispatchSettings":
        if self.send_deadline_s >= self.sending_lease_s:
            raise ValueError(
                f"send_deadline_s ({self.send_deadline_s}) must be shorter than sending_lease_s "
                f"({self.sending_lease_s}): a send must end before its claim can be recovered"
            )
        return self

    @field_validator("dry_run_sms_url")
    @classmethod
    def _dry_run_sms_is_local(cls, value: str) -> str:
        if not is_loopback(value) or urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("dry_run_sms_url must be a local simulated gateway (http://127.0.0.1:…): "
                             "a dry run never sends to a real provider")
        return value

    def receipt_providers(self) -> tuple[str, ...]:
        """The providers whose receipts the endpoint takes (services/dispatch/api.py)."""
        return tuple(p for p in RECEIPT_PROVIDERS if p != "sms-secondary" or self.sms_secondary_url)

    def receipt_secret_map(self) -> dict[str, str]:
        entries = (e.strip() for e in self.receipt_secrets.get_secret_value().split(","))
        return {name.strip(): secret.strip() for name, _, secret in
                (e.partition("=") for e in entries if e) if name.strip() and secret.strip()}

    def receipt_secret_for(self, provider: str) -> str:
        own = self.receipt_secret_map().get(provider)
        if own:
            return own
        # Production has a secret per provider (production_problems): the shared fallback is
        # for laptops and tests, and never signs for anyone there.
        return "" if self.is_production else self.receipt_secret.get_secret_value()

    @property
    def heartbeat_s(self) -> float:
        return self.sender_heartbeat_s or self.sending_lease_s / 4

    @field_validator("smtp_tls", mode="before")
    @classmethod
    def _implicit_is_tls(cls, value: object) -> object:
        return "tls" if isinstance(value, str) and value.strip().lower() == "implicit" else value

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.smtp_tls is SmtpTls.NONE:
            problems.append(f"{env_name('smtp_tls')}: none sends notices in clear; use starttls or tls")
        if not self.smtp_validate_certs:
            problems.append(f"{env_name('smtp_validate_certs')}: certificates must be validated")
        if is_loopback(self.smtp_host):
            problems.append(f"{env_name('smtp_host')}: the development gateway (localhost)")
        for which in ("primary", "secondary"):
            url = getattr(self, f"sms_{which}_url")
            if not url:
                continue
            key = getattr(self, f"sms_{which}_api_key")
            if urlsplit(url).scheme != "https":
                problems.append(f"{env_name(f'sms_{which}_url')}: SMS over plain http; use https")
            if is_loopback(url):
                problems.append(f"{env_name(f'sms_{which}_url')}: the development gateway (localhost)")
            if key is None or not key.get_secret_value():
                problems.append(f"{env_name(f'sms_{which}_api_key')}: no API key for the SMS gateway")
        # receipt_secret (the shared fallback) is not used in production: one per provider.
        own = self.receipt_secret_map()
        for provider in self.receipt_providers():
            if len(own.get(provider, "")) < MIN_RECEIPT_SECRET_CHARS:
                problems.append(f"{env_name('receipt_secrets')}: no secret of its own (of at least "
                                f"{MIN_RECEIPT_SECRET_CHARS} characters) for provider {provider}")
        if len(set(own.values())) < len(own):
            problems.append(f"{env_name('receipt_secrets')}: providers share a secret")
        callback = self.receipt_callback_base_url
        if callback and (urlsplit(callback).scheme != "https" or is_loopback(callback)):
            problems.append(f"{env_name('receipt_callback_base_url')}: receipts must come over "
                            "https to a public address")
        return problems
