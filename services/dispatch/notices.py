"""Taking released notices off the notices topic and queueing their deliveries.

Idempotent: a notice seen again (replay, restart, rebalance) finds its deliveries already
recorded and changes nothing.
"""

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy.engine import Engine

from services.common.db import run_db, session_scope
from services.common.messages import NoticeMessage, decode_notice
from services.dispatch import dao

# Preferred first channel for a notice, before per-incident policy (issue 6) refines it.
_CHANNEL_PREFERENCE = ("email", "sms", "postal")


def first_channel(notice: NoticeMessage) -> str:
    for channel in _CHANNEL_PREFERENCE:
        if channel in notice.channels:
            return channel
    return "none"


def record_notices(engine: Engine, notices: list[NoticeMessage]) -> int:
    created = 0
    with session_scope(engine) as session:
        for notice in notices:
            if dao.deliveries_for_notice(session, notice.notice_id):
                continue
            channel = first_channel(notice)
            dao.create_delivery(
                session, notice, channel, "queued" if channel != "none" else "unreachable"
            )
            created += 1
    return created


class NoticeHandler:
    def __init__(self, engine: Engine, relay):  # noqa: ANN001
        self.engine = engine
        self.relay = relay

    async def __call__(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        notices = [decode_notice(r.value) for r in records]
        if await run_db(record_notices, self.engine, notices):
            self.relay.wake()
