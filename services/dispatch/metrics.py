"""Dispatch metrics. Labels are channels, statuses and provider names only."""

from prometheus_client import Counter, Gauge, Histogram

DELIVERY_TRANSITIONS = Counter(
    "panui_dispatch_deliveries_total",
    "Delivery state changes recorded, by channel and new status",
    ["channel", "status"],
)
SEND_SECONDS = Histogram(
    "panui_dispatch_send_seconds",
    "Time for a gateway to answer one send",
    ["channel", "provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PENDING = Gauge("panui_dispatch_pending", "Deliveries queued, sending or awaiting a retry",
                multiprocess_mode="livemax")
CONSUMPTION_PAUSED = Gauge(
    "panui_dispatch_consumption_paused", "1 while notice consumption is paused (backpressure)",
    multiprocess_mode="livemax",
)
RECEIPTS = Counter(
    "panui_dispatch_receipts_total", "Delivery receipts received", ["provider", "outcome"]
)
RECEIPTS_QUEUED = Gauge(
    "panui_dispatch_receipts_queued", "Receipts waiting for their batch's transaction",
    multiprocess_mode="livesum",
)
RECEIPT_BATCH_SIZE = Histogram(
    "panui_dispatch_receipt_batch_size", "Receipts applied per transaction (group commit)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
UNRECORDED_SECONDS = Histogram(
    "panui_dispatch_unrecorded_seconds",
    "From a gateway's answer to its durable record (the window in which a crash resends)",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HOUSEKEEPING_PASSES = Counter(
    "panui_dispatch_housekeeping_passes_total",
    "Sender housekeeping passes completed (lease recovery, deferrals, planning); flat: stuck",
)
STATUS_LOOKUPS = Counter(
    "panui_dispatch_status_lookups_total",
    "SMS still 'sent' asked about at their gateway, by gateway and what came of it (updated, "
    "duplicate, stale, pending, not-found, unanswered, mismatch)",
    ["provider", "outcome"],
)
STATUS_LOOKUP_PASSES = Counter(
    "panui_dispatch_status_lookup_passes_total", "Status lookup passes completed; flat: stuck"
)
SMS_UNCONFIRMED = Gauge(
    "panui_dispatch_sms_unconfirmed",
    "SMS still 'sent' past status_lookup_max_age_s: no receipt and no final status by lookup",
    multiprocess_mode="livemax",
)
LEASES_RECOVERED = Counter(
    "panui_dispatch_leases_recovered_total",
    "Claims recovered from senders whose lease lapsed (they are sent again, same reference)",
)
