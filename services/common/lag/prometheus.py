"""Lag as Prometheus gauges, under the names kafka_exporter uses so existing dashboards work:

    kafka_consumergroup_lag{consumergroup,topic,partition}
    kafka_consumergroup_lag_sum{consumergroup,topic}
    kafka_consumergroup_current_offset{consumergroup,topic,partition}   (committed partitions only)
    kafka_consumergroup_members{consumergroup}
    kafka_topic_partition_current_offset{topic,partition}               (log end offset)

plus ours, for alerts on the Burrow status:

    panui_consumergroup_status{consumergroup,status}        1 for the current status, 0 otherwise
    panui_consumergroup_uncommitted_partitions{consumergroup,topic}
    panui_consumergroup_lag_sampled_timestamp_seconds        when the values were sampled

The collector reads the monitor's latest report; it never calls Kafka during a scrape (the
scrape runs on the event loop, and a slow broker must not stall /metrics). Run the monitor's
background loop wherever the collector is registered. Labels are group and topic names and
partition numbers — no personal data exists here to leak. With prometheus_client's
multiprocess mode, register it on the per-request registry next to MultiProcessCollector:
every worker reports the same cluster-wide values, so any one of them may answer.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.lag.monitor import LagMonitor
from services.common.lag.rules import Status


class LagCollector(Collector):
    def __init__(self, monitor: LagMonitor):
        self.monitor = monitor

    def describe(self) -> list:
        return []  # the label values are only known once sampled: don't collect at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self.monitor.latest()
        if report is None:
            return
        lag = GaugeMetricFamily("kafka_consumergroup_lag",
                                "Current Approximate Lag of a ConsumerGroup at Topic/Partition",
                                labels=["consumergroup", "topic", "partition"])
        lag_sum = GaugeMetricFamily("kafka_consumergroup_lag_sum",
                                    "Current Approximate Lag of a ConsumerGroup at Topic for all partitions",
                                    labels=["consumergroup", "topic"])
        current = GaugeMetricFamily("kafka_consumergroup_current_offset",
                                    "Current Offset of a ConsumerGroup at Topic/Partition",
                                    labels=["consumergroup", "topic", "partition"])
        members = GaugeMetricFamily("kafka_consumergroup_members",
                                    "Amount of members in a consumer group", labels=["consumergroup"])
        log_end = GaugeMetricFamily("kafka_topic_partition_current_offset",
                                    "Current Offset of a Broker at Topic/Partition",
                                    labels=["topic", "partition"])
        status = GaugeMetricFamily("panui_consumergroup_status",
                                   "Burrow-style status of a consumer group (1 = current)",
                                   labels=["consumergroup", "status"])
        uncommitted = GaugeMetricFamily("panui_consumergroup_uncommitted_partitions",
                                        "Partitions the group never committed on (lag from log start)",
                                        labels=["consumergroup", "topic"])
        ends: dict[tuple[str, str], int] = {}
        for g in report.groups:
            members.add_metric([g.group], g.sample.members)
            for s in Status:
                status.add_metric([g.group, s.value], 1 if g.status is s else 0)
            sums: dict[str, int] = {}
            none: dict[str, int] = {}
            for p in g.partitions:
                c = p.current
                labels = [g.group, c.topic, str(c.partition)]
                lag.add_metric(labels, c.lag)
                if c.committed is not None:
                    current.add_metric(labels, c.committed)
                sums[c.topic] = sums.get(c.topic, 0) + c.lag
                none[c.topic] = none.get(c.topic, 0) + (1 if c.no_commit else 0)
                ends[(c.topic, str(c.partition))] = c.log_end
            for topic, total in sums.items():
                lag_sum.add_metric([g.group, topic], total)
                uncommitted.add_metric([g.group, topic], none[topic])
        for (topic, partition), offset in sorted(ends.items()):
            log_end.add_metric([topic, partition], offset)
        sampled = GaugeMetricFamily("panui_consumergroup_lag_sampled_timestamp_seconds",
                                    "When the consumer group lag was last sampled")
        sampled.add_metric([], report.at.timestamp())
        yield from (lag, lag_sum, current, members, log_end, status, uncommitted, sampled)
