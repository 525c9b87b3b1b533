"""Configuration by environment, shared by every service.

Each service subclasses ServiceSettings; nothing reads os.environ elsewhere. Defaults are for a
laptop (`make run`): local Kafka, SQLite under var/. Deployments set the environment instead.
"""

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PANUI_", extra="ignore", populate_by_name=True)

    service_name: str = "panui"
    environment: str = "development"
    log_level: str = "INFO"
    host: str = "127.0.0.1"  # deployments set 0.0.0.0
    port: int = 8000
    workers: int = 1  # uvicorn worker processes

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "PANUI_KAFKA_BOOTSTRAP_SERVERS"),
    )
    # Tests give every test its own prefix, so topics never collide on the shared broker.
    topic_prefix: str = "panui."
    topic_partitions: int = 3
    topic_replication_factor: int = 1

    database_url: str = Field(
        default="", validation_alias=AliasChoices("DATABASE_URL", "PANUI_DATABASE_URL")
    )

    # Keyring for personal fields at rest and in Kafka payloads: "kid:base64key[,kid:base64key…]".
    # The first key encrypts; all of them decrypt (rotation).
    data_keys: SecretStr = SecretStr("")

    # Coordinator bearer tokens: "token[,token…]" or "sha256:<hex>" entries.
    coordinator_tokens: SecretStr = SecretStr("")

    consumer_batch_max_records: int = 500
    consumer_poll_timeout_ms: int = 500
    # Poison messages (services/common/consuming.py): a failing batch is tried this often, then
    # split until the failing message is alone; that one is tried this often and dead-lettered.
    # Transient failures (database or broker away) are retried without limit instead.
    consumer_batch_attempts: int = Field(default=3, ge=1)
    consumer_message_attempts: int = Field(default=3, ge=1)
    consumer_retry_backoff_s: float = Field(default=0.5, gt=0)  # doubling, up to the max
    consumer_retry_backoff_max_s: float = Field(default=30.0, gt=0)
    # A revocation waits this long for the batch in hand to finish and commit; the rebalance
    # timeout is set 30 s above it. Below max.poll.interval, which bounds one batch anyway.
    consumer_revoke_wait_s: float = Field(default=60.0, gt=0)
    consumer_max_poll_interval_ms: int = 300_000
    # Supervised background loops (services/common/tasks.py): restart backoff, giving up (the
    # liveness probe then fails), and how long one unit of work may take before it is wedged.
    worker_restart_base_s: float = Field(default=1.0, gt=0)
    worker_restart_max_s: float = Field(default=30.0, gt=0)
    worker_give_up_after: int = Field(default=5, ge=0)
    worker_give_up_window_s: float = Field(default=300.0, gt=0)
    worker_wedged_after_s: float = Field(default=600.0, gt=0)
    outbox_poll_interval_s: float = 0.2
    outbox_batch_size: int = 1000

    # Consumer lag monitor (services/common/lag): how often it samples, how many samples a
    # WARN/STALL judgement spans, and how long a frozen committed offset with lag means STOP.
    lag_interval_s: float = 15.0
    lag_window_samples: int = 10
    lag_stop_after_s: float = 600.0

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        var = REPO_ROOT / "var"
        var.mkdir(exist_ok=True)
        return f"sqlite:///{var / (self.service_name + '.db')}"

    def consumer_group(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
