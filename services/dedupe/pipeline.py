"""Turning a batch of affected-record messages into durable state and released notices.

Everything one batch changes — records, person assignments, notices and the outbox rows
announcing them — commits in one transaction, before the consumer commits its offsets.
"""

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.common import outbox
from services.common.crypto import Sealer
from services.common.db import session_scope
from services.common.ids import stable_id
from services.common.messages import (
    AffectedRecordMessage,
    AffectedRecordsTopicMessage,
    RecordWithdrawnMessage,
)
from services.common.topics import NOTICES
from services.dedupe import records
from services.dedupe.models import NoticeState, RecordState
from services.dedupe.notices import build_notice


class DedupePipeline:
    def __init__(self, engine: Engine, sealer: Sealer):
        self.engine = engine
        self.sealer = sealer
        self.agency_names: dict[str, str] = {}

    def apply_batch(self, messages: list[AffectedRecordsTopicMessage]) -> int:
        """Apply messages in order; returns how many notices were released."""
        released = 0
        with session_scope(self.engine) as session:
            for msg in messages:
                if isinstance(msg, AffectedRecordMessage):
                    state = records.apply_record(session, msg)
                    if state is not None:
                        released += self._resolve_and_release(session, state)
                elif isinstance(msg, RecordWithdrawnMessage):
                    records.apply_withdrawal(session, msg)
                # contribution-complete messages drive the release policy (issue 5).
        return released

    def _resolve_and_release(self, session: Session, state: RecordState) -> int:
        if state.person_id is None:
            # Until the resolver lands, each record is its own person (never a wrong merge).
            state.person_id = stable_id(
                "per", state.incident_id, state.agency_id, state.source_record_id
            )
            session.add(state)
        already = session.exec(
            select(NoticeState).where(
                NoticeState.incident_id == state.incident_id,
                NoticeState.person_id == state.person_id,
            )
        ).first()
        if already is not None:
            return 0
        person_records = list(
            session.exec(
                select(RecordState).where(
                    RecordState.incident_id == state.incident_id,
                    RecordState.person_id == state.person_id,
                    RecordState.withdrawn == False,  # noqa: E712 - SQL expression
                )
            ).all()
        )
        notice = build_notice(
            self.sealer, state.incident_id, state.person_id, 1, person_records, self.agency_names
        )
        session.add(
            NoticeState(
                notice_id=notice.notice_id,
                incident_id=notice.incident_id,
                person_id=notice.person_id,
                version=notice.version,
                agency_ids=[a.agency_id for a in notice.agencies],
                data_categories=sorted({c for a in notice.agencies for c in a.data_categories}),
            )
        )
        outbox.enqueue(session, NOTICES, notice.person_id, notice.to_bytes())
        return 1
