from typing import ClassVar

from pydantic import SecretStr

from services.common.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    key_purposes: ClassVar[tuple[str, ...]] = ("records",)
    records_keys: SecretStr = SecretStr("")  # the records KEK keyring (PANUI_RECORDS_KEYS)
    port: int = 8001
    max_request_bytes: int = 64 * 1024 * 1024
    max_records_per_request: int = 50_000
    # Feed requests per agency per minute (a token bucket per agency shared by the replicas).
    agency_requests_per_minute: int = 120
    receipt_problem_limit: int = 20
    store_chunk_records: int = 2_000
    # Intake's outbox fills in bursts of 10k-record feeds: drain it in larger batches.
    outbox_batch_size: int = 5_000
    # Sample every consumer group's lag in the background (GET /v1/ops/lag samples on demand
    # either way; the gauges on /metrics need the background loop).
    lag_monitor: bool = True
    # The console's pass-through to the other services' coordinator APIs (console/api.py).
    dedupe_url: str = "http://127.0.0.1:8002"
    dispatch_url: str = "http://127.0.0.1:8003"
    console_timeout_s: float = 30.0
    console_max_body_bytes: int = 64 * 1024
    # A closed incident is purged this long after it was closed (rows deleted, data keys
    # destroyed, in all three services); how often intake looks for incidents due.
    purge_after_s: float = 30 * 24 * 3600.0
    purge_check_interval_s: float = 60.0
