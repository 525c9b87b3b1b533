"""schemathesis with every check against the three live services (uvicorn, real PostgreSQL and
Kafka), once per kind of credential: the configured coordinator, a token for each staff role,
and an agency's key. Every check, not only server errors: status codes documented, responses
matching their schemas and content types, schema-valid requests accepted and invalid ones
refused (so every rule the code enforces is in the schema, with strict types), auth not ignored.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from services.common.principals import ROLES
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit import infra
from testkit.factories import incident_body
from testkit.infra import free_port
from testkit.serving import serve_in_thread
from testkit.staff import SIGNING_KEY, token
from tests.conftest import COORDINATOR_TOKEN

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
schemathesis.serializer.alias("text/csv", "text/plain")

_KEYS = "k:" + "A" * 43 + "="
FACTORIES = {"intake": (create_intake, IntakeSettings), "dedupe": (create_dedupe, DedupeSettings),
             "dispatch": (create_dispatch, DispatchSettings)}
CREDENTIALS = ["configured", *(f"role:{r}" for r in ROLES), "agency"]


def schema_of(service: str):  # noqa: ANN201
    make, settings_class = FACTORIES[service]
    return schemathesis.openapi.from_dict(make(settings_class(data_keys=_KEYS)).openapi()) \
        .include(path_regex="^/v1/")


@pytest.fixture(scope="module")
def live(pg_admin_url, kafka_bootstrap, data_keys):  # noqa: ANN001, ANN201
    import asyncio

    prefix = f"test-{uuid.uuid4().hex[:10]}."
    databases = {s: infra.create_database(pg_admin_url, service=s) for s in FACTORIES}
    urls = {}
    try:
        with _all_served(databases, kafka_bootstrap, prefix, data_keys, urls):
            incident_id = f"inc-{uuid.uuid4().hex[:8]}"
            made = httpx.post(f"{urls['intake']}/v1/incidents",
                              json=incident_body(incident_id, [("ag-fz-1", "Fuzz Agency")]),
                              headers={"authorization": f"Bearer {COORDINATOR_TOKEN}"}, timeout=30)
            assert made.status_code == 201, made.text
            credentials = {"configured": COORDINATOR_TOKEN,
                           **{f"role:{r}": token([r], ttl_s=3600)[0] for r in ROLES},
                           "agency": made.json()["issued_keys"][0]["api_key"]}
            yield urls, credentials, incident_id
    finally:
        asyncio.run(infra.delete_topics_with_prefix(kafka_bootstrap, prefix))
        for name, _ in databases.values():
            infra.drop_database(pg_admin_url, name)


@contextmanager
def _all_served(databases, kafka_bootstrap, prefix, data_keys, urls) -> Iterator[None]:  # noqa: ANN001
    common = {"kafka_bootstrap_servers": kafka_bootstrap, "topic_prefix": prefix,
              "data_keys": data_keys, "coordinator_tokens": COORDINATOR_TOKEN,
              "token_signing_key": SIGNING_KEY, "outbox_poll_interval_s": 0.05}
    ports = {s: free_port() for s in FACTORIES}
    # Intake's console routes (the pass-through, the combined report) reach the dedupe and
    # dispatch served here, so they are fuzzed through to real services, not to nothing.
    extra = {"intake": {"agency_requests_per_minute": 1_000_000, "max_request_bytes": 256 * 1024,
                        "dedupe_url": f"http://127.0.0.1:{ports['dedupe']}",
                        "dispatch_url": f"http://127.0.0.1:{ports['dispatch']}"},
             "dedupe": {}, "dispatch": {"receipt_callback_base_url": "",
                          # The public check's limits, raised as intake's agency limit is: the
                          # fuzzer is one client sending thousands (429 is tested in
                          # tests/dispatch/test_genuine.py).
                          "check_requests_per_minute": 1_000_000, "check_burst": 100_000,
                          "check_global_per_s": 1_000_000, "check_global_burst": 100_000}}
    with _serve_one("intake", databases, common, extra, urls, ports), \
            _serve_one("dedupe", databases, common, extra, urls, ports), \
            _serve_one("dispatch", databases, common, extra, urls, ports):
        yield


@contextmanager
def _serve_one(service, databases, common, extra, urls, ports) -> Iterator[None]:  # noqa: ANN001
    make, settings_class = FACTORIES[service]
    port = ports[service]
    app = make(settings_class(**common, **extra[service], database_url=databases[service][1], port=port))
    with serve_in_thread(app, port, name=f"{service}-under-fuzz"):
        urls[service] = f"http://127.0.0.1:{port}"
        yield


def _fuzz(service: str, case, live, credential: str) -> None:  # noqa: ANN001
    urls, credentials, _ = live
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {credentials[credential]}"}
    case.call_and_validate(base_url=urls[service], timeout=30)


# Every example for the two kinds of principal (the configured coordinator, an agency's key);
# fewer for each staff role's token: its requests take the same code paths as the coordinator's
# but for the role check, which tests/security/test_authorisation_matrix.py covers route by
# route. (All six at 25 examples were ~40 % of CI's whole suite.)
PRINCIPALS = ["configured", "agency"]
ROLE_TOKENS = [c for c in CREDENTIALS if c not in PRINCIPALS]
FULL = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
LIGHT = settings(FULL, max_examples=5)


@pytest.mark.parametrize("credential", PRINCIPALS)
@schema_of("intake").parametrize()
@FULL
def test_intake_every_check(case, live, credential):  # noqa: ANN001
    _fuzz("intake", case, live, credential)


@pytest.mark.parametrize("credential", ROLE_TOKENS)
@schema_of("intake").parametrize()
@LIGHT
def test_intake_every_check_per_role(case, live, credential):  # noqa: ANN001
    _fuzz("intake", case, live, credential)


@pytest.mark.parametrize("credential", PRINCIPALS)
@schema_of("dedupe").parametrize()
@FULL
def test_dedupe_every_check(case, live, credential):  # noqa: ANN001
    _fuzz("dedupe", case, live, credential)


@pytest.mark.parametrize("credential", ROLE_TOKENS)
@schema_of("dedupe").parametrize()
@LIGHT
def test_dedupe_every_check_per_role(case, live, credential):  # noqa: ANN001
    _fuzz("dedupe", case, live, credential)


@pytest.mark.parametrize("credential", PRINCIPALS)
@schema_of("dispatch").parametrize()
@FULL
def test_dispatch_every_check(case, live, credential):  # noqa: ANN001
    _fuzz("dispatch", case, live, credential)


@pytest.mark.parametrize("credential", ROLE_TOKENS)
@schema_of("dispatch").parametrize()
@LIGHT
def test_dispatch_every_check_per_role(case, live, credential):  # noqa: ANN001
    _fuzz("dispatch", case, live, credential)
