"""The pipeline on a real PostgreSQL database, without Kafka: a batch or a tick commits
everything it changes in one transaction, and when that transaction fails the identity state
it touched is dropped, so memory never runs ahead of the database."""

import pytest
from sqlmodel import Session, func, select

from services.common.crypto import Sealer, generate_key_spec
from services.common.db import session_scope
from services.common.outbox import OutboxMessage
from services.dedupe import store
from services.dedupe.models import NoticeState, PersonState, RecordState
from services.dedupe.pipeline import DedupePipeline
from testkit.messages import completion, incident_message, record_message, withdrawal
from tests.dedupe.conftest import AROHA, HEMI
from tests.dedupe.test_reviews import J_TIPENE, JOSEPH_TIPENE

pytestmark = [pytest.mark.postgres]

SEALER = Sealer(generate_key_spec("pipeline-test"))
OTHER_KEY = Sealer(generate_key_spec("another-keyring"))
AGENCIES = {"gp": "Test GP", "lab": "Test Lab"}


def count(engine, model, *where) -> int:  # noqa: ANN001
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model).where(*where)).one()


def persons_of(engine, incident_id: str) -> set[str | None]:  # noqa: ANN001
    with Session(engine) as session:
        return set(session.exec(select(RecordState.person_id).where(
            RecordState.incident_id == incident_id)).all())


@pytest.fixture
def pipeline(dedupe_engine) -> DedupePipeline:  # noqa: ANN001
    return DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)


def test_a_batch_writes_records_persons_notices_and_outbox_rows(pipeline, dedupe_engine):
    pipeline.apply_incidents([incident_message("inc-1", AGENCIES, ["gp", "lab"])])
    released = pipeline.apply_batch(0, [
        record_message(SEALER, "inc-1", "gp", "gp-1", **AROHA),
        record_message(SEALER, "inc-1", "lab", "lab-9", categories=("lab_results",), **AROHA),
        record_message(SEALER, "inc-1", "gp", "gp-2", **HEMI),
        completion("inc-1", "gp", 2), completion("inc-1", "lab", 1),
    ])
    assert released == 2
    assert len(persons_of(dedupe_engine, "inc-1")) == 2
    assert count(dedupe_engine, NoticeState) == count(dedupe_engine, OutboxMessage) == 2
    assert count(dedupe_engine, PersonState, PersonState.status == "notified") == 2
    with session_scope(dedupe_engine) as session:
        incident = store.get_incident(session, "inc-1")
    assert (incident.partition, incident.completed, incident.release_reason) == (
        0, {"gp": 2, "lab": 1}, "complete")

    # The same batch again (a replay after a crash before the offset commit): nothing new.
    assert pipeline.apply_batch(0, [record_message(SEALER, "inc-1", "gp", "gp-1", **AROHA)]) == 0
    assert count(dedupe_engine, NoticeState) == 2


def test_a_failed_batch_is_forgotten_and_applies_in_full_when_retried(pipeline, dedupe_engine):
    good = record_message(SEALER, "inc-1", "gp", "gp-1", **AROHA)
    unreadable = record_message(OTHER_KEY, "inc-1", "gp", "gp-2", **HEMI)
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the keyring raises
        pipeline.apply_batch(0, [good, unreadable])
    assert count(dedupe_engine, RecordState) == 0
    assert pipeline.identity.get("inc-1") is None  # not left ahead of the database

    # The consumer redelivers the batch (without the bad record, here): the good record is
    # new again, not mistaken for a replay.
    pipeline.apply_batch(0, [good])
    assert count(dedupe_engine, RecordState, RecordState.person_id.is_not(None)) == 1


def test_a_decision_made_before_a_rebalance_still_reaches_the_persons(pipeline, dedupe_engine):
    pipeline.apply_incidents([incident_message("inc-1", AGENCIES, ["gp", "lab"])])
    pipeline.apply_batch(0, [record_message(SEALER, "inc-1", "gp", "gp-1", **J_TIPENE),
                             record_message(SEALER, "inc-1", "lab", "lab-1", **JOSEPH_TIPENE)])
    pipeline.tick({0})  # lists the uncertain pair for review
    assert len(persons_of(dedupe_engine, "inc-1")) == 2
    with session_scope(dedupe_engine) as session:
        (review,) = store.reviews(session, "inc-1", "open")
        store.decide_review(session, "inc-1", review.review_id, "merge", pipeline.clock())

    pipeline.revoked({0})  # a rebalance before the owner's tick; the partition comes back
    pipeline.tick({0})
    assert len(persons_of(dedupe_engine, "inc-1")) == 1
    assert count(dedupe_engine, PersonState, PersonState.status == "pending") == 1


def test_a_tombstone_is_stored_and_outranks_its_version_after_a_rebuild(pipeline, dedupe_engine):
    pipeline.apply_incidents([incident_message("inc-1", AGENCIES, ["gp"])])
    pipeline.apply_batch(0, [withdrawal("inc-1", "gp", "gp-1", version=1)])
    with Session(dedupe_engine) as session:
        row = session.exec(select(RecordState)).one()
    assert (row.record_version, row.withdrawn, row.sealed, row.person_id) == (1, True, "", None)

    pipeline.revoked({0})  # rebuilt from the database before the late version comes
    pipeline.apply_batch(0, [record_message(SEALER, "inc-1", "gp", "gp-1", **AROHA)])
    assert count(dedupe_engine, RecordState, RecordState.withdrawn == False) == 0  # noqa: E712
    pipeline.apply_batch(0, [record_message(SEALER, "inc-1", "gp", "gp-1", version=2, **AROHA),
                             completion("inc-1", "gp", 1)])
    assert count(dedupe_engine, NoticeState) == 1
