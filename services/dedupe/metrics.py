"""Dedupe's own Prometheus metrics (the shared ones are services/common/metrics.py). Labels
never carry personal data — nor incident ids: the logs name incidents."""

from prometheus_client import Counter, Gauge

INCIDENT_FAILURES = Counter(
    "panui_dedupe_incident_failures_total",
    "An incident's release or tick failed; it is retried with backoff, others carry on",
    ["stage"])
INCIDENTS_FAILING = Gauge(
    "panui_dedupe_incidents_failing", "Incidents waiting to retry after a failure",
    multiprocess_mode="livesum")
RECORDS_MISSING = Gauge(
    "panui_dedupe_records_missing",
    "Records the agencies' completions count that have not arrived (unreleased incidents)",
    multiprocess_mode="livesum")
INCIDENTS_HELD = Gauge(
    "panui_dedupe_incidents_held", "Incidents whose identity state is in memory",
    multiprocess_mode="livesum")
RECORDS_HELD = Gauge(
    "panui_dedupe_records_held", "Records in the identity state held in memory",
    multiprocess_mode="livesum")
INCIDENTS_EVICTED = Counter(
    "panui_dedupe_incidents_evicted_total",
    "Finished incidents whose identity state was dropped from memory")
REBUILD_SECONDS = Gauge(
    "panui_dedupe_last_rebuild_seconds",
    "How long the last background rebuild of an incident's identity state took",
    multiprocess_mode="livemax")
REVIEW_ITEMS_OPEN = Gauge(
    "panui_dedupe_review_items_open", "Uncertain pairs waiting for a reviewer (counted at each scrape)",
    multiprocess_mode="livemax")
NOTICES_RELEASED = Counter(
    "panui_dedupe_notices_released_total",
    "Notices released (committed with their outbox message): a person's first, or an amendment",
    ["kind"])
