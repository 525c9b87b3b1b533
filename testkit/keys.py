"""Opening what a service sealed, from a test: the service's own keys (the KEKs of its
purposes, from its settings) and its data_key table — as the service itself opens it."""

from services.common.crypto import Sealer, Vault
from services.common.db import make_engine
from services.common.keystore import DatabaseKeySource
from services.common.settings import ServiceSettings


def service_vault(settings: ServiceSettings) -> Vault:
    """A Vault on the service's database (its engine is left to the garbage collector: tests)."""
    keks = {purpose: Sealer(spec) for purpose, spec in settings.keyring_specs().items()}
    return Vault(keks, DatabaseKeySource(make_engine(settings.resolved_database_url())))
