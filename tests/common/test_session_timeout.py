"""A consumer on a CPU-starved box is not evicted from its group: its event loop can miss
heartbeats for longer than aiokafka's 10 s default session without a rebalance (which would
re-deliver the batch in hand and, in dedupe, pause the partition for a rebuild). The
starvation is real: the handler blocks the event loop, heartbeats included."""

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from services.common.deadletters import DeadLetterPublisher
from services.common.kafka import ConsumerWorker, ensure_topics
from services.common.settings import ServiceSettings
from services.common.topics import DEAD_LETTERS, TopicSpec

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOPIC = TopicSpec("starved-test.v1", key="n")


async def test_a_consumer_starved_past_ten_seconds_keeps_its_partitions(
    kafka_bootstrap, topic_prefix
):
    settings = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                               consumer_poll_timeout_ms=100)
    await ensure_topics(settings, [TOPIC, DEAD_LETTERS])
    name = TOPIC.full_name(topic_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    handled: list[bytes] = []
    starved = False

    async def handler(tp: TopicPartition, batch) -> None:  # noqa: ANN001
        nonlocal starved
        if not starved:
            starved = True
            time.sleep(14)  # noqa: ASYNC251 - the point: no heartbeat can run meanwhile
        handled.extend(c.message for c in batch)

    revocations: list[set[TopicPartition]] = []

    async def on_revoked(revoked: set[TopicPartition]) -> None:
        revocations.append(set(revoked))

    worker = ConsumerWorker(settings, "starved-test", [TOPIC], handler, decode=bytes,
                            dead_letters=DeadLetterPublisher(settings, producer),
                            on_revoked=on_revoked)
    try:
        await worker.start()
        for n in range(3):
            await producer.send_and_wait(name, f"m-{n}".encode(), partition=0)
        async with asyncio.timeout(60):
            while await worker.consumer.committed(TopicPartition(name, 0)) != 3:
                await asyncio.sleep(0.1)
        for n in range(3, 6):  # and it goes on consuming in the same generation
            await producer.send_and_wait(name, f"m-{n}".encode(), partition=0)
        async with asyncio.timeout(60):
            while await worker.consumer.committed(TopicPartition(name, 0)) != 6:
                await asyncio.sleep(0.1)
        assert starved
        assert [r for r in revocations if r] == []  # never evicted, never rebalanced
        assert handled == [f"m-{n}".encode() for n in range(6)]  # each once: no re-delivery
    finally:
        await worker.stop()
        await producer.stop()
