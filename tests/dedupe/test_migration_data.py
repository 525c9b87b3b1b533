"""Dedupe's data migrations on PostgreSQL: rows written by an older revision mean the same
after the upgrade."""

import pytest
from sqlalchemy import text

from services.common import migrations
from services.common.db import make_engine
from testkit.infra import migration_tree

pytestmark = [pytest.mark.postgres]


def test_0002_counts_records_of_notified_persons_as_covered_by_their_lineage(pg_database):
    url = pg_database(None)
    tree = migration_tree("dedupe")
    migrations.upgrade(tree, url, "0001")
    engine = make_engine(url)
    record = ("INSERT INTO record_state (incident_id, agency_id, source_record_id, record_version,"
              " message_id, sealed, data_categories, document_count, preferred_language, on_hold,"
              " withdrawn, person_id, updated_at) VALUES ('inc-1', 'gp', :srid, :v, 'm', 's', '[]',"
              " 0, 'en', false, :withdrawn, :person, now())")
    person = ("INSERT INTO person_state (incident_id, person_id, status, first_seen_at,"
              " changed_at, dirty, notice_person_id, notified_version, notified_agency_ids,"
              " notified_categories) VALUES ('inc-1', :person, :status, now(), now(), false,"
              " :lineage, :version, '[]', '[]')")
    with engine.begin() as conn:
        conn.execute(text(person), [
            {"person": "P-told", "status": "notified", "lineage": "P-first", "version": 2},
            {"person": "P-waiting", "status": "pending", "lineage": None, "version": 0}])
        conn.execute(text(record), [
            {"srid": "told", "v": 3, "withdrawn": False, "person": "P-told"},
            {"srid": "gone", "v": 1, "withdrawn": True, "person": None},
            {"srid": "waiting", "v": 1, "withdrawn": False, "person": "P-waiting"}])
    migrations.upgrade(tree, url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT source_record_id, told_lineage, told_version"
                                 " FROM record_state ORDER BY source_record_id")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("gone", None, 0), ("told", "P-first", 3),
                                        ("waiting", None, 0)]


def test_0008_review_rows_from_before_are_the_resolvers_pairs(pg_database):
    url = pg_database(None)
    tree = migration_tree("dedupe")
    migrations.upgrade(tree, url, "0007")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO review_state (review_id, incident_id, a_agency_id, a_source_record_id,"
            " b_agency_id, b_source_record_id, reason, evidence, status, applied, updated_at)"
            " VALUES ('rev-1', 'inc-1', 'gp', 'g', 'lab', 'l', 'uncertain', '{}', 'merge', true,"
            " now())"))
    migrations.upgrade(tree, url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT kind, status, chosen_agency_id FROM review_state")).one()
    engine.dispose()
    assert tuple(row) == ("pair", "merge", None)
