"""Intake's own Prometheus metrics (the shared ones are services/common/metrics.py). Counted
once the feed's transaction committed. Labels are outcomes and problem codes only — never a
value, an incident or an agency."""

from prometheus_client import Counter, Histogram

RECORDS = Counter(
    "panui_intake_records_total",
    "Records received in feeds, by outcome: accepted (new or changed), unchanged (a re-sent "
    "identical version), rejected", ["outcome"])
REJECTED = Counter(
    "panui_intake_records_rejected_total",
    "Rejected records by the first error's code (e.g. nhi.checksum, parse.invalid_json)",
    ["reason"])
FEED_RECORDS = Histogram(
    "panui_intake_feed_records", "Records per feed request",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000))
