"""Dedupe's own Prometheus metrics (the shared ones are services/common/metrics.py). Labels
never carry personal data — nor incident ids: the logs name incidents."""

from prometheus_client import Counter, Gauge

INCIDENT_FAILURES = Counter(
    "panui_dedupe_incident_failures_total",
    "An incident's release or tick failed; it is retried with backoff, others carry on",
    ["stage"])
INCIDENTS_FAILING = Gauge(
    "panui_dedupe_incidents_failing", "Incidents waiting to retry after a failure")
RECORDS_MISSING = Gauge(
    "panui_dedupe_records_missing",
    "Records the agencies' completions count that have not arrived (unreleased incidents)")
