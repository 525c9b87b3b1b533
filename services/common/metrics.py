"""Prometheus metrics shared by all services. Labels never carry personal data: only
service, topic, consumer group, route templates, status codes and domain states.

Several uvicorn workers (PANUI_WORKERS > 1) share one port, so a scrape reaches any one of
them: `serve` then turns on prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
set before the workers import this module) and `render` aggregates every worker's values.
Every gauge says how it aggregates (`multiprocess_mode`): "livesum" for what each worker holds
(its partitions' incidents), "livemax" for what every worker reads from the same database.
"""

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

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
PURGED_DROPPED = Counter(
    "panui_purged_incident_messages_dropped_total",
    "Messages about an incident already purged, dropped without being stored", ["service", "topic"],
)
WORKER_RESTARTS = Counter(
    "panui_worker_restarts_total", "Background loops restarted after a crash", ["service", "worker"]
)
OUTBOX_PUBLISHED = Counter(
    "panui_outbox_published_total", "Outbox messages published to Kafka", ["service", "topic"]
)
OUTBOX_PENDING = Gauge(
    "panui_outbox_pending", "Outbox messages waiting to be published (counted at each scrape)",
    ["service"], multiprocess_mode="livemax",
)
HTTP_REQUESTS = Counter(
    "panui_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "panui_http_request_seconds", "HTTP request latency by route template (never the raw path)",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render(extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The exposition text: this process's metrics, or every worker's in multiprocess mode,
    followed by `extra` collectors (values computed at scrape time, e.g. consumer lag, which
    every worker knows alike and so must not be summed across workers)."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    extra = list(extra)
    if extra:
        scraped = CollectorRegistry(auto_describe=False)
        for collector in extra:
            scraped.register(collector)
        body += generate_latest(scraped)
    return body, CONTENT_TYPE_LATEST


def process_exiting() -> None:
    """A worker stopping: its "live" gauges leave the aggregate (multiprocess mode only)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())
