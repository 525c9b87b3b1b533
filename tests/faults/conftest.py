"""The fault suite's fixtures: the whole system as processes (testkit/system.py) on the shared
Kafka and PostgreSQL, or on a test's private broker / server for the scenarios that stop them."""

from collections.abc import AsyncIterator, Callable

import pytest

from testkit.driver import IncidentDriver
from testkit.groundtruth import GroundTruth
from testkit.private_infra import PrivateKafka, PrivatePostgres
from testkit.reconcile import Reconciliation, reconcile
from testkit.system import COORDINATOR_TOKEN, System, drop_templates


@pytest.fixture(scope="session", autouse=True)
def drop_fault_templates():  # noqa: ANN201
    """The migrated template databases the fault suite makes once per run go at its end."""
    yield
    drop_templates()


@pytest.fixture
async def private_kafka(tmp_path) -> AsyncIterator[PrivateKafka]:  # noqa: ANN001
    broker = PrivateKafka(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def private_postgres() -> PrivatePostgres:
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def make_system(tmp_path, kafka_bootstrap, pg_admin_url) -> AsyncIterator[Callable]:  # noqa: ANN001
    """`await make_system(kafka=..., pg=..., env={service: {...}}, sms_gateways=n)` starts the
    system (shared infra unless a private bootstrap / admin URL is given)."""
    systems: list[System] = []

    async def make(kafka: str | None = None, pg: str | None = None, start: bool = True,
                   **kwargs) -> System:
        system = System(tmp_path / f"system-{len(systems)}", kafka_bootstrap=kafka or kafka_bootstrap,
                        pg_admin_url=pg or pg_admin_url, **kwargs)
        systems.append(system)
        if start:
            await system.start()
        return system

    yield make
    for system in systems:
        await system.close()


@pytest.fixture(scope="module")
async def shared_system(tmp_path_factory, kafka_bootstrap, pg_admin_url) -> AsyncIterator[System]:  # noqa: ANN001
    """One system for every scenario of a module that injects nothing into the processes, the
    broker or the database — only messages and feeds of its own incidents (each scenario's
    truth has its own `incident_prefix`). Starting a system is most of such a scenario's time
    on a loaded box (six Python processes importing the services)."""
    system = System(tmp_path_factory.mktemp("shared-system"), kafka_bootstrap=kafka_bootstrap,
                    pg_admin_url=pg_admin_url)
    try:
        await system.start()
        yield system
    finally:
        await system.close()


def driver_for(system: System, truth: GroundTruth, **kwargs) -> IncidentDriver:
    """A driver that uploads to every running intake process."""
    def urls() -> list[str]:
        live = [p.url for p in system.services.values() if p.service == "intake" and p.alive]
        return live or [p.url for p in system.services.values() if p.service == "intake"]
    return IncidentDriver(truth, urls, COORDINATOR_TOKEN, **kwargs)


async def settle_and_reconcile(system: System, truth: GroundTruth, timeout: float = 120.0,
                               ) -> Reconciliation:
    """Wait until nothing is left to do, then reconcile against the truth. Past `timeout`, a
    system still making progress (its state changed in the last minute) waits on, up to three
    times `timeout`: at load 40 dispatch sent ~2 emails/s and a 300-person scenario was still
    sending at 45 s — a slow box, not a fault. Copies that multiply still fail the
    reconciliation; they only fail it later."""
    quiet = await system.wait_quiescent(timeout=timeout, progress_s=60.0, max_s=3 * timeout)
    result = reconcile(truth, await system.observe(truth.incidents))
    print(f"quiescent={quiet.quiet} after {quiet.waited_s:.1f}s; last state {quiet.last}")
    print("deliveries:", system.query(
        "dispatch", "SELECT channel, status, reason_code, provider, count(*) FROM delivery "
                    "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"))
    print(result.table())
    return result


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A scenario runs a whole system and waits for it to settle: on a loaded 2-core machine
    that outlasts the suite's default 300 s timeout. Their own waits bound each phase."""
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.path).startswith(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(900))
