"""Local runs — the fault harness (testkit/system.py) and the benchmarks — give the services
their keys as production does: a records keyring (intake, dedupe) and a notices keyring
(dedupe, dispatch), apart, never the shared development fallback PANUI_DATA_KEYS."""

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.dedupe.settings import DedupeSettings
from services.dispatch.settings import DispatchSettings
from services.intake.settings import IntakeSettings
from testkit.keys import PURPOSES, key_env, keyrings
from testkit.system import System

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"intake": IntakeSettings, "dedupe": DedupeSettings, "dispatch": DispatchSettings}


def test_purposes_are_the_services_own():
    assert {s: cls.key_purposes for s, cls in SETTINGS.items()} == PURPOSES


def test_no_local_run_sets_the_shared_fallback():
    setting = re.compile(r"""["']PANUI_DATA_KEYS["']\s*:|data_keys\s*=""")
    offenders = [str(p.relative_to(ROOT)) for folder in ("benchmarks", "testkit", "scripts")
                 for p in (ROOT / folder).rglob("*.py") if setting.search(p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_the_fault_harness_gives_each_service_only_its_keyrings(service, tmp_path, monkeypatch):
    system = System(tmp_path, kafka_bootstrap="127.0.0.1:9", pg_admin_url="postgresql://unused")
    system.databases = {s: (s, f"postgresql://unused/{s}") for s in SETTINGS}
    system.gateways = {"sms-0": SimpleNamespace(url="http://127.0.0.1:9")}  # only its URL is read
    env = system.env_for(service)
    assert "PANUI_DATA_KEYS" not in env
    for name in list(env):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if name.startswith("PANUI_") and name.endswith("_KEYS"):
            monkeypatch.setenv(name, value)
    settings = SETTINGS[service]()
    assert settings.keyring_specs() == {p: system.keyrings[p] for p in PURPOSES[service]}
    # What production mode would say of them: nothing.
    assert [p for p in settings.production_problems() if p.startswith(("PANUI_RECORDS", "PANUI_NOTICES", "PANUI_DATA"))] == []
    assert system.keyrings["records"] != system.keyrings["notices"]


def test_key_env_never_gives_dispatch_the_records_keyring():
    rings = keyrings("bench")
    assert key_env("dispatch", rings) == {"PANUI_NOTICES_KEYS": rings["notices"]}
    assert key_env("intake", rings) == {"PANUI_RECORDS_KEYS": rings["records"]}
    assert set(key_env("dedupe", rings)) == {"PANUI_RECORDS_KEYS", "PANUI_NOTICES_KEYS"}
