"""A release written in chunks, a transaction each: an incident's notices never wait for one
transaction of the whole incident, and a release interrupted between chunks (a failure, a
process gone) ends, once resumed, with exactly one notice per person.

In process on a real PostgreSQL database (the Kafka version, a process killed between
chunks, is test_exactly_once.py)."""

import pytest
from sqlmodel import Session, func, select

from services.common.clock import utcnow
from services.common.crypto import Sealer, generate_key_spec
from services.common.outbox import OutboxMessage
from services.dedupe import pipeline as pipeline_module
from services.dedupe.models import NoticeState, PersonState
from services.dedupe.pipeline import DedupePipeline
from testkit.factories import synthetic_person
from testkit.messages import completion, incident_message, record_message

pytestmark = [pytest.mark.postgres]

SEALER = Sealer(generate_key_spec("release-chunks-test"))
AGENCIES = {"gp": "Test GP", "lab": "Test Lab"}
PERSONS = 23
CHUNK = 5


def _batch() -> list:
    """PERSONS persons with a GP and a lab record each, and both completions: the batch that
    releases the incident."""
    out = []
    for i in range(PERSONS):
        out.append(record_message(SEALER, "inc-1", "gp", f"gp-{i}", **synthetic_person(i)))
        out.append(record_message(SEALER, "inc-1", "lab", f"lab-{i}", categories=("lab_results",),
                                  **synthetic_person(i)))
    return out + [completion("inc-1", "gp", PERSONS), completion("inc-1", "lab", PERSONS)]


def _pipeline(engine, **kwargs) -> DedupePipeline:  # noqa: ANN001
    return DedupePipeline(engine, SEALER, review_sync_interval_s=0, release_chunk=CHUNK,
                          retry_first_delay_s=0.0, retry_max_delay_s=0.0, **kwargs)


def _notices(engine) -> list[tuple[str, int]]:  # noqa: ANN001
    with Session(engine) as session:
        return list(session.exec(select(NoticeState.person_id, NoticeState.version)).all())


def _outbox(engine) -> int:  # noqa: ANN001
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(OutboxMessage)).one()


def _dirty(engine) -> int:  # noqa: ANN001
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(PersonState)
                            .where(PersonState.dirty == True)).one()  # noqa: E712


def _finish(pipeline: DedupePipeline) -> int:
    """What the consumer does: ticks, and the next chunks while a release is in progress."""
    released = pipeline.tick({0}, caught_up={0})
    for _ in range(PERSONS):
        if not pipeline.releasing({0}):
            break
        released += pipeline.continue_release({0})
    return released


def _assert_one_notice_per_person(engine) -> None:  # noqa: ANN001
    notices = _notices(engine)
    assert len(notices) == len({p for p, _ in notices}) == PERSONS
    assert {v for _, v in notices} == {1}
    assert _outbox(engine) == PERSONS  # one outbox row per notice: none published twice
    assert _dirty(engine) == 0


def test_the_release_commits_one_chunk_per_transaction(dedupe_engine):
    pipeline = _pipeline(dedupe_engine)
    pipeline.apply_incidents([incident_message("inc-1", AGENCIES, ["gp", "lab"])])
    assert pipeline.apply_batch(0, _batch()) == CHUNK  # the first chunk, with the batch
    assert len(_notices(dedupe_engine)) == _outbox(dedupe_engine) == CHUNK
    assert _dirty(dedupe_engine) == PERSONS - CHUNK  # the rest wait, marked in the database
    assert pipeline.releasing({0}) == {0}

    assert pipeline.continue_release({0}) == CHUNK  # the next chunk, a transaction of its own
    assert len(_notices(dedupe_engine)) == 2 * CHUNK
    assert pipeline.continue_release({1}) == 0  # another partition's: nothing of it

    _finish(pipeline)
    assert not pipeline.releasing({0})
    _assert_one_notice_per_person(dedupe_engine)
    # A replay of the releasing batch changes nothing.
    assert pipeline.apply_batch(0, _batch()) == 0
    _assert_one_notice_per_person(dedupe_engine)


def test_a_release_resumed_after_a_restart_between_chunks_sends_each_person_once(dedupe_engine):
    first = _pipeline(dedupe_engine)
    first.apply_incidents([incident_message("inc-1", AGENCIES, ["gp", "lab"])])
    first.apply_batch(0, _batch())
    first.continue_release({0})
    assert len(_notices(dedupe_engine)) == 2 * CHUNK
    # The process is gone here: its memory with it. Another one (fresh identity state, a new
    # claim on the partition) rebuilds from the database and finishes the release.
    second = _pipeline(dedupe_engine)
    second.apply_batch(0, [record_message(SEALER, "inc-1", "gp", "gp-0", **synthetic_person(0))])
    _finish(second)
    _assert_one_notice_per_person(dedupe_engine)


def test_a_chunk_that_fails_rolls_back_alone_and_is_released_on_retry(dedupe_engine,
                                                                       monkeypatch):
    pipeline = _pipeline(dedupe_engine)
    pipeline.apply_incidents([incident_message("inc-1", AGENCIES, ["gp", "lab"])])
    pipeline.apply_batch(0, _batch())
    built = pipeline_module.build_notice
    calls = {"n": 0}

    def failing_on_the_third(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 3:  # mid-chunk: its first two notices were already built
            raise RuntimeError("injected")
        return built(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "build_notice", failing_on_the_third)
    assert pipeline.continue_release({0}) == 0  # the chunk rolled back, nothing of it stays
    assert len(_notices(dedupe_engine)) == _outbox(dedupe_engine) == CHUNK
    assert pipeline.identity.get("inc-1") is None  # dropped: rebuilt from the database
    _finish(pipeline)
    _assert_one_notice_per_person(dedupe_engine)


def test_a_chunk_after_the_incident_was_purged_writes_nothing(dedupe_engine):
    """The purge (here from another replica) lands between two chunks: the next chunk finds
    the incident purged in its own transaction and stores nothing of it again."""
    pipeline = _pipeline(dedupe_engine)
    pipeline.apply_incidents([incident_message("inc-1", AGENCIES, ["gp", "lab"])])
    pipeline.apply_batch(0, _batch())
    assert pipeline.releasing({0}) == {0}
    assert _pipeline(dedupe_engine).purge("inc-1", utcnow()) is not None
    assert pipeline.continue_release({0}) == 0
    assert _notices(dedupe_engine) == [] and _dirty(dedupe_engine) == 0
