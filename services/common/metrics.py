"""Prometheus metrics shared by all services. Labels never carry personal data: only
service, topic, consumer group, route templates, status codes and domain states."""

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

MESSAGES_CONSUMED = Counter(
    "panui_messages_consumed_total", "Kafka messages handled and committed", ["group", "topic"]
)
CONSUMER_ERRORS = Counter(
    "panui_consumer_batch_errors_total", "Consumer batches that failed and will replay", ["group"]
)
CONSUMER_BATCH_SECONDS = Histogram(
    "panui_consumer_batch_seconds", "Time to handle one partition batch durably", ["group"]
)
DEAD_LETTERS = Counter(
    "panui_dead_letters_total",
    "Messages a consumer could not decode or apply, published to the dead-letter topic",
    ["service", "group", "topic", "reason"],
)
TOMBSTONES = Counter(
    "panui_tombstones_total", "Tombstones (null values) seen on compacted topics and skipped",
    ["service", "group", "topic"],
)
CONSUMER_REVOKE_WAIT_SECONDS = Histogram(
    "panui_consumer_revoke_wait_seconds",
    "How long a partition revocation waited for the batch in hand", ["group"],
)
CONSUMER_REVOKE_TIMEOUTS = Counter(
    "panui_consumer_revoke_timeouts_total",
    "Revocations that stopped waiting for the batch in hand (it may overlap the new owner)",
    ["group"],
)
WORKER_RESTARTS = Counter(
    "panui_worker_restarts_total", "Background loops restarted after a crash", ["service", "worker"]
)
OUTBOX_PUBLISHED = Counter(
    "panui_outbox_published_total", "Outbox messages published to Kafka", ["service", "topic"]
)
OUTBOX_PENDING = Gauge(
    "panui_outbox_pending", "Outbox messages waiting to be published", ["service"]
)
HTTP_REQUESTS = Counter(
    "panui_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
