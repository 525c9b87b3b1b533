"""Configuration by environment, shared by every service.

Each service subclasses ServiceSettings; nothing reads os.environ elsewhere. Defaults are for a
laptop (`make run`): local Kafka, SQLite under var/. Deployments set the environment instead.

Production mode (`PANUI_ENVIRONMENT=production`): the service refuses to start while any
setting is a development default or an insecure transport (`production_problems`, extended by
each service for its own settings), naming each offending setting.
"""

from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = "production"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
# Key ids of the keyrings made for laptops and tests (scripts/run.sh, tests/conftest.py).
_DEVELOPMENT_KEY_IDS = ("dev", "test")


# Marks a setting a deployment must not give (a laptop convenience production refuses).
DEVELOPMENT_ONLY = "panui_development_only"


class InsecureSettings(ValueError):
    """Production mode found development defaults or insecure transport; names the settings."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("refusing to start in production: " + "; ".join(problems))


def env_name(field: str) -> str:
    return f"PANUI_{field.upper()}"


def is_loopback(url_or_host: str) -> bool:
    text = url_or_host if "//" in url_or_host else f"//{url_or_host}"
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return False
    return host in LOOPBACK or host.startswith("127.")


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PANUI_", extra="ignore", populate_by_name=True)

    service_name: str = "panui"
    environment: str = "development"
    log_level: str = "INFO"
    host: str = "127.0.0.1"  # deployments set 0.0.0.0
    port: int = 8000
    workers: int = 1  # uvicorn worker processes
    # The proxies (addresses or CIDR ranges, comma-separated; "*" every peer) whose
    # X-Forwarded-For / X-Forwarded-Proto name the real client: behind the k8s ingress, the
    # controller's pod range. Empty: no peer is believed, the client is the TCP peer. Applied
    # by the app itself (runtime.create_service_app), not by uvicorn, so every way of serving
    # it (tests included) trusts the same peers; uvicorn's own reading is turned off.
    forwarded_allow_ips: str = Field(
        default="", validation_alias=AliasChoices("FORWARDED_ALLOW_IPS", "PANUI_FORWARDED_ALLOW_IPS"))

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "PANUI_KAFKA_BOOTSTRAP_SERVERS"),
    )
    # Transport security and authentication of every Kafka client (services/common/kafka_client.py).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""  # empty: the system's trust store
    # Mutual TLS: the client's certificate chain and key (PEM); the alternative to SCRAM.
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_ssl_key_password: SecretStr = SecretStr("")
    kafka_ssl_check_hostname: bool = True
    # False on a cluster whose ACLs give the service no Create: the topics must exist (made by
    # the platform, e.g. Strimzi KafkaTopics) and start-up fails naming any that does not.
    kafka_create_topics: bool = True
    # Tests give every test its own prefix, so topics never collide on the shared broker.
    topic_prefix: str = "panui."
    topic_partitions: int = 3
    topic_replication_factor: int = 1

    database_url: str = Field(
        default="", validation_alias=AliasChoices("DATABASE_URL", "PANUI_DATABASE_URL")
    )

    # Key-encryption keys (KEKs) per purpose, each a keyring "kid:base64key[,kid:base64key…]"
    # (the first wraps new data keys; all unwrap: rotation, then `panui keys rewrap`), are
    # settings of the services that hold the purpose: `records_keys` (intake, dedupe),
    # `notices_keys` (dedupe, dispatch); services/common/crypto.py. An unset one falls back to
    # `data_keys` — for laptops and tests only: production refuses it (DEVELOPMENT_ONLY).
    data_keys: SecretStr = Field(default=SecretStr(""), json_schema_extra={DEVELOPMENT_ONLY: True})
    # The purposes this service holds keys for (each service says which).
    key_purposes: ClassVar[tuple[str, ...]] = ()

    # Authenticates incident and notice messages end to end (services/common/signing.py):
    # "kid:base64key[,kid:base64key…]"; the first signs, all verify (rotation). The producers
    # and consumers of incidents.v1 and notices.v1 (every service) share it.
    message_signing_keys: SecretStr = SecretStr("")

    # Coordinator bearer tokens: "token[,token…]" or "sha256:<hex>" entries.
    coordinator_tokens: SecretStr = SecretStr("")
    # Named staff principals (services/common/principals.py): the HS256 key `panui token issue`
    # signs with (shared by the services), and optionally an identity provider's JWKS (a file
    # path or an https URL), issuer and audience.
    token_signing_key: SecretStr = SecretStr("")
    oidc_jwks: str = ""
    oidc_issuer: str = ""
    oidc_audience: str = "panui"

    # Body limit of every route that declares none of its own (services/common/inbound.py).
    max_body_bytes: int = 1024 * 1024

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
    # A stopping consumer lets the batch in hand finish (and commit) for this long, then cancels
    # its task; work in a thread (a dedupe release chunk) runs on in its transaction regardless.
    consumer_stop_grace_s: float = Field(default=30.0, gt=0)
    # How long the coordinator waits for a heartbeat before evicting a member. aiokafka's 10 s
    # evicted healthy consumers of a CPU-starved box (the incident benchmark: needless
    # rebalances, each one a paused partition and a rebuild); 45 s is Kafka's own default
    # since 3.0 (KIP-735). The cost: a SIGKILLed consumer's partitions wait up to this long
    # for a new owner (a clean stop leaves the group at once). Heartbeats stay every 3 s, so
    # a starved event loop misses fifteen before the member is lost.
    consumer_session_timeout_ms: int = Field(default=45_000, ge=6_000)
    consumer_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
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

    @property
    def is_production(self) -> bool:
        return self.environment.strip().lower() == PRODUCTION

    def production_problems(self) -> list[str]:
        """What keeps these settings from running in production, one line per setting (never
        a secret's value). Services extend it with their own settings."""
        problems = []
        url = self.database_url
        if not url or url.startswith("sqlite"):
            problems.append("DATABASE_URL: SQLite (the development default) is not for "
                            "production; set a PostgreSQL URL")
        elif is_loopback(url):
            problems.append("DATABASE_URL: points at the pod itself (localhost)")
        if any(is_loopback(b) for b in self.kafka_bootstrap_servers.split(",")):
            problems.append("KAFKA_BOOTSTRAP_SERVERS: the development default (localhost)")
        if self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            problems.append(f"{env_name('kafka_security_protocol')}: Kafka without TLS "
                            "(use SSL or SASL_SSL)")
        elif not self.kafka_ssl_check_hostname:
            problems.append(f"{env_name('kafka_ssl_check_hostname')}: the broker's certificate "
                            "is not checked against its host name")
        if self.kafka_security_protocol == "SSL" and not self.kafka_ssl_certfile:
            problems.append(f"{env_name('kafka_ssl_certfile')}: SSL without a client certificate "
                            "authenticates nobody (use mutual TLS or SASL_SSL)")
        if self.kafka_security_protocol == "SASL_SSL" and not (
                self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            problems.append(f"{env_name('kafka_sasl_username')}/{env_name('kafka_sasl_password')}: "
                            "SASL_SSL needs both")
        if not self.message_signing_keys.get_secret_value().strip():
            problems.append(f"{env_name('message_signing_keys')}: incident and notice messages "
                            "would not be authenticated")
        problems += self._key_problems()
        tokens = [t.strip() for t in self.coordinator_tokens.get_secret_value().split(",") if t.strip()]
        if any(not t.startswith("sha256:") for t in tokens):
            problems.append(f"{env_name('coordinator_tokens')}: tokens in clear; give them as "
                            "sha256:<hex>")
        signing_key = self.token_signing_key.get_secret_value()
        if signing_key and len(signing_key) < 32:
            problems.append(f"{env_name('token_signing_key')}: shorter than 32 characters")
        if self.oidc_jwks.startswith("http://"):
            problems.append(f"{env_name('oidc_jwks')}: identity-provider keys over plain HTTP")
        return problems

    def keyring_specs(self) -> dict[str, str]:
        """purpose → its KEK keyring spec, for the purposes this service holds."""
        fallback = self.data_keys.get_secret_value()
        return {p: getattr(self, f"{p}_keys").get_secret_value() or fallback
                for p in self.key_purposes}

    def _key_problems(self) -> list[str]:
        problems = []
        for purpose in self.key_purposes:
            name = env_name(f"{purpose}_keys")
            spec = getattr(self, f"{purpose}_keys").get_secret_value()
            keys = [p.strip() for p in spec.split(",") if p.strip()]
            if not keys:
                shared = " (the shared PANUI_DATA_KEYS is for development)"
                problems.append(f"{name}: no keyring"
                                + (shared if self.data_keys.get_secret_value() else ""))
            elif any(k.partition(":")[0].lower().startswith(_DEVELOPMENT_KEY_IDS) for k in keys):
                problems.append(f"{name}: a development keyring (key id dev…/test…)")
        specs = [getattr(self, f"{p}_keys").get_secret_value() for p in self.key_purposes]
        if len(specs) == 2 and specs[0] and specs[0] == specs[1]:
            problems.append(f"{env_name('notices_keys')}: the same keyring as the records "
                            "purpose (dispatch could then open affected records)")
        return problems

    def check_production(self) -> None:
        """Raise InsecureSettings in production mode if anything is a development default."""
        if self.is_production and (problems := self.production_problems()):
            raise InsecureSettings(problems)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        var = REPO_ROOT / "var"
        var.mkdir(exist_ok=True)
        return f"sqlite:///{var / (self.service_name + '.db')}"

    def consumer_group(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
