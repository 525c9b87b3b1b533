"""A new version of a record whose person was already told (an agency re-sends its feed with
rows corrected), in the pipeline on a real PostgreSQL database, without Kafka: the person keeps
the notice they hold — nothing more when nothing new is said, an amendment under the same
reference when something is, also after a restart rebuilt the incident from the database —
and never a second first notice."""

import pytest
from sqlmodel import Session, select

from services.common.crypto import Sealer, generate_key_spec
from services.common.messages import decode_notice
from services.common.outbox import OutboxMessage
from services.dedupe.pipeline import DedupePipeline
from testkit.messages import completion, incident_message, record_message
from tests.dedupe.conftest import AROHA

pytestmark = [pytest.mark.postgres]

SEALER = Sealer(generate_key_spec("corrected-versions-test"))


def notices(engine) -> list:  # noqa: ANN001
    with Session(engine) as session:
        return [decode_notice(row.payload) for row in session.exec(
            select(OutboxMessage).where(OutboxMessage.topic == "notices.v1")
            .order_by(OutboxMessage.id)).all()]


def test_corrected_versions_of_a_told_record_amend_or_say_nothing_across_a_restart(dedupe_engine):
    pipeline = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    pipeline.apply_incidents([incident_message("inc-v", {"gp": "Test GP"}, ["gp"])])
    pipeline.apply_batch(0, [record_message(SEALER, "inc-v", "gp", "gp-1", **AROHA),
                             completion("inc-v", "gp", 1)])
    (first,) = notices(dedupe_engine)

    # Version 2: the document count and the email corrected. Nothing new to tell.
    pipeline.apply_batch(0, [record_message(SEALER, "inc-v", "gp", "gp-1", version=2,
                                            documents=4,
                                            **{**AROHA, "email": "aroha.new@example.nz"})])
    pipeline.tick({0})
    assert notices(dedupe_engine) == [first]

    # A restart rebuilds the incident; version 3 adds a category: one amendment, same reference.
    restarted = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    restarted.apply_batch(0, [record_message(SEALER, "inc-v", "gp", "gp-1", version=3,
                                             categories=("clinical_notes", "prescriptions"),
                                             **AROHA)])
    restarted.tick({0})
    _, amendment = notices(dedupe_engine)
    assert (amendment.person_id, amendment.version) == (first.person_id, 2)
