"""Limits with clear answers: 413 for bytes and records, 415 for unknown formats, 429 with
Retry-After for the per-agency rate. Rejected requests store nothing."""

import json

import pytest

from services.intake.app import create_app
from testkit.factories import affected_record, ndjson
from tests.conftest import running

from .conftest import agency_headers, intake_settings, start_intake

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture(scope="module")
async def small(pg_admin_url, kafka_bootstrap, data_keys):  # noqa: ANN001, ANN201
    async for intake in start_intake(pg_admin_url, kafka_bootstrap, data_keys,
                                     max_request_bytes=4096, max_records_per_request=10,
                                     store_chunk_records=3, agency_requests_per_minute=600):
        yield intake


def _stored(intake, incident_id: str) -> int:  # noqa: ANN001
    return intake.query("SELECT count(*) FROM affected_record WHERE incident_id = %s", incident_id)[0][0]


async def test_request_bytes_over_the_limit_is_413(small):
    setup = await small.new_incident(1)
    key = next(iter(setup.keys.values()))
    big = ndjson([affected_record(f"b-{i}") for i in range(9)])
    assert len(big) > 4096 // 2
    big = big + b" " * 4096
    response = await small.post_feed(setup.incident_id, key, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "feed.too_large"

    async def chunked():  # no Content-Length: the limit is enforced while streaming
        for _ in range(10):
            yield b" " * 1000

    streamed = await small.client.post(
        f"/v1/incidents/{setup.incident_id}/feeds", content=chunked(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/x-ndjson"})
    assert streamed.status_code == 413
    assert _stored(small, setup.incident_id) == 0


async def test_too_many_records_is_413_and_stores_nothing(small):
    setup = await small.new_incident(1)
    key = next(iter(setup.keys.values()))
    # Compact records so the bytes limit is not the one hit; 11 > 10, across several chunks.
    records = [{"source_record_id": f"m{i}", "given_names": "A", "nhi": "ZZZ0016"} for i in range(11)]
    body = ndjson(records)
    assert len(body) < 4096
    response = await small.post_feed(setup.incident_id, key, body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "feed.too_many_records"
    assert _stored(small, setup.incident_id) == 0
    assert small.query("SELECT count(*) FROM feed WHERE incident_id = %s", setup.incident_id) == [(0,)]
    ok = await small.post_feed(setup.incident_id, key, ndjson(records[:10]))
    assert ok.status_code == 202 and ok.json()["accepted"] == 10


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/xml", "multipart/form-data"])
async def test_unsupported_content_type_is_415(small, content_type):
    setup = await small.new_incident(1)
    key = next(iter(setup.keys.values()))
    headers = {"authorization": f"Bearer {key}"}
    if content_type:
        headers["content-type"] = content_type
    response = await small.client.post(f"/v1/incidents/{setup.incident_id}/feeds",
                                       content=json.dumps([affected_record("x")]), headers=headers)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "feed.unsupported_format"


async def test_per_agency_rate_limit_is_429_with_retry_after(pg_admin_url, kafka_bootstrap, data_keys):
    async for intake in start_intake(pg_admin_url, kafka_bootstrap, data_keys,
                                     agency_requests_per_minute=12):  # burst of 3
        setup = await intake.new_incident(2)
        (_, key_a), (_, key_b) = setup.keys.items()
        body = ndjson([affected_record("rl-1")])
        statuses = [(await intake.post_feed(setup.incident_id, key_a, body)).status_code for _ in range(3)]
        assert statuses == [202, 202, 202]
        limited = await intake.post_feed(setup.incident_id, key_a, body)
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate.limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 5
        # The limit is per agency: another agency is unaffected.
        assert (await intake.post_feed(setup.incident_id, key_b, body)).status_code == 202


async def test_the_per_agency_rate_limit_holds_across_two_replicas(pg_admin_url, kafka_bootstrap,
                                                                    data_keys):
    """Two intake replicas on one database (deploy/k8s runs 2 to 8): the agency's bucket is
    shared (services/common/shared_buckets.py). Per replica, each let the burst through."""
    async for one in start_intake(pg_admin_url, kafka_bootstrap, data_keys,
                                  agency_requests_per_minute=4):  # burst of 1, a token per 15 s
        two = create_app(intake_settings(one.database_url, kafka_bootstrap,
                                         one.settings.topic_prefix, data_keys,
                                         agency_requests_per_minute=4))
        async with running(two) as second:
            setup = await one.new_incident(2)
            (agency_a, key_a), (_, key_b) = setup.keys.items()
            body = ndjson([affected_record("rl-2")])
            url = f"/v1/incidents/{setup.incident_id}/feeds"
            statuses = [(await client.post(url, content=body,
                                           headers=agency_headers(key_a))).status_code
                        for client in (one.client, second)]
            assert statuses == [202, 429]
            # Still per agency, and keyed by its id (no personal data in the key).
            assert (await second.post(url, content=body,
                                      headers=agency_headers(key_b))).status_code == 202
            keys = one.query("SELECT key FROM rate_bucket WHERE limit_name = 'intake.agency'")
            assert {k for (k,) in keys} == set(setup.keys)
