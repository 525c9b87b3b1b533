"""Each service's migrations build exactly the schema its models describe, on PostgreSQL and on
SQLite; they go down to nothing and up again; a model changed without a migration is caught;
start-up refuses a database that is not at the code's head; migrate runs take turns."""

import dataclasses
import shutil
import threading
import time
import tomllib
from collections.abc import Callable, Iterator

import psycopg
import pytest
import setuptools
from sqlalchemy import Column, Integer, inspect, text

from services.common import migrations
from services.common.db import make_engine
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from testkit import infra
from testkit.infra import REPO, SERVICES, migration_tree
from tests.conftest import running

pytestmark = pytest.mark.postgres


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database(request, pg_admin_url, tmp_path) -> Iterator[Callable[[], str]]:
    """A factory of empty databases of one kind (PostgreSQL on the shared server, or SQLite)."""
    created: list[str] = []

    def make() -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / f'db{len(created)}.sqlite'}"
        name, url = infra.create_database(pg_admin_url, "mig")
        created.append(name)
        return url

    make.dialect = request.param
    yield make
    for name in created:
        if request.param == "postgresql":
            infra.drop_database(pg_admin_url, name)


def schema(url: str, tables: frozenset[str]) -> dict:
    """What a database holds for these tables, as the dialect reports it: columns (by name: an
    added column lands last, where the models may put it anywhere), keys, indexes (with their
    predicates) and unique constraints."""
    engine = make_engine(url)
    try:
        found = inspect(engine)
        out: dict = {}
        for table in sorted(tables):
            out[table] = {
                "columns": sorted((c["name"], str(c["type"]), c["nullable"], c.get("default"))
                                  for c in found.get_columns(table)),
                "primary_key": found.get_pk_constraint(table),
                "foreign_keys": sorted(found.get_foreign_keys(table), key=repr),
                "indexes": sorted(({**i, "dialect_options": {k: str(v) for k, v in  # predicates
                                     i.get("dialect_options", {}).items()}}  # as SQL text
                                   for i in found.get_indexes(table)), key=lambda i: i["name"]),
                "unique": sorted(found.get_unique_constraints(table), key=repr),
            }
        return out
    finally:
        engine.dispose()


def tables_in(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
def test_upgrading_an_empty_database_gives_exactly_the_models_schema(service, empty_database):
    tree = migration_tree(service)
    migrated, created = empty_database(), empty_database()
    migrations.upgrade(tree, migrated)

    assert migrations.current(tree, migrated) == tree.heads()
    assert migrations.differences(tree, migrated) == []  # autogenerate finds nothing to do
    assert tables_in(migrated) == tree.table_names | {tree.version_table}
    # …and it is the very schema the models create (names of constraints and indexes included).
    engine = make_engine(created)
    tree.metadata().create_all(engine)
    engine.dispose()
    assert schema(migrated, tree.table_names) == schema(created, tree.table_names)


@pytest.mark.parametrize("service", SERVICES)
def test_downgrading_to_base_removes_everything_and_upgrading_again_restores_it(service,
                                                                                 empty_database):
    tree = migration_tree(service)
    url = empty_database()
    migrations.upgrade(tree, url)
    migrations.downgrade(tree, url, "base")
    assert migrations.current(tree, url) == ()
    assert tables_in(url) == {tree.version_table}  # Alembic's own (empty) bookkeeping only

    migrations.upgrade(tree, url)
    assert migrations.current(tree, url) == tree.heads()
    assert migrations.differences(tree, url) == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_model_change_without_a_migration_is_reported(service, pg_database):
    """The rule the agreement test guards, broken on purpose: models ahead of the migrations."""
    tree = migration_tree(service)
    url = pg_database(service)
    assert migrations.differences(tree, url) == []

    ahead = tree.metadata()
    table = ahead.tables[sorted(tree.table_names - {"outbox_message"})[0]]
    table.append_column(Column("added_without_a_migration", Integer, nullable=True))
    found = migrations.differences(tree, url, ahead)
    assert [(d[0], d[2], d[3].name) for d in found] == [
        ("add_column", table.name, "added_without_a_migration")]

    behind = tree.metadata()
    behind.remove(behind.tables["outbox_message"])
    assert [(d[0], d[1].name) for d in migrations.differences(tree, url, behind)] == [
        ("remove_table", "outbox_message")]


# The tables every service has (the outbox, the audit log, revoked staff tokens), defined once.
SHARED_TABLES = {m.__table__.name for m in migrations.SHARED_MODELS}


def test_each_tree_is_its_own(tmp_path):
    trees = [migration_tree(s) for s in SERVICES]
    assert [t.version_table for t in trees] == [f"alembic_version_{s}" for s in SERVICES]
    for tree in trees:
        assert len(tree.heads()) == 1, f"{tree.service}: several heads (merge the branches)"
        assert tree.directory == REPO / "services" / tree.service / "migrations"
        others = set().union(*(t.table_names for t in trees if t is not tree)) - SHARED_TABLES
        assert not tree.table_names & others
    # A tree sees only its own tables: in a database holding intake's, dedupe's comparison
    # misses its own tables and never proposes to drop intake's.
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    migrations.upgrade(migration_tree("intake"), url)
    dedupe = migration_tree("dedupe")
    found = migrations.differences(dedupe, url)
    assert {d[1].name for d in found if d[0] == "add_table"} == dedupe.table_names - SHARED_TABLES
    assert {d[0] for d in found} == {"add_table", "add_index"}  # nothing removed


def test_the_migration_files_ship_with_the_package():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = setuptools.find_packages(str(REPO), include=config["packages"]["find"]["include"])
    data = config["package-data"]["*"]
    for service in SERVICES:
        assert f"services.{service}.migrations" in packages
        assert f"services.{service}.migrations.versions" in packages
    assert "*.mako" in data
    assert not any(p.startswith(("tests", "testkit", "benchmarks")) for p in packages)


async def test_start_up_refuses_a_database_that_is_not_migrated(service_env, pg_database):
    app = create_dispatch(DispatchSettings(**service_env, database_url=pg_database(None)))
    with pytest.raises(migrations.SchemaNotCurrent) as refused:
        async with running(app):
            pass
    assert "no schema yet" in str(refused.value)
    assert "Run `python -m services.dispatch migrate` first" in str(refused.value)


async def test_start_up_refuses_a_database_migrated_by_newer_code(service_env, pg_database):
    url = pg_database("dispatch")
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE alembic_version_dispatch SET version_num = '9999'")
    app = create_dispatch(DispatchSettings(**service_env, database_url=url))
    with pytest.raises(migrations.SchemaNotCurrent, match="revision 9999, which this code does not"):
        async with running(app):
            pass


def test_concurrent_migrate_runs_take_turns_on_postgresql(pg_database):
    """While another run holds the tree's advisory lock, migrate waits; then finds its work."""
    tree = migration_tree("intake")
    url = pg_database(None)
    outcome: list[object] = []
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (tree.lock_id,))
        runner = threading.Thread(target=lambda: outcome.append(migrations.upgrade(tree, url)))
        runner.start()
        time.sleep(1.0)
        assert runner.is_alive() and migrations.current(tree, url) == (), "migrate did not wait"
        holder.execute("SELECT pg_advisory_unlock(%s)", (tree.lock_id,))
        runner.join(30)
    assert outcome == [None]
    assert migrations.current(tree, url) == tree.heads()
    migrations.upgrade(tree, url)  # a second run finds nothing to do
    assert migrations.current(tree, url) == tree.heads()


def test_a_database_made_before_migrations_is_refused_with_the_way_out(tmp_path):
    tree = migration_tree("dedupe")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    # What start-up's create_all made before migrations: revision 0001's schema, no history.
    migrations.upgrade(tree, url, "0001")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {tree.version_table}"))
    engine.dispose()
    with pytest.raises(migrations.SchemaNotCurrent, match=r"migrate --stamp 0001"):
        migrations.upgrade(tree, url)

    migrations.stamp(tree, url, "0001")
    migrations.upgrade(tree, url)  # and on to the head from there
    migrations.check_current(url, tree)
    assert migrations.differences(tree, url) == []


def test_stamping_the_head_is_refused_when_the_schema_differs(tmp_path):
    tree = migration_tree("intake")
    url = f"sqlite:///{tmp_path / 'partial.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        tree.metadata().tables["agency"].create(conn)
    engine.dispose()
    with pytest.raises(migrations.SchemaNotCurrent, match="does not match the models"):
        migrations.stamp(tree, url, "head")
    assert migrations.current(tree, url) == ()


def test_a_new_revision_follows_the_head_and_runs(tmp_path):
    """`python -m services.<name> revision -m …` on a copy of the tree (never the real one)."""
    real = migration_tree("dispatch")
    copy = tmp_path / "migrations"
    shutil.copytree(real.directory, copy, ignore=shutil.ignore_patterns("__pycache__"))
    tree = dataclasses.replace(real, directory=copy)

    [head] = real.heads()
    following = f"{int(head) + 1:04d}"  # whatever the tree's head is today
    path = migrations.new_revision(tree, "add nothing yet")
    assert path.parent == copy / "versions" and path.name == f"{following}_add_nothing_yet.py"
    source = path.read_text()
    assert f"down_revision: str | None = '{head}'" in source
    assert "import sqlmodel" not in source  # migrations name plain SQLAlchemy types only
    assert tree.heads() == (following,)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrations.upgrade(tree, url)
    assert migrations.current(tree, url) == (following,)
    assert not (real.directory / "versions" / path.name).exists()


def test_the_three_trees_share_one_revision_template():
    templates = {(REPO / "services" / s / "migrations" / "script.py.mako").read_text() for s in SERVICES}
    assert len(templates) == 1
