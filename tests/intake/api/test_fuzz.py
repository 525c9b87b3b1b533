"""Fuzzing intake's HTTP API, which must answer every input with 2xx or 4xx — never 5xx.

1. Schema-driven: schemathesis generates requests from intake's own OpenAPI document and
   sends them to a real intake (real PostgreSQL and Kafka) with valid credentials, so the
   requests get past authentication into the handlers (aimed at an existing incident and
   feed, so only the server-error check applies: every check, per credential, against all
   three services is tests/security/test_fuzz_all_checks.py).
2. Feed bodies: hypothesis posts random bytes and random JSON lines to the feeds endpoint.
"""

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from tests.conftest import COORDINATOR_TOKEN

from .server import serve_intake

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

# Feed bodies are text on the wire; send schemathesis' generated strings as they are.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
schemathesis.serializer.alias("text/csv", "text/plain")

schema = schemathesis.openapi.from_dict(
    create_app(IntakeSettings(data_keys="k:" + "A" * 43 + "=")).openapi()
).include(path_regex="^/v1/")


@pytest.fixture(scope="module")
def served(pg_admin_url, kafka_bootstrap, data_keys):  # noqa: ANN001, ANN201
    with serve_intake(pg_admin_url, kafka_bootstrap, data_keys,
                      agency_requests_per_minute=1_000_000, max_request_bytes=256 * 1024) as intake:
        incident_id, keys = intake.new_incident(1)
        agency_id, key = next(iter(keys.items()))
        feed = httpx.post(f"{intake.url}/v1/incidents/{incident_id}/feeds",
                          content=b'{"source_record_id": "f-1", "given_names": "A", "nhi": "ZZZ0016"}\n'
                                  b'{"source_record_id": "f-2"}\n',
                          headers={"authorization": f"Bearer {key}",
                                   "content-type": "application/x-ndjson"})
        assert feed.status_code == 202
        yield intake, incident_id, agency_id, key, feed.json()["feed_id"]


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_openapi_operations_never_answer_5xx(case, served):  # noqa: ANN001
    intake, incident_id, agency_id, key, feed_id = served
    coordinator = "coordinator" in (case.operation.definition.raw.get("tags") or [])
    token = COORDINATOR_TOKEN if coordinator else key
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    params = case.path_parameters or {}
    # Aim most agency requests at the incident and feed that exist, so handlers run deep.
    if not coordinator and "incident_id" in params:
        params["incident_id"] = incident_id
        if "feed_id" in params:
            params["feed_id"] = feed_id
    if coordinator and "agency_id" in params and case.operation.method.upper() == "DELETE":
        params["agency_id"] = agency_id
    case.call_and_validate(base_url=intake.url, checks=[not_a_server_error], timeout=30)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=20), inner, max_size=4), max_leaves=12)
record_like = st.fixed_dictionaries(
    {}, optional={k: json_values | st.text(max_size=30) for k in (
        "source_record_id", "nhi", "given_names", "family_name", "date_of_birth", "email", "mobile",
        "address", "data_categories", "document_count", "preferred_language", "hold")})


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=2000),
       content_type=st.sampled_from(["application/x-ndjson", "text/csv", "application/json"]))
def test_random_bytes_to_feeds_never_5xx(served, body, content_type):  # noqa: ANN001
    intake, incident_id, _, key, _ = served
    response = httpx.post(f"{intake.url}/v1/incidents/{incident_id}/feeds", content=body,
                          headers={"authorization": f"Bearer {key}", "content-type": content_type},
                          timeout=30)
    assert response.status_code < 500, response.text
    assert response.status_code in (202, 413, 422), response.text


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(lines=st.lists(record_like | json_values, max_size=20))
def test_random_json_lines_to_feeds_never_5xx(served, lines):  # noqa: ANN001
    intake, incident_id, _, key, _ = served
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    response = httpx.post(f"{intake.url}/v1/incidents/{incident_id}/feeds", content=body,
                          headers={"authorization": f"Bearer {key}", "content-type": "application/x-ndjson"},
                          timeout=30)
    assert response.status_code == 202, response.text
    receipt = response.json()
    assert receipt["received"] == len(lines)
    assert receipt["accepted"] + receipt["unchanged"] + receipt["rejected"] == receipt["received"]
