"""Key-encryption keyrings for local runs (the fault harness, benchmarks), set as production
sets them: one keyring per purpose — records (intake, dedupe) and notices (dedupe, dispatch)
— each service given only the purposes it holds, never the shared development fallback
PANUI_DATA_KEYS (which would let dispatch open affected records). And opening what a service
sealed, from a test, as the service itself opens it (`service_vault`)."""

from services.common.crypto import Sealer, Vault, generate_key_spec
from services.common.db import make_engine
from services.common.keystore import DatabaseKeySource
from services.common.settings import ServiceSettings, env_name

# Which purposes each service holds (its settings' key_purposes; tests/common checks they agree).
PURPOSES = {"intake": ("records",), "dedupe": ("records", "notices"), "dispatch": ("notices",)}


def keyrings(run: str) -> dict[str, str]:
    """purpose → a fresh keyring spec for one run (key ids name the run and the purpose)."""
    return {purpose: generate_key_spec(f"{run}-{purpose}-1") for purpose in ("records", "notices")}


def key_env(service: str, rings: dict[str, str]) -> dict[str, str]:
    """The environment variables giving `service` its keyrings: PANUI_RECORDS_KEYS and/or
    PANUI_NOTICES_KEYS, as in deploy/k8s."""
    return {env_name(f"{purpose}_keys"): rings[purpose] for purpose in PURPOSES[service]}


def service_vault(settings: ServiceSettings) -> Vault:
    """A Vault on the service's database: the KEKs of its purposes (from its settings) and its
    data_key table (the engine is left to the garbage collector: tests)."""
    keks = {purpose: Sealer(spec) for purpose, spec in settings.keyring_specs().items()}
    return Vault(keks, DatabaseKeySource(make_engine(settings.resolved_database_url())))
