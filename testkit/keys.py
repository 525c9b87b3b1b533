"""Key-encryption keyrings for local runs (the fault harness, benchmarks), set as production
sets them: one keyring per purpose — records (intake, dedupe) and notices (dedupe, dispatch)
— each service given only the purposes it holds, never the shared development fallback
PANUI_DATA_KEYS (which would let dispatch open affected records)."""

from services.common.crypto import generate_key_spec
from services.common.settings import env_name

# Which purposes each service holds (its settings' key_purposes; tests/common checks they agree).
PURPOSES = {"intake": ("records",), "dedupe": ("records", "notices"), "dispatch": ("notices",)}


def keyrings(run: str) -> dict[str, str]:
    """purpose → a fresh keyring spec for one run (key ids name the run and the purpose)."""
    return {purpose: generate_key_spec(f"{run}-{purpose}-1") for purpose in ("records", "notices")}


def key_env(service: str, rings: dict[str, str]) -> dict[str, str]:
    """The environment variables giving `service` its keyrings: PANUI_RECORDS_KEYS and/or
    PANUI_NOTICES_KEYS, as in deploy/k8s."""
    return {env_name(f"{purpose}_keys"): rings[purpose] for purpose in PURPOSES[service]}
