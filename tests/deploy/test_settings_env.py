"""Environment ↔ settings: every variable a container gets is a setting of that service (or a
known platform variable); every setting with no safe production default is provided; secrets
come only from Secret references, and the Secret template lists exactly the keys referenced.
The rules read the settings classes, so a new setting is checked without editing this file."""

import os

import pytest
import yaml
from pydantic import SecretStr

from services.common.settings import DEVELOPMENT_ONLY
from tests.deploy import manifests as m

SERVICES = m.services()

# Variables the manifests set ahead of the code, each with the work that brings the setting.
# test_pending_settings_are_still_pending fails once a setting exists, so it moves to the
# ordinary checks (and a differently named setting fails test_required_settings_are_provided).
PENDING: dict[str, str] = {}
PENDING_SECRETS: set[str] = set()
# Read by the platform, not by pydantic-settings.
PLATFORM = {"TMPDIR": "Python's tempfile module (scratch space; never request bodies)"}
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


# Kafka settings whose default is right in production too: mutual TLS is the alternative to
# SCRAM (a deployment using SCRAM leaves them empty); hostname verification is on by default;
# the SCRAM mechanism's default is the strongest.
_SAFE_KAFKA_DEFAULTS = {"kafka_sasl_mechanism", "kafka_ssl_certfile", "kafka_ssl_keyfile", "kafka_ssl_key_password",
                        "kafka_ssl_check_hostname"}


# The shared receipt secret is the laptop fallback: production signs with one per provider
# (receipt_secrets) and never falls back to it.
_UNUSED_IN_PRODUCTION = {"receipt_secret"}
# On the pod's own loopback by design, and refused anywhere else (dispatch's settings): a dry-run
# incident's simulated SMS gateway is a sidecar, never a real provider.
_LOCAL_BY_DESIGN = {"dry_run_sms_url"}


def required_in_production(cls) -> dict[str, str]:
    """{field: why} for the settings whose code default is only right on a laptop."""
    required = {}
    for name, info in cls.model_fields.items():
        default = info.default
        text = default.get_secret_value() if isinstance(default, SecretStr) else default
        if (info.json_schema_extra or {}).get(DEVELOPMENT_ONLY):
            continue  # a laptop fallback: test_development_only_settings_are_not_given
        if name == "environment":
            required[name] = "the deployment says which environment it is"
        elif name == "database_url":
            required[name] = "empty means a SQLite file inside the container"
        elif name in _SAFE_KAFKA_DEFAULTS or name in _UNUSED_IN_PRODUCTION or name in _LOCAL_BY_DESIGN:
            continue
        elif name.startswith("kafka_"):
            required[name] = "Kafka connection settings are the cluster's"
        elif isinstance(default, SecretStr):
            required[name] = "a secret whose default is empty or a development value"
        elif isinstance(text, str) and any(h in text for h in LOOPBACK):
            required[name] = f"the default {text!r} points at the pod itself"
        elif isinstance(text, str) and ".example." in f".{text}":
            required[name] = f"the default {text!r} is a placeholder identity"
        elif name.endswith("_tls") and text == "none":
            required[name] = "the default is no transport security"
    return required


def _containers(objects, service):
    pod = objects.deployment(service)["spec"]["template"]["spec"]
    return pod["containers"] + pod.get("initContainers", [])


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_is_a_setting(objects, service):
    known = set(m.env_names(m.settings_class(service))) | set(PLATFORM) | set(PENDING)
    for container in _containers(objects, service):
        unknown = set(objects.container_env(container)) - known
        assert not unknown, f"{service}/{container['name']}: not settings of {service}: {sorted(unknown)}"


def test_pending_settings_are_still_pending():
    for service in SERVICES:
        landed = set(PENDING) & set(m.env_names(m.settings_class(service)))
        assert not landed, (f"{sorted(landed)} are settings of {service} now: remove them from "
                            "PENDING in tests/deploy/test_settings_env.py so they are checked")


@pytest.mark.parametrize("service", SERVICES)
def test_required_settings_are_provided(objects, service):
    cls = m.settings_class(service)
    names = m.env_names(cls)
    env = objects.container_env(m.main_container(objects.deployment(service)))
    production = objects.shared_config["PANUI_ENVIRONMENT"] == "production"
    missing = []
    for field, why in required_in_production(cls).items():
        given = [env[n] for n in env if names.get(n) == field]
        if not given:
            missing.append(f"{field} ({why})")
            continue
        default = cls.model_fields[field].default
        if production and "value" in given[0] and not isinstance(default, SecretStr):
            assert given[0]["value"] != str(default), f"{service}: {field} is left at its development default"
    assert not missing, f"{service} ({objects.overlay}) must be given: " + "; ".join(missing)
    assert env["PANUI_ENVIRONMENT"]["value"] == ("production" if objects.overlay == "prod" else "development")


@pytest.mark.parametrize("service", SERVICES)
def test_development_only_settings_are_not_given(objects, service):
    cls = m.settings_class(service)
    names = m.env_names(cls)
    env = objects.container_env(m.main_container(objects.deployment(service)))
    dev_only = {f for f, info in cls.model_fields.items()
                if (info.json_schema_extra or {}).get(DEVELOPMENT_ONLY)}
    assert dev_only, "the shared development keyring is marked development-only"
    assert not [n for n in env if names.get(n) in dev_only], f"{service} is given a laptop fallback"


@pytest.mark.parametrize("service", SERVICES)
def test_secrets_come_only_from_secret_references(objects, service):
    cls = m.settings_class(service)
    names = m.env_names(cls)
    for container in _containers(objects, service):
        for name, source in objects.container_env(container).items():
            secret = (name in names and m.is_secret_field(cls, names[name])) or name in PENDING_SECRETS
            if secret:
                assert "secretKeyRef" in source, f"{service}/{container['name']}: {name} must come from a Secret"
    for configmap in objects.of("ConfigMap"):
        for key in configmap["data"]:
            assert not (key in names and m.is_secret_field(cls, names[key])), f"{key} in a ConfigMap"


@pytest.mark.parametrize("service", SERVICES)
def test_settings_load_from_the_manifests_environment(objects, service, monkeypatch):
    """The settings class accepts what the manifests give it (types, enums, validators)."""
    for name in list(os.environ):
        if name.upper().startswith("PANUI_") or name.upper() in {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"}:
            monkeypatch.delenv(name)
    env = m.synthetic_env(objects, m.main_container(objects.deployment(service)))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = m.settings_class(service)()
    assert settings.environment == env["PANUI_ENVIRONMENT"]
    assert settings.kafka_bootstrap_servers == objects.shared_config["KAFKA_BOOTSTRAP_SERVERS"]


def _template() -> dict[str, set[str]]:
    docs = yaml.safe_load_all((m.K8S / "secrets.template.yaml").read_text())
    return {d["metadata"]["name"]: {k for k, v in d["stringData"].items() if v == ""} | (
        {"__nonempty__"} if any(v != "" for v in d["stringData"].values()) else set()) for d in docs if d}


def _referenced(objects) -> set[tuple[str, str]]:
    refs = set()
    for deployment in objects.of("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                refs |= {(volume["secret"]["secretName"], i["key"]) for i in volume["secret"]["items"]}
    for auth in objects.of("TriggerAuthentication"):
        refs |= {(r["name"], r["key"]) for r in auth["spec"].get("secretTargetRef", [])}
    return refs


def test_the_secret_template_lists_exactly_what_is_referenced():
    template = _template()
    assert all("__nonempty__" not in keys for keys in template.values()), "the template holds no values"
    listed = {(name, key) for name, keys in template.items() for key in keys}
    referenced = set()
    for overlay in m.OVERLAYS:
        objects = m.Objects(overlay)
        strimzi = {(u["metadata"]["name"], "password") for u in objects.of("KafkaUser")}
        refs = _referenced(objects)
        assert refs - strimzi <= listed, f"{overlay}: not in secrets.template.yaml: {sorted(refs - strimzi - listed)}"
        referenced |= refs
    assert listed <= referenced, f"listed but never used: {sorted(listed - referenced)}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_prod_overlay_satisfies_production_mode(objects, service, monkeypatch):
    """The prod overlay starts in production mode (no development default, no insecure
    transport); the dev overlay is development, where nothing is refused."""
    for name in list(os.environ):
        if name.upper().startswith("PANUI_") or name.upper() in {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"}:
            monkeypatch.delenv(name)
    container = m.main_container(objects.deployment(service))
    for name, source in objects.container_env(container).items():
        monkeypatch.setenv(name, source["value"] if "value" in source else m.realistic_secret(name))
    settings = m.settings_class(service)()
    assert settings.is_production == (objects.overlay == "prod")
    if settings.is_production:
        assert settings.production_problems() == []
