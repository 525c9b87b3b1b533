"""Accepting a feed, without HTTP or Kafka: versions, re-sends, limits, idempotency and
withdrawal as `feeds` drives validation and the store (real PostgreSQL)."""

import io

import pytest
from sqlmodel import Session, select

from services.common.crypto import Sealer, generate_key_spec
from services.common.db import Database, session_scope
from services.common.messages import (
    AffectedRecordMessage,
    RecordWithdrawnMessage,
    decode_affected_records_topic,
)
from services.common.outbox import OutboxMessage
from services.intake import feeds
from services.intake.models import AffectedRecord, Feed, FeedProblem
from services.intake.parsing import iter_feed
from services.intake.settings import IntakeSettings
from testkit.factories import affected_record, ndjson

pytestmark = pytest.mark.postgres

SEALER = Sealer(generate_key_spec("feeds"))


def _ingest(engine, records: list[dict] | bytes, *, key: str | None = None, chunk_size: int = 1000,  # noqa: ANN001
            max_records: int = 1000, problem_limit: int = 20, incident_id: str = "inc-1") -> feeds.FeedOutcome:
    body = records if isinstance(records, bytes) else ndjson(records)
    with session_scope(engine) as session:
        return feeds.ingest_feed(
            session, SEALER, incident_id=incident_id, agency_id="ag-1", fmt="ndjson",
            items=iter_feed(io.BytesIO(body), "ndjson"), idempotency_key=key, chunk_size=chunk_size,
            max_records=max_records, receipt_problem_limit=problem_limit)


def _versions(engine) -> list[tuple[str, int]]:  # noqa: ANN001
    with Session(engine) as session:
        return [tuple(r) for r in session.exec(
            select(AffectedRecord.source_record_id, AffectedRecord.version)
            .order_by(AffectedRecord.source_record_id, AffectedRecord.version)).all()]


def _outbox(engine) -> list:  # noqa: ANN001
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    return [decode_affected_records_topic(r.payload) for r in rows]


def _counts(feed: Feed) -> tuple[int, int, int, int, int]:
    return feed.received, feed.accepted, feed.unchanged, feed.rejected, feed.warnings


def test_a_feed_stores_sealed_versions_its_problems_and_one_message_each(intake_engine):
    body = ndjson([affected_record("r1"), {"source_record_id": "bad"},
                   affected_record("r2", nhi="ZZZ0017")]) + b"{not json\n"
    outcome = _ingest(intake_engine, body)
    assert _counts(outcome.feed) == (4, 2, 0, 2, 1)  # r2's bad NHI is a warning: dropped, kept
    assert [(p.line, p.code) for p in outcome.problems][-1] == (4, "parse.invalid_json")
    assert _versions(intake_engine) == [("r1", 1), ("r2", 1)]
    messages = _outbox(intake_engine)
    assert [(m.source_record_id, m.record_version, m.feed_id) for m in messages] == [
        ("r1", 1, outcome.feed.feed_id), ("r2", 1, outcome.feed.feed_id)]
    assert all(isinstance(m, AffectedRecordMessage) for m in messages)
    opened = SEALER.open(messages[0].sealed, messages[0].sealing_context())
    assert opened["nhi"] == "ZZZ0016" and "source_record_id" not in opened
    with Session(intake_engine) as session:
        stored = session.exec(select(Feed)).one()
        problems = session.exec(select(FeedProblem.line, FeedProblem.code).order_by(FeedProblem.id)).all()
    assert _counts(stored) == _counts(outcome.feed)
    assert [(p.line, p.code) for p in outcome.problems] == [tuple(p) for p in problems]


def test_resends_within_and_across_feeds_and_chunks(intake_engine):
    # Within one feed, across a chunk boundary (chunk of 2): identical → unchanged, changed → v2.
    first = _ingest(intake_engine, [affected_record("r1"), affected_record("r2"), affected_record("r1"),
                                    affected_record("r2", given_names="Mere")], chunk_size=2)
    assert _counts(first.feed) == (4, 3, 1, 0, 0)
    assert _versions(intake_engine) == [("r1", 1), ("r2", 1), ("r2", 2)]

    again = _ingest(intake_engine, [affected_record("r1"), affected_record("r2", given_names="Mere")])
    assert _counts(again.feed) == (2, 0, 2, 0, 0)
    assert len(_outbox(intake_engine)) == 3  # no-ops publish nothing

    with session_scope(intake_engine) as session:
        assert feeds.withdraw_record(session, "inc-1", "ag-1", "r1") is True
    back = _ingest(intake_engine, [affected_record("r1")])  # the same content, sent again after a withdrawal
    assert _counts(back.feed) == (1, 1, 0, 0, 0)
    assert _versions(intake_engine)[:2] == [("r1", 1), ("r1", 2)]


def test_too_many_records_stores_nothing(intake_engine):
    records = [affected_record(f"m{i}") for i in range(5)]
    with pytest.raises(feeds.TooManyRecords):
        _ingest(intake_engine, records, chunk_size=2, max_records=4)
    assert _versions(intake_engine) == [] and _outbox(intake_engine) == []
    with Session(intake_engine) as session:
        assert session.exec(select(Feed)).all() == []
    assert _counts(_ingest(intake_engine, records[:4], chunk_size=2, max_records=4).feed)[:2] == (4, 4)


def test_the_receipt_holds_the_first_problems_across_chunks(intake_engine):
    bad = [{"source_record_id": f"b{i}"} for i in range(5)]  # each: no name and unreachable
    outcome = _ingest(intake_engine, bad, chunk_size=2, problem_limit=3)
    assert [p.line for p in outcome.problems] == [1, 1, 2]
    with Session(intake_engine) as session:
        assert len(session.exec(select(FeedProblem)).all()) == 10


def test_replay_by_idempotency_key(intake_engine):
    sent = _ingest(intake_engine, [affected_record("r1"), {"source_record_id": "bad"}], key="k-1")
    with session_scope(intake_engine) as session:
        replayed = feeds.replay(session, "inc-1", "ag-1", "k-1", 1)
        assert replayed.feed.feed_id == sent.feed.feed_id and replayed.problems == sent.problems[:1]
        assert feeds.replay(session, "inc-1", "ag-1", "k-2", 20) is None
        assert feeds.replay(session, "inc-1", "ag-2", "k-1", 20) is None  # keys are per agency
        with pytest.raises(feeds.IdempotencyKeyReused):
            feeds.replay(session, "inc-2", "ag-1", "k-1", 20)
        stored = feeds.stored_outcome(session, sent.feed.feed_id, 20)
        assert _counts(stored.feed) == _counts(sent.feed) and stored.problems == sent.problems


async def test_a_key_taken_by_a_concurrent_request_replays_its_feed(intake_engine):
    # The request that loses the race for an Idempotency-Key finds it taken when it inserts
    # its feed: it gets the winner's receipt and stores nothing of its own.
    won = _ingest(intake_engine, [affected_record("r1")], key="k-1")
    settings = IntakeSettings(data_keys=generate_key_spec("feeds"))
    body = io.BytesIO(ndjson([affected_record("r1", given_names="Other"), affected_record("r9")]))
    lost = await feeds.accept_feed(Database(intake_engine), SEALER, settings, incident_id="inc-1",
                                   agency_id="ag-1", fmt="ndjson", body=body, idempotency_key="k-1")
    assert lost.feed.feed_id == won.feed.feed_id and _counts(lost.feed) == _counts(won.feed)
    assert _versions(intake_engine) == [("r1", 1)]
    with pytest.raises(feeds.IdempotencyKeyReused):
        await feeds.accept_feed(Database(intake_engine), SEALER, settings, incident_id="inc-2",
                                agency_id="ag-1", fmt="ndjson", body=io.BytesIO(b""), idempotency_key="k-1")


def test_withdrawal_once_then_already_withdrawn(intake_engine):
    _ingest(intake_engine, [affected_record("r1")])
    with session_scope(intake_engine) as session:
        assert feeds.withdraw_record(session, "inc-1", "ag-1", "nope") is None
        assert feeds.withdraw_record(session, "inc-1", "ag-2", "r1") is None  # not this agency's
        assert feeds.withdraw_record(session, "inc-1", "ag-1", "r1") is True
    with session_scope(intake_engine) as session:
        assert feeds.withdraw_record(session, "inc-1", "ag-1", "r1") is False
    messages = _outbox(intake_engine)
    assert [type(m) for m in messages] == [AffectedRecordMessage, RecordWithdrawnMessage]
    assert messages[1].source_record_id == "r1"
