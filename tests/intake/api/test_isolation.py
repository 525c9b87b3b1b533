"""An agency sees and changes only its own feeds, only for incidents it is enrolled in:
wrong or missing key → 401; an incident it is not enrolled in answers exactly like one that does
not exist, another agency's feed exactly like no feed (404, no existence oracle)."""

import pytest

from testkit.factories import affected_record, ndjson

from .conftest import agency_headers

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture
async def two_agencies(intake):  # noqa: ANN001, ANN201
    setup = await intake.new_incident(2)
    (a, key_a), (b, key_b) = setup.keys.items()
    feed = (await intake.post_feed(setup.incident_id, key_a,
                                   ndjson([affected_record("iso-1"), {"source_record_id": "iso-bad"}])))
    assert feed.status_code == 202
    return setup.incident_id, key_a, key_b, feed.json()["feed_id"]


@pytest.mark.parametrize("authorization", [None, "Bearer pk_0000000000000000.nope", "Bearer nonsense",
                                           "Bearer test-coordinator-token", "Token abc"])
async def test_missing_or_wrong_key_is_401_everywhere(intake, two_agencies, authorization):
    incident_id, _, _, feed_id = two_agencies
    headers = {"content-type": "application/x-ndjson"}
    if authorization:
        headers["authorization"] = authorization
    base = f"/v1/incidents/{incident_id}"
    responses = [
        await intake.client.post(f"{base}/feeds", content=ndjson([affected_record("x")]), headers=headers),
        await intake.client.get(f"{base}/feeds/{feed_id}", headers=headers),
        await intake.client.get(f"{base}/feeds/{feed_id}/problems", headers=headers),
        await intake.client.post(f"{base}/completion", headers=headers),
        await intake.client.delete(f"{base}/records/iso-1", headers=headers),
    ]
    for response in responses:
        assert response.status_code == 401, (response.request.url, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] in {"auth.missing", "auth.invalid"}
    # Nothing was stored by the rejected POST.
    assert intake.query("SELECT count(*) FROM affected_record WHERE incident_id = %s",
                        incident_id) == [(1,)]


async def test_another_agencys_feed_and_records_are_404(intake, two_agencies):
    incident_id, key_a, key_b, feed_id = two_agencies
    other = agency_headers(key_b, None)
    base = f"/v1/incidents/{incident_id}"
    for url in (f"{base}/feeds/{feed_id}", f"{base}/feeds/{feed_id}/problems"):
        response = await intake.client.get(url, headers=other)
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "feed.not_found"
    withdraw = await intake.client.delete(f"{base}/records/iso-1", headers=other)
    assert withdraw.status_code == 404
    assert withdraw.json()["error"]["code"] == "record.not_found"
    # ...and the owner still has it, not withdrawn.
    mine = agency_headers(key_a, None)
    assert (await intake.client.get(f"{base}/feeds/{feed_id}", headers=mine)).status_code == 200
    assert intake.query("SELECT withdrawn_at FROM affected_record WHERE incident_id = %s",
                        incident_id) == [(None,)]
    # The other agency's completion counts only its own (zero) records.
    done = await intake.client.post(f"{base}/completion", headers=other)
    assert done.json()["record_count"] == 0


def _answer(response) -> tuple:  # noqa: ANN001
    """Everything a caller can see of a response except the Date."""
    headers = sorted((k, v) for k, v in response.headers.items() if k not in ("date",))
    return response.status_code, response.content, headers


async def test_not_enrolled_answers_exactly_like_no_such_incident(intake, two_agencies):
    incident_id, key_a, _, feed_id = two_agencies
    elsewhere = await intake.new_incident(1)
    _, key_c = next(iter(elsewhere.keys.items()))
    headers = agency_headers(key_c, None)

    async def calls(incident: str) -> list:
        base = f"/v1/incidents/{incident}"
        return [
            await intake.post_feed(incident, key_c, ndjson([affected_record("x")])),
            await intake.client.get(f"{base}/feeds/{feed_id}", headers=headers),
            await intake.client.get(f"{base}/feeds/{feed_id}/problems", headers=headers),
            await intake.client.post(f"{base}/completion", headers=headers),
            await intake.client.delete(f"{base}/records/iso-1", headers=headers),
        ]

    existing, missing = await calls(incident_id), await calls("no-such-incident")
    for response, reference in zip(existing, missing, strict=True):
        assert response.status_code == 404, (response.request.url, response.text)
        assert response.json()["error"]["code"] == "incident.not_found"
        assert _answer(response) == _answer(reference)

    # A feed id from another incident, even one the agency is enrolled in, is not found, and
    # answers like a feed id that never existed.
    other_incident = await intake.client.get(f"/v1/incidents/{elsewhere.incident_id}/feeds/{feed_id}",
                                             headers=agency_headers(key_c, None))
    no_feed = await intake.client.get(f"/v1/incidents/{elsewhere.incident_id}/feeds/feed-nope",
                                      headers=agency_headers(key_c, None))
    assert other_incident.status_code == 404
    assert _answer(other_incident) == _answer(no_feed)
