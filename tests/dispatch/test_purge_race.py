"""A purge of an incident racing a batch of its notices in dispatch (issue 18): the batch held
open in its transaction while the purge comes, and a notice read before the purge stored after
it. Nothing of the purged incident is stored again; late notices are dropped and counted.
Real PostgreSQL; the interleaving is forced with an open transaction, no sleeps."""

from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlmodel import Session

from services.common.crypto import Sealer, generate_key_spec
from services.common.db import session_scope
from services.dispatch import tracking
from services.dispatch.incidents import IncidentBook
from services.dispatch.models import Delivery, DispatchNotice
from services.dispatch.notices import purge_incident
from services.dispatch.store import incidents, notices
from testkit.interleave import Pause, Run, blocked_or_done
from testkit.notices import incident_message, notice_message, person

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
SEALER = Sealer(generate_key_spec("purge-race"))


def _run(engine, fn, *args):  # noqa: ANN001, ANN002, ANN202
    with session_scope(engine) as session:
        return fn(session, *args)


def held(engine) -> tuple[int, int]:  # noqa: ANN001
    with Session(engine) as session:
        return tuple(session.execute(select(func.count()).select_from(m).where(
            m.incident_id == "inc-1")).scalar() for m in (DispatchNotice, Delivery))


def dropped() -> float:
    return REGISTRY.get_sample_value("panui_purged_incident_messages_dropped_total",
                                     {"service": "dispatch", "topic": "notices.v1"}) or 0.0


@pytest.fixture
def book(dispatch_engine) -> IncidentBook:  # noqa: ANN001
    book = IncidentBook()
    message = incident_message("inc-1")
    _run(dispatch_engine, incidents.upsert_incident, message, message.to_bytes())
    book.remember(message)
    return book


def received(*ns: int) -> list:
    return [(n, n.to_bytes()) for n in (notice_message(SEALER, i, person(i)) for i in ns)]


def test_a_purge_waits_for_the_notices_in_flight_then_deletes_them(dispatch_engine, book, monkeypatch):
    assert _run(dispatch_engine, tracking.record_notices, book, received(1), None, NOW) == 1
    pause = Pause(notices.insert_notices)  # the notices inserted, not committed
    monkeypatch.setattr(notices, "insert_notices", pause)
    batch = Run(_run, dispatch_engine, tracking.record_notices, book, received(2, 3), None, NOW)
    batch.start()
    assert pause.reached.wait(60)
    purge = Run(_run, dispatch_engine, purge_incident, "inc-1", NOW)
    purge.start()
    waited = blocked_or_done(dispatch_engine, purge)
    pause.go()
    assert batch.outcome() == 2
    assert purge.outcome() is True
    assert waited  # the purge waited for the batch, then deleted its notices too
    assert held(dispatch_engine) == (0, 0)


def test_a_notice_stored_after_the_purge_is_dropped_and_counted(dispatch_engine, book):
    assert _run(dispatch_engine, tracking.record_notices, book, received(1), None, NOW) == 1
    assert _run(dispatch_engine, purge_incident, "inc-1", NOW) is True
    before = dropped()
    assert _run(dispatch_engine, tracking.record_notices, book, received(2, 3), None, NOW) == 0
    assert held(dispatch_engine) == (0, 0)
    assert dropped() - before == 2
