"""Consumer lag computed from Kafka itself (committed vs log end offsets), judged with Burrow's
rules, and shown as Prometheus gauges, `GET /v1/ops/lag` and `panui lag`.

    rules.py       the status rules — pure functions over samples (no Kafka)
    sampler.py     one sample of every group from the broker
    monitor.py     samples on an interval, keeps each group's window, gives LagReports
    burrow.py      the report in Burrow's JSON shape
    prometheus.py  the report as kafka_exporter-named gauges (a prometheus_client Collector)
    api.py         the /v1/ops/lag router factory
"""

from services.common.lag.monitor import LagMonitor, LagReport
from services.common.lag.rules import LagRules, Status
from services.common.lag.sampler import LagSampler, LagUnavailable, system_groups

__all__ = ["LagMonitor", "LagReport", "LagRules", "LagSampler", "LagUnavailable", "Status",
           "system_groups"]
