"""How every Kafka client of Pānui connects: bootstrap servers plus the transport security and
authentication the settings name (PANUI_KAFKA_SECURITY_PROTOCOL and friends).

One function, `client_options(settings)`, gives the keyword arguments every aiokafka client
takes (producer, consumer, admin) — the services, the outbox relay, the lag sampler, the CLI
and testkit all build their clients from it, so one cluster's settings reach all of them.

- PLAINTEXT: no TLS, no authentication (a laptop's broker).
- SSL: TLS; with a client certificate and key it is mutual TLS (the certificate is the
  identity).
- SASL_SSL: TLS plus SCRAM-SHA-512 (or -256) username and password.
- SASL_PLAINTEXT: SCRAM without TLS; refused in production (settings.production_problems).
The CA file verifies the broker (the system's trust store when empty); hostname verification
is on unless PANUI_KAFKA_SSL_CHECK_HOSTNAME=false (never in production).
"""

from __future__ import annotations

import ssl
from typing import Any

TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")


class KafkaSettingsError(ValueError):
    """The Kafka security settings do not fit together (names the setting, never a secret)."""


def ssl_context(cafile: str = "", certfile: str = "", keyfile: str = "", key_password: str = "",
                check_hostname: bool = True) -> ssl.SSLContext:
    """A TLS client context: the broker verified against `cafile` (or the system's roots),
    and a client certificate presented when `certfile` is given (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    if certfile:
        context.load_cert_chain(certfile, keyfile or None, key_password or None)
    return context


def client_options(settings: Any) -> dict[str, Any]:  # noqa: ANN401 - any ServiceSettings
    """aiokafka keyword arguments (bootstrap_servers and security) for `settings`."""
    protocol = str(settings.kafka_security_protocol).upper()
    if protocol not in PROTOCOLS:
        raise KafkaSettingsError(f"PANUI_KAFKA_SECURITY_PROTOCOL: one of {', '.join(PROTOCOLS)}")
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers,
                               "security_protocol": protocol}
    if protocol in TLS_PROTOCOLS:
        if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
            raise KafkaSettingsError("PANUI_KAFKA_SSL_KEYFILE is set without PANUI_KAFKA_SSL_CERTFILE")
        options["ssl_context"] = ssl_context(
            settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile,
            settings.kafka_ssl_key_password.get_secret_value(), settings.kafka_ssl_check_hostname)
    elif settings.kafka_ssl_certfile or settings.kafka_ssl_cafile:
        raise KafkaSettingsError(f"PANUI_KAFKA_SSL_*: set, but PANUI_KAFKA_SECURITY_PROTOCOL="
                                 f"{protocol} uses no TLS")
    if protocol in SASL_PROTOCOLS:
        mechanism = str(settings.kafka_sasl_mechanism).upper()
        if mechanism not in SASL_MECHANISMS:
            raise KafkaSettingsError(f"PANUI_KAFKA_SASL_MECHANISM: one of {', '.join(SASL_MECHANISMS)}")
        password = settings.kafka_sasl_password.get_secret_value()
        if not settings.kafka_sasl_username or not password:
            raise KafkaSettingsError(f"PANUI_KAFKA_SASL_USERNAME and PANUI_KAFKA_SASL_PASSWORD: "
                                     f"{protocol} needs both")
        options |= {"sasl_mechanism": mechanism, "sasl_plain_username": settings.kafka_sasl_username,
                    "sasl_plain_password": password}
    return options


def options_for(bootstrap: str) -> dict[str, Any]:
    """client_options for a command-line tool: `bootstrap` (its --bootstrap) and the security
    settings from the environment, as a service would read them (PANUI_KAFKA_*)."""
    from services.common.settings import ServiceSettings

    return client_options(ServiceSettings(kafka_bootstrap_servers=bootstrap))
