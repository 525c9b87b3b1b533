"""Dispatch's part of an agency's reconciliation (store.reconciliation) on real PostgreSQL: a
notice is found for each agency it names — through dispatch_notice_agency, filled when the
notice is stored — and for no other; a replayed notice adds nothing; a purge leaves nothing."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from services.common.crypto import Sealer
from services.dispatch.models import NoticeAgency
from services.dispatch.store import notices, reconciliation, retention
from testkit.notices import notice_message, person

pytestmark = [pytest.mark.postgres]

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _naming(sealer: Sealer, n: int, agencies: list[str]):  # noqa: ANN202
    notice = notice_message(sealer, n, person(n))
    first = notice.agencies[0]
    return notice.model_copy(update={"agencies": [first.model_copy(update={"agency_id": a})
                                                  for a in agencies]})


def _store(session: Session, messages: list) -> set[str]:
    return notices.insert_notices(session, [notices.NewNotice(m, m.model_dump_json().encode(), False)
                                            for m in messages], NOW)


def test_each_agency_finds_the_notices_naming_it_and_no_other(dispatch_engine, data_keys):
    sealer = Sealer(data_keys)
    both, gp_only, lab_only = (_naming(sealer, 1, ["gp-1", "lab-2"]), _naming(sealer, 2, ["gp-1"]),
                               _naming(sealer, 3, ["lab-2"]))
    with Session(dispatch_engine) as s, s.begin():
        assert _store(s, [both, gp_only, lab_only]) == {both.notice_id, gp_only.notice_id,
                                                         lab_only.notice_id}
    with Session(dispatch_engine) as s, s.begin():
        assert _store(s, [both]) == set()  # a replay: nothing stored twice
    ids = [both.notice_id, gp_only.notice_id, lab_only.notice_id, "not-a-notice"]
    with Session(dispatch_engine) as s:
        count = s.execute(select(func.count()).select_from(NoticeAgency.__table__)).scalar()
        assert count == 4
        gp = reconciliation.notices_by_id(s, "inc-1", "gp-1", ids)
        lab = reconciliation.notices_by_id(s, "inc-1", "lab-2", ids)
        assert [o.notice_id for o in gp] == sorted([both.notice_id, gp_only.notice_id])
        assert [o.notice_id for o in lab] == sorted([both.notice_id, lab_only.notice_id])
        assert reconciliation.notices_by_id(s, "inc-2", "gp-1", ids) == []  # another incident
        assert all(o.version == 1 and o.deliveries == [] for o in gp)
        # Paged one at a time, the same notices in notice-id order, and then the end.
        paged, after = [], ""
        while after is not None:
            page, after = reconciliation.notice_outcomes(s, "inc-1", "lab-2", after, 1)
            paged += page
        assert paged == lab
    with Session(dispatch_engine) as s, s.begin():
        retention.purge_incident(s, "inc-1")
    with Session(dispatch_engine) as s:
        assert s.execute(select(func.count()).select_from(NoticeAgency.__table__)).scalar() == 0
