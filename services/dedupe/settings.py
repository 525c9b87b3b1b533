from typing import ClassVar

from pydantic import SecretStr

from services.common.settings import ServiceSettings


class DedupeSettings(ServiceSettings):
    service_name: str = "dedupe"
    key_purposes: ClassVar[tuple[str, ...]] = ("records", "notices")
    records_keys: SecretStr = SecretStr("")  # the records KEK keyring (PANUI_RECORDS_KEYS)
    notices_keys: SecretStr = SecretStr("")  # the notices KEK keyring (PANUI_NOTICES_KEYS)
    port: int = 8002
    # How often time-driven release work runs (deadlines, settle windows, manual release).
    release_tick_s: float = 1.0
    # A release is written in chunks of this many persons, a transaction each (their notices,
    # outbox rows and state together), not in one transaction of the whole incident.
    release_chunk_persons: int = 1000
    # How long one batch or tick goes on releasing chunks before the consumer polls again.
    release_budget_s: float = 2.0
    # How often an incident's review queue is refreshed from the resolver while records arrive.
    # Listing an incident's review pairs walks all its kept pairs: keep it infrequent.
    review_sync_interval_s: float = 30.0
    # A finished incident (released, every person decided) nothing came for in this long is
    # evicted from memory; a later record or review decision rebuilds it.
    evict_finished_after_s: float = 300.0
