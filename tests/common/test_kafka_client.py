"""Kafka client security settings (services/common/kafka_client.py): what each protocol gives
aiokafka, what does not fit together, and what production mode refuses."""

import ssl

import pytest

from services.common.kafka_client import KafkaSettingsError, client_options
from services.common.settings import ServiceSettings
from testkit.tls import TestCA


def _settings(**kw) -> ServiceSettings:  # noqa: ANN003
    return ServiceSettings(kafka_bootstrap_servers="kafka.example.nz:9093", **kw)


def test_plaintext_is_the_laptop_default():
    assert client_options(_settings()) == {"bootstrap_servers": "kafka.example.nz:9093",
                                           "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_gives_scram_and_a_verifying_tls_context(tmp_path):
    ca = TestCA(tmp_path)
    options = client_options(_settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_username="panui-intake",
        kafka_sasl_password="pw", kafka_ssl_cafile=str(ca.cert), kafka_sasl_mechanism="SCRAM-SHA-256"))
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("panui-intake", "pw")
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_mutual_tls_loads_the_client_certificate(tmp_path):
    ca = TestCA(tmp_path)
    client = ca.issue("panui-dispatch", server=False)
    options = client_options(_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(ca.cert),
                                       kafka_ssl_certfile=str(client.cert),
                                       kafka_ssl_keyfile=str(client.key)))
    assert "sasl_mechanism" not in options and options["security_protocol"] == "SSL"


@pytest.mark.parametrize("kw, names", [
    ({"kafka_security_protocol": "SASL_SSL"}, "PANUI_KAFKA_SASL_USERNAME"),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"}, "PANUI_KAFKA_SASL_PASSWORD"),
    ({"kafka_ssl_cafile": "/ca.pem"}, "PANUI_KAFKA_SSL_"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/k.pem"}, "PANUI_KAFKA_SSL_CERTFILE"),
])
def test_settings_that_do_not_fit_are_named(kw, names):
    with pytest.raises(KafkaSettingsError, match=names):
        client_options(_settings(**kw))


def test_an_unknown_protocol_or_mechanism_is_refused_by_the_settings():
    with pytest.raises(ValueError):
        _settings(kafka_security_protocol="TLS")
    with pytest.raises(ValueError):
        _settings(kafka_sasl_mechanism="PLAIN")


def _problems(**kw) -> str:  # noqa: ANN003
    return "\n".join(_settings(environment="production", **kw).production_problems())


def test_production_refuses_kafka_without_tls_or_without_credentials():
    assert "PANUI_KAFKA_SECURITY_PROTOCOL: Kafka without TLS" in _problems()
    assert "PANUI_KAFKA_SECURITY_PROTOCOL" in _problems(kafka_security_protocol="SASL_PLAINTEXT")
    assert "SASL_SSL needs both" in _problems(kafka_security_protocol="SASL_SSL")
    assert "PANUI_KAFKA_SSL_CHECK_HOSTNAME" in _problems(
        kafka_security_protocol="SASL_SSL", kafka_ssl_check_hostname=False)
    assert "PANUI_KAFKA_SSL_CERTFILE" in _problems(kafka_security_protocol="SSL")
    assert "PANUI_MESSAGE_SIGNING_KEYS" in _problems()
    good = _problems(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u",
                     kafka_sasl_password="secret-pw", message_signing_keys="s1:" + "A" * 43)
    assert "KAFKA" not in good and "SIGNING" not in good and "secret-pw" not in good
