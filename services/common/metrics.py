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
