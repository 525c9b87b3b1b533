"""A purge of an incident racing a batch of its records (issue 18): the batch held open in
its transaction while the purge comes, and a batch read before the purge applied after it.
Nothing of the purged incident is stored again, nothing crashes; what comes late is dropped
and counted. Real PostgreSQL; the interleaving is forced with an open transaction, no sleeps."""

import pytest
from prometheus_client import REGISTRY
from sqlmodel import Session, select

from services.common import retention
from services.common.clock import utcnow
from services.common.crypto import Sealer, generate_key_spec
from services.dedupe import store
from services.dedupe.models import IncidentState, NoticeState, PersonState, RecordState
from services.dedupe.pipeline import DedupePipeline
from testkit.interleave import Pause, Run, blocked_or_done
from testkit.messages import completion, incident_message, record_message
from tests.dedupe.conftest import AROHA, HEMI

pytestmark = [pytest.mark.postgres]

SEALER = Sealer(generate_key_spec("purge-race"))
AGENCIES = {"gp": "Test GP", "lab": "Test Lab"}


def held(engine, incident_id: str) -> dict[str, int]:  # noqa: ANN001
    with Session(engine) as session:
        return {m.__name__: len(session.exec(select(m).where(m.incident_id == incident_id)).all())
                for m in (RecordState, PersonState, NoticeState, IncidentState)}


def dropped() -> float:
    return REGISTRY.get_sample_value("panui_purged_incident_messages_dropped_total",
                                     {"service": "dedupe", "topic": "affected-records.v1"}) or 0.0


def test_a_purge_waits_for_the_batch_in_flight_then_deletes_what_it_wrote(dedupe_engine, monkeypatch):
    pipeline = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    pipeline.apply_incidents([incident_message("inc-1", AGENCIES, ["gp", "lab"])])
    pipeline.apply_batch(0, [record_message(SEALER, "inc-1", "gp", "gp-1", **AROHA)])

    # The next batch (a new person, both agencies complete: a release) stops inside its
    # transaction, its records and persons written and not committed.
    pause = Pause(store.write_persons)
    monkeypatch.setattr(store, "write_persons", pause)
    batch = Run(pipeline.apply_batch, 0, [
        record_message(SEALER, "inc-1", "lab", "lab-1", categories=("lab_results",), **HEMI),
        completion("inc-1", "gp", 1), completion("inc-1", "lab", 1)])
    batch.start()
    assert pause.reached.wait(60)
    purge = Run(pipeline.purge, "inc-1", utcnow())
    purge.start()
    waited = blocked_or_done(dedupe_engine, purge)
    pause.go()
    assert batch.outcome() == 2  # the batch committed whole (two people released)...
    counts = purge.outcome()
    assert waited  # ...while the purge waited for it,
    # and then deleted everything, the batch's rows included: nothing resurrected.
    assert held(dedupe_engine, "inc-1") == dict.fromkeys(
        ("RecordState", "PersonState", "NoticeState", "IncidentState"), 0)
    assert counts["records"] == 2 and len(counts["notice_ids"]) == 2


def test_a_batch_read_before_the_purge_and_applied_after_it_is_dropped_and_counted(dedupe_engine):
    pipeline = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    pipeline.apply_incidents([incident_message("inc-1", AGENCIES, ["gp", "lab"])])
    pipeline.apply_batch(0, [record_message(SEALER, "inc-1", "gp", "gp-1", **AROHA)])
    assert pipeline.purge("inc-1", utcnow()) is not None
    before = dropped()

    late = [record_message(SEALER, "inc-1", "lab", "lab-1", categories=("lab_results",), **HEMI),
            completion("inc-1", "lab", 1),
            record_message(SEALER, "inc-2", "gp", "gp-9", **AROHA)]  # another incident's goes on
    assert pipeline.apply_batch(0, late) == 0
    pipeline.apply_incidents([incident_message("inc-1", AGENCIES, ["gp", "lab"], revision=2)])
    assert pipeline.tick({0}) == 0

    assert held(dedupe_engine, "inc-1") == dict.fromkeys(
        ("RecordState", "PersonState", "NoticeState", "IncidentState"), 0)
    assert held(dedupe_engine, "inc-2")["RecordState"] == 1
    assert dropped() - before == 2
    with Session(dedupe_engine) as session:
        assert retention.purged_of(session, {"inc-1", "inc-2"}) == {"inc-1"}
