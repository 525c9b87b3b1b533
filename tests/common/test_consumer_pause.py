"""The consumer worker's PartitionBusy signal on the real broker: a partition whose batch
cannot be handled now is paused (nothing committed) while the others are consumed, and its
batch comes again, from its first offset, once the handler's wait is over. The signal passes
through the batch processor: never retried (the handler is asked once) and never
dead-lettered."""

import asyncio

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from services.common.deadletters import DeadLetterPublisher
from services.common.kafka import ConsumerWorker, PartitionBusy, ensure_topics
from services.common.settings import ServiceSettings
from services.common.topics import DEAD_LETTERS, TopicSpec
from testkit.deadletters import dead_letters

pytestmark = [pytest.mark.kafka]

TOPIC = TopicSpec("pause-test.v1", key="n")


async def test_a_busy_partition_waits_while_the_others_go_on(kafka_bootstrap, topic_prefix):
    settings = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                               consumer_poll_timeout_ms=100)
    await ensure_topics(settings, [TOPIC, DEAD_LETTERS])
    name = TOPIC.full_name(topic_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for partition in (0, 1):
            for n in range(5):
                await producer.send_and_wait(name, f"{partition}-{n}".encode(), partition=partition)
        await _pause_and_resume(settings, name, producer, kafka_bootstrap, topic_prefix)
    finally:
        await producer.stop()


async def _pause_and_resume(settings: ServiceSettings, name: str, producer: AIOKafkaProducer,
                            kafka_bootstrap: str, topic_prefix: str) -> None:
    gate = asyncio.Event()
    handled: dict[int, list[bytes]] = {0: [], 1: []}
    busy_raised = 0

    async def handler(tp: TopicPartition, batch) -> None:  # noqa: ANN001
        nonlocal busy_raised
        if tp.partition == 0 and not gate.is_set():
            busy_raised += 1
            raise PartitionBusy(until=gate.wait())
        handled[tp.partition] += [c.message for c in batch]

    worker = ConsumerWorker(settings, "pause-test", [TOPIC], handler, decode=bytes,
                            dead_letters=DeadLetterPublisher(settings, producer))
    await worker.start()
    try:
        async with asyncio.timeout(30):
            while len(handled[1]) < 5:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # partition 0 stays paused: asked once, nothing handled
        assert (busy_raised, handled[0]) == (1, [])
        assert await worker.consumer.committed(TopicPartition(name, 0)) is None
        gate.set()
        async with asyncio.timeout(30):
            while len(handled[0]) < 5:
                await asyncio.sleep(0.05)
        assert handled[0] == [f"0-{n}".encode() for n in range(5)]  # from its first offset
        async with asyncio.timeout(10):
            while await worker.consumer.committed(TopicPartition(name, 0)) != 5:
                await asyncio.sleep(0.05)
        assert busy_raised == 1  # never retried as a failure
        assert await dead_letters(kafka_bootstrap, topic_prefix, 0) == []  # nor dead-lettered
    finally:
        await worker.stop()
