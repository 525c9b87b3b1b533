"""Two owners of one partition (issue 10, item 14, dedupe's side): whatever Kafka's group
thinks for a moment (a zombie consumer that missed its revocation), only the instance with
the newest claim on a partition writes its incidents' state. A claim waits for any write
checked under the old claim to commit, then sees it. Real PostgreSQL, real resolver."""

import threading

import pytest
from sqlmodel import Session, select

from services.common.clock import utcnow
from services.common.crypto import Sealer, generate_key_spec
from services.common.db import session_scope
from services.dedupe import store
from services.dedupe.models import NoticeState, PartitionOwner, RecordState
from services.dedupe.pipeline import DedupePipeline, NotOwner
from testkit.messages import completion, incident_message, record_message
from tests.dedupe.conftest import AROHA

pytestmark = [pytest.mark.postgres]

SEALER = Sealer(generate_key_spec("fencing-test"))
AGENCIES = {"gp": "Test GP", "lab": "Test Lab", "hosp": "Test Hospital"}


def rows(engine, model) -> list:  # noqa: ANN001
    with Session(engine) as session:
        return list(session.exec(select(model)).all())


def test_a_zombie_owner_writes_nothing_after_a_newer_claim(dedupe_engine):
    a = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    b = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    a.apply_incidents([incident_message("inc-1", AGENCIES, ["gp", "lab"])])
    a.apply_batch(0, [record_message(SEALER, "inc-1", "gp", "gp-1", **AROHA)])

    # A rebalance gives partition 0 to B; A never hears of it. B goes on with the stream.
    assert b.apply_batch(0, [
        record_message(SEALER, "inc-1", "lab", "lab-1", categories=("lab_results",), **AROHA),
        completion("inc-1", "gp", 1), completion("inc-1", "lab", 1)]) == 1
    # A, with its stale state (Aroha not yet notified, in its memory), gets a record of
    # her: it must not notify her again, nor write anything at all.
    late = record_message(SEALER, "inc-1", "hosp", "h-1", categories=("discharge_summaries",),
                          **AROHA)
    with pytest.raises(NotOwner):
        a.apply_batch(0, [late])
    assert a.tick({0}) == 0
    assert len(rows(dedupe_engine, RecordState)) == 2 and len(rows(dedupe_engine, NoticeState)) == 1
    with pytest.raises(NotOwner):  # and it does not claim the partition back
        a.apply_batch(0, [late])
    assert [o.epoch for o in rows(dedupe_engine, PartitionOwner)] == [2]

    assert b.apply_batch(0, [late]) == 1  # the owner sends the one amendment
    assert sorted(n.version for n in rows(dedupe_engine, NoticeState)) == [1, 2]
    # Once A is assigned the partition again it claims it, and rebuilds from the database.
    a.revoked({0})
    a.apply_batch(0, [late])
    with pytest.raises(NotOwner):
        b.apply_batch(0, [late])


def test_a_claim_waits_for_a_write_checked_under_the_old_claim(dedupe_engine):
    with session_scope(dedupe_engine) as session:
        assert store.claim_partition(session, 0, "a", utcnow()) == 1
    claimed: list[int] = []
    with session_scope(dedupe_engine) as session:  # the old owner's write, in flight
        assert store.owner_epochs(session, {0}) == {0: 1}

        def claim() -> None:
            with session_scope(dedupe_engine) as other:
                claimed.append(store.claim_partition(other, 0, "b", utcnow()))

        thread = threading.Thread(target=claim)
        thread.start()
        thread.join(0.5)
        assert claimed == []  # blocked by the write's check until it commits
    thread.join(10)
    assert claimed == [2]
