"""Dispatch's data migrations on PostgreSQL: notices stored before a revision mean the same
after the upgrade."""

import pytest
from sqlalchemy import text

from services.common import migrations
from services.common.crypto import Sealer
from services.common.db import make_engine
from services.common.references import legacy_reference
from testkit.infra import migration_tree
from testkit.notices import notice_message, person

pytestmark = [pytest.mark.postgres]


def test_0006_gives_stored_notices_the_reference_they_printed(pg_database, data_keys):
    url = pg_database(None)
    tree = migration_tree("dispatch")
    migrations.upgrade(tree, url, "0005")
    sealer = Sealer(data_keys)
    old = notice_message(sealer, 1, person(1))  # made before references were keyed
    new = notice_message(sealer, 2, person(2), dates_of_birth=["1980-04-12"])
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO dispatch_notice (notice_id, incident_id, person_id, version, planned,"
            " payload, created_at) VALUES (:id, 'inc-1', :person, 1, true, :payload, now())"), [
            {"id": n.notice_id, "person": n.person_id, "payload": n.model_dump_json().encode()}
            for n in (old, new)])
    migrations.upgrade(tree, url)
    with engine.connect() as conn:
        rows = dict(conn.execute(text(
            "SELECT notice_id, reference_code FROM dispatch_notice")).all())
        checks = dict(conn.execute(text(
            "SELECT notice_id, dob_checks::text FROM dispatch_notice")).all())
        key_ids = set(conn.execute(text("SELECT check_key_id FROM dispatch_notice")).scalars())
    engine.dispose()
    assert rows == {old.notice_id: legacy_reference(old.notice_id),
                    new.notice_id: new.reference_code}
    assert checks[old.notice_id] == "[]" and new.dob_checks[0] in checks[new.notice_id]
    assert key_ids == {old.sealed.split(".")[1]}


def _store_notices(conn, notices: list) -> None:  # noqa: ANN001
    """Notices as dispatch stored them (their contract JSON) before the revision under test."""
    conn.execute(text(
        "INSERT INTO dispatch_notice (notice_id, incident_id, person_id, version, planned,"
        " payload, created_at, dob_checks) VALUES (:id, 'inc-1', :person, :version, true,"
        " :payload, CURRENT_TIMESTAMP, '[]')"), [
        {"id": n.notice_id, "person": n.person_id, "version": n.version,
         "payload": n.model_dump_json().encode()} for n in notices])


def _two_agency_notice(sealer: Sealer, n: int, agencies: list[str]):  # noqa: ANN202
    notice = notice_message(sealer, n, person(n))
    first = notice.agencies[0]
    return notice.model_copy(update={"agencies": [first.model_copy(update={"agency_id": a})
                                                  for a in agencies]})


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_0009_names_the_agencies_of_the_notices_stored_before_it(dialect, pg_database, data_keys,
                                                                  tmp_path):
    url = pg_database(None) if dialect == "postgresql" else f"sqlite:///{tmp_path / 'd.sqlite'}"
    tree = migration_tree("dispatch")
    migrations.upgrade(tree, url, "0008")
    sealer = Sealer(data_keys)
    both = _two_agency_notice(sealer, 1, ["gp-1", "lab-2"])
    one = _two_agency_notice(sealer, 2, ["lab-2"])
    engine = make_engine(url)
    with engine.begin() as conn:
        _store_notices(conn, [both, one])
    migrations.upgrade(tree, url)
    with engine.connect() as conn:
        rows = sorted(conn.execute(text(
            "SELECT incident_id, agency_id, notice_id FROM dispatch_notice_agency")).all())
    engine.dispose()
    assert [tuple(r) for r in rows] == sorted([("inc-1", "gp-1", both.notice_id),
                                                ("inc-1", "lab-2", both.notice_id),
                                                ("inc-1", "lab-2", one.notice_id)])


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_0010_marks_the_stored_sent_in_error_corrections_only_if_told(dialect, pg_database,
                                                                    data_keys, tmp_path):
    """Deliveries stored before 0010: those of a sent-in-error correction are sent only if an
    earlier version reached the person, as the planner marks them now; other notices' are not."""
    from services.common.messages import NoticeCorrection

    url = pg_database(None) if dialect == "postgresql" else f"sqlite:///{tmp_path / 'd.sqlite'}"
    tree = migration_tree("dispatch")
    migrations.upgrade(tree, url, "0009")
    sealer = Sealer(data_keys)
    plain = notice_message(sealer, 1, person(1), version=2)
    notices = {kind: plain.model_copy(update={
        "notice_id": f"ntc-{kind}", "correction": NoticeCorrection(
            kind=kind, review_id="rev-1", agencies=list(plain.agencies))})
        for kind in ("sent_in_error", "agency_not_involved")} | {"amendment": plain}
    engine = make_engine(url)
    with engine.begin() as conn:
        _store_notices(conn, list(notices.values()))
        conn.execute(text(
            "INSERT INTO delivery (notice_id, incident_id, person_id, notice_version, channel,"
            " status, attempts, reference, generation, next_attempt_at, may_hold, created_at,"
            " updated_at) VALUES (:id, 'inc-1', :person, 2, 'email', 'queued', 0, :id, 0, 0,"
            " false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), [
            {"id": n.notice_id, "person": n.person_id} for n in notices.values()])
    migrations.upgrade(tree, url)
    with engine.connect() as conn:
        marked = dict(conn.execute(text("SELECT notice_id, only_if_told FROM delivery")).all())
    engine.dispose()
    assert {k: bool(marked[n.notice_id]) for k, n in notices.items()} == {
        "sent_in_error": True, "agency_not_involved": False, "amendment": False}
