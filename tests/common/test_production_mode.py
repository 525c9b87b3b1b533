"""Production mode: with PANUI_ENVIRONMENT=production a service refuses to start on any
development default or insecure transport, naming the setting, with a non-zero exit."""

import hashlib
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from services.common.crypto import generate_key_spec
from services.common.settings import InsecureSettings
from services.common.signing import generate_signing_key_spec
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings, SmtpTls
from services.intake.settings import IntakeSettings
from testkit.infra import REPO

SECURE_COMMON = {
    "environment": "production",
    "database_url": "postgresql://panui@db.internal.example.nz/intake",
    "kafka_bootstrap_servers": "kafka.internal.example.nz:9093",
    "kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "panui-intake",
    "kafka_sasl_password": "p" * 32, "message_signing_keys": generate_signing_key_spec("prod1"),
    "records_keys": generate_key_spec("prod-records1"),
    "notices_keys": generate_key_spec("prod-notices1"),
    "coordinator_tokens": "sha256:" + hashlib.sha256(b"x" * 32).hexdigest(),
}
SECURE_DISPATCH = {
    **SECURE_COMMON,
    "smtp_host": "smtp-relay.example.nz", "smtp_tls": "starttls",
    "sms_primary_url": "https://sms.example.nz", "sms_primary_api_key": "k" * 32,
    "receipt_callback_base_url": "https://receipts.example.nz",
    "receipt_secrets": f"sms-primary={'p' * 40},smtp={'m' * 40}",
}


@pytest.mark.parametrize("cls", [IntakeSettings, DedupeSettings])
def test_secure_settings_pass_and_development_ones_are_named(cls):
    cls(**SECURE_COMMON).check_production()
    cls(**{**SECURE_COMMON, "environment": "development", "database_url": ""}).check_production()
    with pytest.raises(InsecureSettings) as refused:
        cls(environment="production", data_keys=generate_key_spec("dev1"),
            coordinator_tokens="clear-token").check_production()
    text = str(refused.value)
    # The shared development keyring is no purpose's keyring in production.
    for setting in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "PANUI_RECORDS_KEYS: no keyring",
                    "PANUI_COORDINATOR_TOKENS", "PANUI_KAFKA_SECURITY_PROTOCOL",
                    "PANUI_MESSAGE_SIGNING_KEYS"):
        assert setting in text
    assert "clear-token" not in text  # a setting is named, never its value
    with pytest.raises(InsecureSettings) as refused:
        cls(**{**SECURE_COMMON, "records_keys": generate_key_spec("dev1")}).check_production()
    assert "PANUI_RECORDS_KEYS: a development keyring" in str(refused.value)


@pytest.mark.parametrize("override, setting", [
    ({}, None),
    ({"smtp_tls": "none"}, "PANUI_SMTP_TLS"),
    ({"smtp_validate_certs": False}, "PANUI_SMTP_VALIDATE_CERTS"),
    ({"smtp_host": "127.0.0.1"}, "PANUI_SMTP_HOST"),
    ({"sms_primary_url": "http://sms.example.nz"}, "PANUI_SMS_PRIMARY_URL"),
    ({"sms_primary_api_key": None}, "PANUI_SMS_PRIMARY_API_KEY"),
    ({"sms_secondary_url": "http://sms2.example.nz"}, "PANUI_SMS_SECONDARY_URL"),
    # The shared receipt_secret is not refused: production never uses it (one per provider;
    # tests/dispatch/test_receipt_secret_production.py).
    ({"receipt_callback_base_url": "http://127.0.0.1:8003"}, "PANUI_RECEIPT_CALLBACK_BASE_URL"),
    # A secret per provider: each one's own, long enough, none shared.
    ({"receipt_secrets": f"sms-primary={'p' * 40}"}, "PANUI_RECEIPT_SECRETS"),
    ({"receipt_secrets": f"sms-primary={'p' * 40},smtp=short"}, "PANUI_RECEIPT_SECRETS"),
    ({"receipt_secrets": f"sms-primary={'p' * 40},smtp={'p' * 40}"}, "PANUI_RECEIPT_SECRETS"),
    ({"sms_secondary_url": "https://sms2.example.nz", "sms_secondary_api_key": "k" * 32},
     "PANUI_RECEIPT_SECRETS"),
    ({"database_url": "sqlite:///var/dispatch.db"}, "DATABASE_URL"),
])
def test_dispatch_refuses_each_development_default(override, setting):
    settings = DispatchSettings(**{**SECURE_DISPATCH, **override})
    if setting is None:
        settings.check_production()
        return
    with pytest.raises(InsecureSettings) as refused:
        settings.check_production()
    assert [p for p in refused.value.problems if p.startswith(setting)], refused.value.problems


def test_dispatch_defaults_are_refused_in_production():
    with pytest.raises(InsecureSettings) as refused:
        DispatchSettings(environment="production").check_production()
    text = str(refused.value)
    for setting in ("PANUI_SMTP_TLS", "PANUI_SMS_PRIMARY_URL", "PANUI_SMS_PRIMARY_API_KEY",
                    "PANUI_RECEIPT_SECRET", "DATABASE_URL", "PANUI_NOTICES_KEYS"):
        assert setting in text
    assert "dev-callback-secret" not in text


def test_smtp_tls_is_an_enum():
    assert DispatchSettings(smtp_tls="tls").smtp_tls is SmtpTls.TLS
    assert DispatchSettings(smtp_tls="implicit").smtp_tls is SmtpTls.TLS  # the old spelling
    with pytest.raises(ValidationError):
        DispatchSettings(smtp_tls="yes-please")


def test_the_app_refuses_to_build_in_production():
    with pytest.raises(InsecureSettings):
        create_dispatch(DispatchSettings(environment="production"))


@pytest.mark.slow
@pytest.mark.parametrize("service", ["intake", "dedupe", "dispatch"])
def test_serve_exits_non_zero_naming_the_setting(service, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANUI_")}
    env.update(PANUI_ENVIRONMENT="production", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    done = subprocess.run([sys.executable, "-m", f"services.{service}", "serve"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2, done.stderr
    assert "refuses to start in production" in done.stderr
    keys = "PANUI_RECORDS_KEYS" if service != "dispatch" else "PANUI_NOTICES_KEYS"
    assert "DATABASE_URL" in done.stderr and keys in done.stderr
