"""The physical reference: what this machine's Kafka does with the same number and size of
messages as the pipeline put through it, measured with Kafka's own ProducerPerformance and
ConsumerPerformance (org.apache.kafka:kafka-tools from Maven Central, fetched once by
`scripts/kafka.sh tools` into var/kafka/tools-<version>/).

The producer is configured as the services' producer is (services/common/kafka.py: acks=all,
idempotent, linger 5 ms, 1 MB batches) on a topic with the services' partition count."""

from __future__ import annotations

import asyncio
import re
import subprocess
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from testkit.infra import REPO

LOG4J = REPO / "deploy" / "local" / "kafka" / "log4j-tools.properties"


@dataclass(frozen=True)
class Traffic:
    """What the pipeline's topics hold: per topic (messages, mean value+key bytes)."""

    topics: dict[str, tuple[int, float]]

    @property
    def messages(self) -> int:
        return sum(n for n, _ in self.topics.values())

    @property
    def mean_size(self) -> int:
        total = sum(n * size for n, size in self.topics.values())
        return round(total / self.messages) if self.messages else 0


def pipeline_traffic(bootstrap: str, prefix: str, sample: int = 2000) -> Traffic:
    """Messages on each of the run's topics (log offsets) and their mean size (sampled)."""
    return asyncio.run(_traffic(bootstrap, prefix, sample))


async def _partitions(bootstrap: str, prefix: str) -> dict[str, list[int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics()
                       if t.startswith(prefix) and not t.endswith("kafka-reference"))
        described = await admin.describe_topics(names) if names else []
        return {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described}
    finally:
        await admin.close()


async def _traffic(bootstrap: str, prefix: str, sample: int) -> Traffic:
    partitions = await _partitions(bootstrap, prefix)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        out = {}
        for topic, numbers in partitions.items():
            tps = [TopicPartition(topic, p) for p in numbers]
            begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            count = sum(end[tp] - begin[tp] for tp in tps)
            if not count:
                continue
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            sizes: list[int] = []
            while len(sizes) < min(sample, count):
                batch = await consumer.getmany(timeout_ms=2000, max_records=sample)
                if not batch:
                    break
                sizes += [len(m.value or b"") + len(m.key or b"") for ms in batch.values() for m in ms]
            out[topic.removeprefix(prefix)] = (count, sum(sizes) / len(sizes) if sizes else 0.0)
        return Traffic(out)
    finally:
        await consumer.stop()


def tools_classpath() -> str:
    folder = subprocess.run([str(REPO / "scripts" / "kafka.sh"), "tools"], check=True,
                            capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return f"{folder}/*"


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def _java(classpath: str, main: str, *args: str) -> str:
    command = ["java", "-Xmx512m", f"-Dlog4j.configuration=file:{LOG4J}", "-cp", classpath, main, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"{main} failed ({done.returncode}): {done.stderr[-1500:]}")
    return done.stdout


def measure(bootstrap: str, topic: str, messages: int, size: int, partitions: int = 3) -> dict:
    """Produce `messages` of `size` bytes to a new topic, then consume them all."""
    classpath = tools_classpath()
    asyncio.run(_create_topic(bootstrap, topic, partitions))
    produced = _java(classpath, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
                     "--num-records", str(messages), "--record-size", str(max(size, 1)),
                     "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}",
                     "acks=all", "enable.idempotence=true", "linger.ms=5", "batch.size=1048576")
    final = [line for line in produced.splitlines() if "records sent" in line][-1]
    produce_per_s = float(re.search(r"records sent, ([0-9.]+) records/sec", final).group(1))
    consumed = _java(classpath, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server",
                     bootstrap, "--topic", topic, "--messages", str(messages), "--timeout", "60000",
                     "--group", f"{topic}.perf")
    lines = [line for line in consumed.splitlines() if line.strip()]
    header = [h.strip() for h in lines[-2].split(",")]
    values = dict(zip(header, (v.strip() for v in lines[-1].split(",")), strict=True))
    # fetch.nMsg.sec leaves out the group join (rebalance.time.ms), as a running consumer has it.
    consume_per_s = float(values["fetch.nMsg.sec"])
    return {
        "messages": messages, "record_size": size, "partitions": partitions,
        "produce_per_s": round(produce_per_s), "consume_per_s": round(consume_per_s),
        "produce_s": round(messages / produce_per_s, 2), "consume_s": round(messages / consume_per_s, 2),
        "producer_summary": final.strip(),
        "consumer_summary": {k: values[k] for k in ("nMsg.sec", "fetch.nMsg.sec", "rebalance.time.ms",
                                                    "fetch.time.ms", "MB.sec")},
    }
