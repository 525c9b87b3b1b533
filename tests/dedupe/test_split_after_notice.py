"""Split after notification (issue 10, item 3), with the real resolver and PostgreSQL: a
person told in one notice is split by a coordinator's keep-apart decision. What each part
gets next depends on what it was told: a part whose records' versions a notice covered is
told (its next notice is an amendment, under a lineage of its own); a part whose records no
notice covered (withdrawn and re-sent since) gets a first notice. Notice ids never collide.

Ground truth: the notices in the outbox, by the real person each one reaches."""

import pytest
from sqlmodel import Session, select

from services.common.crypto import Sealer, generate_key_spec
from services.common.db import session_scope
from services.common.messages import NoticeMessage
from services.common.outbox import OutboxMessage
from services.dedupe import store
from services.dedupe.pipeline import DedupePipeline
from testkit.messages import completion, incident_message, record_message, withdrawal
from tests.dedupe.conftest import tally
from tests.dedupe.test_reviews import J_TIPENE, JOSEPH_TIPENE

pytestmark = [pytest.mark.postgres]

SEALER = Sealer(generate_key_spec("split-test"))
AGENCIES = {"gp": "Test GP", "lab": "Test Lab", "hosp": "Test Hospital"}
J_EMAIL = J_TIPENE["email"]
NEW_MOBILE = "+64219870000"  # the re-sent lab record's corrected mobile


def _notices(engine) -> list[NoticeMessage]:  # noqa: ANN001
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    return [NoticeMessage.model_validate_json(r.payload) for r in rows if r.topic == "notices.v1"]


def _decide(pipeline: DedupePipeline, same_person: bool) -> None:
    with session_scope(pipeline.engine) as session:
        (review,) = store.reviews(session, "inc-s", None)
        store.decide_review(session, "inc-s", review.review_id,
                            "merge" if same_person else "keep_apart", pipeline.clock())
    pipeline.tick({0})


@pytest.fixture
def notified(dedupe_engine) -> DedupePipeline:  # noqa: ANN001
    """J Tipene (GP) and Joseph Tipene (lab), merged by the coordinator and told in one notice."""
    pipeline = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    pipeline.apply_incidents([incident_message("inc-s", AGENCIES, ["gp", "lab"])])
    pipeline.apply_batch(0, [
        record_message(SEALER, "inc-s", "gp", "gp-1", **J_TIPENE),
        record_message(SEALER, "inc-s", "lab", "lab-1", categories=("lab_results",),
                       **JOSEPH_TIPENE)])
    pipeline.tick({0})  # the uncertain pair is listed
    _decide(pipeline, same_person=True)
    pipeline.apply_batch(0, [completion("inc-s", "gp", 1), completion("inc-s", "lab", 1)])
    (notice,) = _notices(dedupe_engine)
    assert [a.agency_id for a in notice.agencies] == ["gp", "lab"]
    return pipeline


def test_a_part_no_notice_covered_gets_a_first_notice(notified, dedupe_engine):
    # The lab's record was wrong: withdrawn, sent again corrected; the merge decision still
    # holds, so it rejoins the told person — who has nothing new to hear (no amendment).
    notified.apply_batch(0, [
        withdrawal("inc-s", "lab", "lab-1", version=1),
        record_message(SEALER, "inc-s", "lab", "lab-1", version=2, categories=("lab_results",),
                       **{**JOSEPH_TIPENE, "mobile": NEW_MOBILE})])
    assert len(_notices(dedupe_engine)) == 1
    # Then the coordinator keeps them apart: the corrected lab record is someone no notice
    # told — a first notice, to the re-sent data.
    _decide(notified, same_person=False)
    notified.tick({0})

    notices = _notices(dedupe_engine)
    result = tally(SEALER, notices, [J_EMAIL, NEW_MOBILE])
    assert (result.never, result.twice, result.unexpected) == (set(), set(), set())
    (joseph,) = result.notices[NEW_MOBILE]
    assert (joseph.version, [a.agency_id for a in joseph.agencies]) == (1, ["lab"])
    assert joseph.person_id != notices[0].person_id


def test_two_told_parts_each_get_their_own_amendment(notified, dedupe_engine):
    _decide(notified, same_person=False)  # both parts were covered by the notice: told
    notified.tick({0})
    assert len(_notices(dedupe_engine)) == 1

    # The hospital has a record of each: a new agency for both parts, so two amendments —
    # never the same notice id (which would fail the batch forever).
    notified.apply_batch(0, [
        record_message(SEALER, "inc-s", "hosp", "h-1", categories=("discharge_summaries",),
                       **J_TIPENE),
        record_message(SEALER, "inc-s", "hosp", "h-2", categories=("discharge_summaries",),
                       **JOSEPH_TIPENE)])
    notices = _notices(dedupe_engine)
    assert len({n.notice_id for n in notices}) == len(notices) == 3
    first, *amendments = notices
    assert sorted(n.version for n in amendments) == [2, 2]
    assert len({n.person_id for n in amendments}) == 2
    assert first.person_id in {n.person_id for n in amendments}  # one part keeps the lineage
    assert sorted(tuple(a.agency_id for a in n.agencies) for n in amendments) == [
        ("gp", "hosp"), ("hosp", "lab")]
    result = tally(SEALER, notices, [J_EMAIL, JOSEPH_TIPENE["mobile"]])
    assert (result.never, result.twice, result.unexpected) == (set(), set(), set())
