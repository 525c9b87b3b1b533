"""Duplicate and reordered outbox rows (property test). intake's outbox relay publishes a batch,
then deletes its rows; a crash or a leader handover between the two publishes the batch again,
after rows the next leader has already sent. So dedupe sees the original stream with runs of
earlier rows replayed anywhere later: duplicates, and older rows (a version 1, a withdrawal)
arriving after newer ones (the re-sent version 2). Whatever the replays and however the
consumer cuts its batches, the outcome must be the one of the stream read once: every person
notified exactly once, at the address of the newest version — or, where the GP's re-sent email
contradicts the lab's record of the same person, without an email (a contested contact is
left out until a coordinator decides: issue 18).

On dedupe's pipeline and a real PostgreSQL database, without Kafka: hypothesis explores many
schedules a second, which the process-level scenarios could not."""

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from services.common.crypto import Sealer, generate_key_spec
from services.common.db import make_engine
from services.common.messages import decode_notice, notice_sealing_context
from services.common.outbox import OutboxMessage
from services.dedupe.pipeline import DedupePipeline
from testkit import infra
from testkit.factories import synthetic_person
from testkit.messages import completion, incident_message, record_message, withdrawal

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # ~30 examples: half a minute or more on 2 cores

SEALER = Sealer(generate_key_spec("outbox-order"))
AGENCIES = {"gp": "Test GP", "lab": "Test Lab"}
PERSONS = 6  # person i has a GP record; even persons a lab record too
RESENT = (0, 1, 4)  # their GP record is withdrawn and sent again (version 2, a new email)


def _stream(incident: str) -> tuple[list, dict[int, tuple[str, str | None]]]:
    """intake's outbox rows for one incident, in the order it wrote them, and the email each
    person must be told at."""
    rows, lab = [], 0
    for i in range(PERSONS):
        rows.append(record_message(SEALER, incident, "gp", f"gp-{i}", **synthetic_person(i)))
        if i % 2 == 0:
            lab += 1
            rows.append(record_message(SEALER, incident, "lab", f"lab-{i}",
                                       categories=("lab_results",), **synthetic_person(i)))
    expected = {i: _told(synthetic_person(i)) for i in range(PERSONS)}
    for i in RESENT:
        rows.append(withdrawal(incident, "gp", f"gp-{i}"))
        resent = {**synthetic_person(i), "email": f"resent{i}@example.nz"}
        # Even persons have a lab record still giving the old email: contested, left out.
        expected[i] = _told({**resent, "email": None} if i % 2 == 0 else resent)
        rows.append(record_message(SEALER, incident, "gp", f"gp-{i}", version=2, **resent))
    rows += [completion(incident, "gp", PERSONS), completion(incident, "lab", lab)]
    return rows, expected


def _told(recipient: dict) -> tuple[str, str | None]:
    """Who a notice is for (given names are distinct here) and the email it may use."""
    return recipient["given_names"], recipient.get("email")


@st.composite
def schedules(draw, n: int) -> tuple[list[int], list[int]]:  # noqa: ANN001
    """Indexes into the stream as the consumer receives them — the stream in order, with up to
    four runs of already-published rows replayed at later points — and the batch cuts."""
    replays: dict[int, list[tuple[int, int]]] = {}
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(1, n))  # the replay arrives after row at-1 was published
        start = draw(st.integers(0, at - 1))
        end = draw(st.integers(start + 1, at))
        replays.setdefault(at, []).append((start, end))
    order: list[int] = []
    for i in range(n + 1):
        for start, end in replays.get(i, []):
            order += range(start, end)
        if i < n:
            order.append(i)
    cuts = sorted(set(draw(st.lists(st.integers(1, len(order) - 1), max_size=6))))
    return order, cuts


@pytest.fixture(scope="module")
def engine(pg_admin_url):  # noqa: ANN001, ANN201
    """One database for every example: each example is its own incident."""
    name, url = infra.create_database(pg_admin_url, service="dedupe")
    engine = make_engine(url)
    yield engine
    engine.dispose()
    infra.drop_database(pg_admin_url, name)


def _notices(engine, incident: str) -> Counter:  # noqa: ANN001
    """(person, email) of the notices the pipeline put in dedupe's outbox for `incident`, counted."""
    with Session(engine) as session:
        payloads = session.exec(select(OutboxMessage.payload).where(
            OutboxMessage.topic == "notices.v1")).all()
    told: Counter = Counter()
    for payload in payloads:
        notice = decode_notice(payload)
        if notice.incident_id == incident:
            opened = SEALER.open(notice.sealed, notice_sealing_context(notice.notice_id))
            told[_told(opened["recipient"])] += 1
    return told


_examples = iter(range(10**6))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_duplicate_and_reordered_outbox_rows_notify_each_person_once(engine, data):  # noqa: ANN001
    incident = f"inc-order-{next(_examples)}"
    rows, expected = _stream(incident)
    order, cuts = data.draw(schedules(len(rows)))
    pipeline = DedupePipeline(engine, SEALER, review_sync_interval_s=0)
    pipeline.apply_incidents([incident_message(incident, AGENCIES, ["gp", "lab"])])
    delivered = [rows[i] for i in order]
    for start, end in zip([0, *cuts], [*cuts, len(delivered)], strict=True):
        pipeline.apply_batch(0, delivered[start:end])
    pipeline.tick({0})

    told = _notices(engine, incident)
    assert told == Counter(expected.values()), (
        f"replayed {len(order) - len(rows)} rows: told {dict(told)}, expected each of "
        f"{sorted(expected.values())} once")
