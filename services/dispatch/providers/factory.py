"""Building the providers from settings: SMTP for email; the SMS gateways (primary, optional
secondary) behind failover; and the send permits (connection slots, token buckets) the sender
takes before it claims (flow.py)."""

from __future__ import annotations

import httpx

from services.dispatch.flow import Lane, Permits, bucket
from services.dispatch.providers.base import EmailProvider, SmsProvider
from services.dispatch.providers.failover import FailoverSmsProvider
from services.dispatch.providers.gateway import GatewaySms
from services.dispatch.providers.sms_http import BoundedHttpSmsProvider
from services.dispatch.providers.smtp import SmtpConfig, SmtpEmailProvider
from services.dispatch.settings import DispatchSettings


def build_email_provider(settings: DispatchSettings) -> EmailProvider:
    config = SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        tls=settings.smtp_tls.value,  # type: ignore[arg-type]
        validate_certs=settings.smtp_validate_certs,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        timeout=settings.smtp_timeout_s,
        pool_size=settings.smtp_pool_size,
        message_id_domain=settings.message_id_domain,
    )
    return SmtpEmailProvider(config)


def build_permits(settings: DispatchSettings) -> Permits:
    """Email: the SMTP pool's connections; SMS: one gateway's connections, each carrying a batch
    (a failover moves a send, it does not add one). The rates limit each channel as a whole."""
    return Permits(
        {
            "email": Lane(settings.smtp_pool_size,
                          bucket(settings.email_rate_per_s, settings.email_burst)),
            # A connection carries a batch of SMS at a time (sms_batch_size).
            "sms": Lane(settings.sms_http_connections * max(settings.sms_batch_size, 1),
                        bucket(settings.sms_rate_per_s, settings.sms_burst)),
        },
        settings.sender_concurrency,
    )


def build_sms_provider(settings: DispatchSettings) -> FailoverSmsProvider:
    gateways: list[tuple[SmsProvider, int]] = []
    for name, url, key, weight in (
        ("sms-primary", settings.sms_primary_url, settings.sms_primary_api_key,
         settings.sms_primary_weight),
        ("sms-secondary", settings.sms_secondary_url, settings.sms_secondary_api_key,
         settings.sms_secondary_weight),
    ):
        if not url:
            continue
        client = httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {key.get_secret_value()}"} if key else {},
            timeout=httpx.Timeout(settings.sms_timeout_s),
            limits=httpx.Limits(
                max_connections=settings.sms_http_connections,
                max_keepalive_connections=settings.sms_http_connections,
            ),
        )
        inner = BoundedHttpSmsProvider(url, name=name, client=client,
                                       connections=settings.sms_http_connections,
                                       pool_timeout=settings.sms_timeout_s)
        gateways.append((GatewaySms(inner, settings.receipt_callback_base_url), weight))
    return FailoverSmsProvider(gateways, cooldown=settings.sms_failover_cooldown_s)


DRY_RUN_EMAIL, DRY_RUN_SMS = "smtp-dry-run", "sms-dry-run"
_DRY_RUN_CONNECTIONS = 4  # a rehearsal is small


def build_dry_run_providers(settings: DispatchSettings) -> tuple[EmailProvider, SmsProvider]:
    """The only providers a dry-run incident's notices go to: the local simulated gateways
    (SMTP on 127.0.0.1, the SMS gateway settings checked is on the loopback). No receipt
    callback: a rehearsal's deliveries end at 'sent' (SMS) as the gateway accepted them."""
    email = SmtpEmailProvider(SmtpConfig(
        host="127.0.0.1", port=settings.dry_run_smtp_port, tls="none", validate_certs=False,
        timeout=settings.smtp_timeout_s, pool_size=_DRY_RUN_CONNECTIONS,
        message_id_domain=settings.message_id_domain), name=DRY_RUN_EMAIL)
    client = httpx.AsyncClient(base_url=settings.dry_run_sms_url,
                               timeout=httpx.Timeout(settings.sms_timeout_s),
                               limits=httpx.Limits(max_connections=_DRY_RUN_CONNECTIONS))
    sms = BoundedHttpSmsProvider(settings.dry_run_sms_url, name=DRY_RUN_SMS, client=client,
                                 connections=_DRY_RUN_CONNECTIONS, pool_timeout=settings.sms_timeout_s)
    return email, GatewaySms(sms, "")
