"""Bounded memory (issue 10, item 7): a finished incident — released, every person decided,
nothing come for it a while — is evicted from memory; ticks do not rebuild it for nothing;
a late record or a review decision rebuilds it from the database and is handled as if it
had never left. A rebuild reads the records in chunks. The pipeline on a real PostgreSQL."""

import pytest
from sqlmodel import Session, select

from services.common.clock import utcnow
from services.common.crypto import Sealer, generate_key_spec
from services.common.db import session_scope
from services.dedupe import store
from services.dedupe.models import NoticeState, RecordState, ReviewState
from services.dedupe.pipeline import DedupePipeline
from testkit.messages import completion, incident_message, record_message
from tests.dedupe.conftest import AROHA, HEMI
from tests.dedupe.test_reviews import J_TIPENE, JOSEPH_TIPENE

pytestmark = [pytest.mark.postgres]

SEALER = Sealer(generate_key_spec("eviction-test"))
AGENCIES = {"gp": "Test GP", "lab": "Test Lab"}


def notices(engine) -> list[tuple[str, int]]:  # noqa: ANN001
    with Session(engine) as session:
        return sorted((n.person_id, n.version) for n in session.exec(select(NoticeState)))


def released_incident(pipeline: DedupePipeline, incident_id: str, settle: int = 0) -> None:
    pipeline.apply_incidents([incident_message(incident_id, AGENCIES, ["gp"],
                                               settle_window_seconds=settle)])
    pipeline.apply_batch(0, [record_message(SEALER, incident_id, "gp", "gp-1", **AROHA),
                             record_message(SEALER, incident_id, "gp", "gp-2", **HEMI),
                             completion(incident_id, "gp", 2)])


def test_a_finished_incident_is_evicted_and_a_late_record_brings_it_back(dedupe_engine):
    pipeline = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0, evict_after_s=0)
    released_incident(pipeline, "inc-1")
    pipeline.apply_incidents([incident_message("inc-open", AGENCIES, ["gp", "lab"])])
    pipeline.apply_batch(0, [record_message(SEALER, "inc-open", "gp", "gp-1", **AROHA)])
    assert len(notices(dedupe_engine)) == 2

    pipeline.tick({0})  # writes inc-1's review queue; it is finished now
    pipeline.tick({0})
    assert pipeline.identity.get("inc-1") is None  # evicted
    assert pipeline.identity.get("inc-open") is not None  # not released: kept
    for _ in range(3):  # ticks do not rebuild a finished incident for nothing
        pipeline.tick({0})
        assert pipeline.identity.get("inc-1") is None

    # A late record for Aroha from the lab: rebuilt from the database, one amendment.
    assert pipeline.apply_batch(0, [record_message(SEALER, "inc-1", "lab", "lab-1",
                                                   categories=("lab_results",), **AROHA)]) == 1
    aroha_notice = [n for n in notices(dedupe_engine) if n[1] == 2]
    assert len(aroha_notice) == 1 and len(notices(dedupe_engine)) == 3
    # A replay of the records after eviction changes nothing.
    pipeline.tick({0})
    pipeline.tick({0})
    assert pipeline.identity.get("inc-1") is None
    assert pipeline.apply_batch(0, [record_message(SEALER, "inc-1", "gp", "gp-1", **AROHA)]) == 0
    assert len(notices(dedupe_engine)) == 3


def test_an_incident_with_a_person_still_to_decide_is_not_evicted(dedupe_engine):
    pipeline = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0, evict_after_s=0)
    released_incident(pipeline, "inc-1", settle=3600)
    pipeline.apply_batch(0, [record_message(SEALER, "inc-1", "gp", "gp-9", **{
        **HEMI, "nhi": "ZZZ0024", "given_names": "Mere", "date_of_birth": "1990-01-01"})])
    for _ in range(3):  # a person arrived after release waits for the settle window
        pipeline.tick({0})
    assert pipeline.identity.get("inc-1") is not None

    # Restarted: the tick rebuilds it (a person awaits a decision), a finished one it leaves.
    fresh = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0, evict_after_s=0)
    released_incident(pipeline, "inc-2")
    assert fresh.cold_with_work({0}) == {0: ["inc-1"]}
    fresh.tick({0})
    assert fresh.identity.get("inc-1") is not None
    assert fresh.identity.get("inc-2") is None
    assert fresh.cold_with_work({0}) == {}


def test_a_review_decision_on_an_evicted_incident_is_applied(dedupe_engine):
    pipeline = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0, evict_after_s=0)
    pipeline.apply_incidents([incident_message("inc-r", AGENCIES, ["gp", "lab"])])
    pipeline.apply_batch(0, [
        record_message(SEALER, "inc-r", "gp", "gp-1", **J_TIPENE),
        record_message(SEALER, "inc-r", "lab", "lab-1", categories=("lab_results",),
                       **JOSEPH_TIPENE),
        completion("inc-r", "gp", 1), completion("inc-r", "lab", 1)])
    assert len(notices(dedupe_engine)) == 2  # uncertain: two persons until a reviewer says
    pipeline.tick({0})
    pipeline.tick({0})
    assert pipeline.identity.get("inc-r") is None
    with Session(dedupe_engine) as session:
        (review,) = session.exec(select(ReviewState)).all()

    with session_scope(dedupe_engine) as session:
        store.decide_review(session, "inc-r", review.review_id, "merge", utcnow())
    assert pipeline.cold_with_work({0}) == {0: ["inc-r"]}
    pipeline.tick({0})  # rebuilt, the merge applied and written: one person
    with Session(dedupe_engine) as session:
        assert session.get(ReviewState, review.review_id).applied
        persons = {r.person_id for r in session.exec(select(RecordState))}
    assert len(persons) == 1
    assert pipeline.cold_with_work({0}) == {}  # finished again: evicted (evict_after_s=0)


def test_a_rebuild_streams_the_records_and_holds_what_a_full_load_holds(dedupe_engine):
    pipeline = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    released_incident(pipeline, "inc-1")
    pipeline.apply_batch(0, [record_message(SEALER, "inc-1", "lab", "lab-1",
                                            categories=("lab_results",), **AROHA)])
    with session_scope(dedupe_engine) as session:
        full = store.load_identity(session, "inc-1")
        streamed = list(store.stream_records(session, "inc-1", chunk=1))
    assert sorted(streamed, key=lambda r: r.key) == sorted(full.records, key=lambda r: r.key)
    held = pipeline.identity.get("inc-1")

    other = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    other.warm(0, ["inc-1"], other.assignment(0))
    rebuilt = other.identity.get("inc-1")
    assert rebuilt.members == held.members and rebuilt.records == held.records
    assert {p: (m.notice_person_id, m.notified_version) for p, m in rebuilt.persons.items()} \
        == {p: (m.notice_person_id, m.notified_version) for p, m in held.persons.items()}

    # A rebuild asked for before a revocation holds nothing.
    late = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    assignment = late.assignment(0)
    late.revoked({0})
    late.warm(0, ["inc-1"], assignment)
    assert late.identity.get("inc-1") is None
