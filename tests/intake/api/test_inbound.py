"""Input before body (services/common/inbound.py): a request is authenticated and its size
checked before the app reads its body. The client's body is a generator, so the test sees how
much of it the server pulled."""

import pytest

from testkit.factories import affected_record, incident_body, ndjson

from .conftest import COORDINATOR, agency_headers

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

CHUNK = 64 * 1024


class Body:
    """A request body of `chunks` × 64 KiB; counts the chunks the server pulled."""

    def __init__(self, chunks: int, first: bytes = b""):
        self.chunks, self.first, self.pulled = chunks, first, 0

    async def __aiter__(self):
        for i in range(self.chunks):
            self.pulled += 1
            yield self.first if i == 0 and self.first else b" " * CHUNK


async def test_unauthenticated_json_body_is_refused_unread(intake):
    body = Body(320)  # 20 MB
    response = await intake.client.post("/v1/incidents", content=body,
                                        headers={"content-type": "application/json"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "auth.missing"
    assert body.pulled == 0
    wrong = Body(320)
    response = await intake.client.post("/v1/incidents", content=wrong, headers={
        "content-type": "application/json", "authorization": "Bearer nope"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "auth.invalid"
    assert wrong.pulled == 0


async def test_unauthenticated_feed_is_refused_unread(intake):
    setup = await intake.new_incident(1)
    body = Body(320)
    response = await intake.client.post(
        f"/v1/incidents/{setup.incident_id}/feeds", content=body,
        headers={"content-type": "application/x-ndjson", "authorization": "Bearer pk_00.nope"})
    assert response.status_code == 401 and body.pulled == 0


async def test_a_coordinator_body_over_the_default_limit_is_413(intake):
    limit = intake.settings.max_body_bytes
    declared = await intake.client.post(
        "/v1/incidents", content=b"{" + b" " * limit + b"}",
        headers={**COORDINATOR, "content-type": "application/json"})
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "request.too_large"
    streamed = Body(limit // CHUNK + 50, first=b'{"incident_id": "x", ')
    response = await intake.client.post("/v1/incidents", content=streamed,
                                        headers={**COORDINATOR, "content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request.too_large"
    assert streamed.pulled <= limit // CHUNK + 2  # reading stopped at the limit
    # Within the limit, the same route works (and the caller authenticated up front is used).
    ok = await intake.client.post("/v1/incidents", headers=COORDINATOR,
                                  json=incident_body("inc-inbound-ok", [("ag-inbound", "A")]))
    assert ok.status_code == 201, ok.text


async def test_a_streamed_feed_stops_being_read_at_its_limit(intake):
    setup = await intake.new_incident(1)
    key = next(iter(setup.keys.values()))
    limit = intake.settings.max_request_bytes
    body = Body(limit // CHUNK + 100, first=ndjson([affected_record("inb-1")]))
    response = await intake.client.post(f"/v1/incidents/{setup.incident_id}/feeds", content=body,
                                        headers=agency_headers(key))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "feed.too_large"
    assert body.pulled <= limit // CHUNK + 2
    assert intake.query("SELECT count(*) FROM feed WHERE incident_id = %s", setup.incident_id) == [(0,)]


async def test_a_bad_content_length_is_400(intake):
    response = await intake.client.post("/v1/incidents", content=b"{}", headers={
        **COORDINATOR, "content-type": "application/json", "content-length": "12abc"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "request.invalid"
