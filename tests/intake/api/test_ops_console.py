"""Intake as the front door for ops and the coordinator console, on real PostgreSQL and Kafka:
the lag monitor mounted (GET /v1/ops/lag, kafka_consumergroup_lag* on /metrics), the incident
list, the console's static page and its pass-through's refusals, the access log and the
metrics a chart needs. (The pass-through reaching the real dedupe and dispatch is exercised by
tests/console/test_browser.py, against the whole system.)"""

import logging
import re

import pytest

from services.common.lag import system_groups
from services.common.logging import JsonFormatter
from testkit.factories import affected_record, ndjson

from .conftest import COORDINATOR

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _samples(text: str, name: str) -> dict[str, float]:
    """{label string: value} of one metric in an exposition text."""
    return {m.group(1) or "": float(m.group(2))
            for m in re.finditer(rf"^{re.escape(name)}(\{{.*\}})? ([0-9.e+-]+)$", text, re.M)}


async def test_ops_lag_reports_every_system_group_from_intake(intake):
    prefix = intake.settings.topic_prefix
    assert (await intake.client.get("/v1/ops/lag")).status_code == 401
    response = await intake.client.get("/v1/ops/lag", headers=COORDINATOR)
    assert response.status_code == 200, response.text
    body = response.json()
    groups = {g["group"]: g for g in body["groups"]}
    assert set(system_groups(prefix)) <= set(groups)
    # Nothing consumes in this test: every expected group is unknown to the broker.
    assert {groups[g]["status"] for g in system_groups(prefix)} == {"ERR"}
    assert body["cluster"] == prefix.rstrip(".")


async def test_metrics_carry_lag_gauges_under_kafka_exporter_names(intake):
    prefix = intake.settings.topic_prefix
    setup = await intake.new_incident(1)
    key = next(iter(setup.keys.values()))
    posted = await intake.post_feed(setup.incident_id, key, ndjson([affected_record("lag-1")]))
    assert posted.status_code == 202, posted.text
    await intake.drained()
    await intake.app.state.runtime.lag.refresh()  # what the background loop does every interval
    text = (await intake.client.get("/metrics")).text
    lag_sum = _samples(text, "kafka_consumergroup_lag_sum")
    dedupe_records = next(labels for labels in lag_sum
                          if f'consumergroup="{prefix}dedupe' in labels and "affected-records" in labels)
    # At least this test's record waits for dedupe (the module shares the topic with others).
    assert lag_sum[dedupe_records] >= 1
    assert _samples(text, "kafka_consumergroup_lag")
    assert _samples(text, "panui_consumergroup_status")


async def test_incidents_are_listed_newest_first_with_completion(intake):
    first = await intake.new_incident(2)
    second = await intake.new_incident(1)
    key = next(iter(second.keys.values()))
    done = await intake.client.post(f"/v1/incidents/{second.incident_id}/completion",
                                    headers={"authorization": f"Bearer {key}"})
    assert done.status_code == 200, done.text
    listed = await intake.client.get("/v1/incidents", headers=COORDINATOR)
    assert listed.status_code == 200, listed.text
    by_id = {i["incident_id"]: i for i in listed.json()}
    assert (by_id[first.incident_id]["agencies"], by_id[first.incident_id]["agencies_complete"]) == (2, 0)
    assert (by_id[second.incident_id]["agencies"], by_id[second.incident_id]["agencies_complete"]) == (1, 1)
    ids = [i["incident_id"] for i in listed.json()]
    assert ids.index(second.incident_id) < ids.index(first.incident_id)
    assert len((await intake.client.get("/v1/incidents?limit=1", headers=COORDINATOR)).json()) == 1
    assert (await intake.client.get("/v1/incidents?limit=0", headers=COORDINATOR)).status_code == 422
    agency = await intake.client.get("/v1/incidents", headers={"authorization": f"Bearer {key}"})
    assert agency.status_code == 401


async def test_console_page_is_served_whole_and_offline(intake):
    page = await intake.client.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert set(assets) == {"console.css", "charts.js", "content.js", "preview.js", "report.js",
                           "callcentre.js", "retractions.js", "reconciliation.js", "console.js"}
    for asset in assets:
        served = await intake.client.get(f"/console/{asset}")
        assert served.status_code == 200, asset
        # Nothing from elsewhere: no absolute URL, no protocol-relative one (a CDN).
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import", served.text), asset


async def test_console_pass_through_refuses_before_forwarding(intake):
    setup = await intake.new_incident(1)
    key = next(iter(setup.keys.values()))
    path = f"/v1/console/dedupe/v1/incidents/{setup.incident_id}/progress"
    assert (await intake.client.get(path)).status_code == 401
    assert (await intake.client.get(path, headers={"authorization": f"Bearer {key}"})).status_code == 401
    other = await intake.client.get("/v1/console/intake/v1/incidents", headers=COORDINATOR)
    assert other.status_code == 422  # only dedupe or dispatch
    outside = await intake.client.get("/v1/console/dedupe/metrics", headers=COORDINATOR)
    assert outside.status_code == 404 and outside.json()["error"]["code"] == "console.path_unknown"
    climbing = await intake.client.get("/v1/console/dedupe/v1/../metrics", headers=COORDINATOR)
    assert climbing.status_code == 404
    # This test runs no dedupe: the pass-through says so, as a 502 with the project's body.
    upstream = intake.app.state.runtime.upstreams["dedupe"]
    configured, upstream.base_url = upstream.base_url, "http://127.0.0.1:9"
    try:
        down = await intake.client.get(path, headers=COORDINATOR)
        # The query string is the upstream's to check (the review queue asks ?status=open):
        # forwarded, not refused by intake's strict-parameter guard.
        queried = await intake.client.get(
            f"/v1/console/dedupe/v1/incidents/{setup.incident_id}/reviews?status=open",
            headers=COORDINATOR)
    finally:
        upstream.base_url = configured
    assert down.status_code == 502 and down.json()["error"]["code"] == "console.upstream_unavailable"
    assert queried.status_code == 502, queried.text


async def test_the_combined_report_needs_the_incident_and_says_which_service_is_down(intake):
    """The whole report (intake's part with dedupe's and dispatch's) for the console: an unknown
    incident is intake's 404 before anything is asked; a service that does not answer is a 502
    with the project's body, in every format. (Its numbers and the PDF's: tests/console.)"""
    missing = await intake.client.get("/v1/incidents/inc-nobody/commissioner-report.pdf",
                                      headers=COORDINATOR)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "incident.not_found"
    setup = await intake.new_incident(1)
    upstreams = intake.app.state.runtime.upstreams
    configured = {name: client.base_url for name, client in upstreams.items()}
    for client in upstreams.values():
        client.base_url = "http://127.0.0.1:9"
    try:
        answers = [await intake.client.get(f"/v1/incidents/{setup.incident_id}/commissioner-report{ext}",
                                           headers=COORDINATOR) for ext in ("", ".csv", ".pdf")]
    finally:
        for name, url in configured.items():
            upstreams[name].base_url = url
    for answer in answers:
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"]["code"] == "console.upstream_unavailable"


async def test_access_log_has_request_id_and_route_template_only(intake, caplog):
    setup = await intake.new_incident(1)
    caplog.set_level(logging.INFO, logger="panui.access")
    response = await intake.client.get(f"/v1/incidents/{setup.incident_id}",
                                       headers={**COORDINATOR, "x-request-id": "req-12345678"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-12345678"
    (entry,) = [r for r in caplog.records if r.name == "panui.access" and r.request_id == "req-12345678"]
    assert (entry.route, entry.method, entry.status) == ("/v1/incidents/{incident_id}", "GET", 200)
    assert entry.duration_ms >= 0
    logged = JsonFormatter().format(entry)
    assert '"request_id": "req-12345678"' in logged and '"route": "/v1/incidents/{incident_id}"' in logged
    for leaked in (setup.incident_id,):
        assert leaked not in logged and leaked not in entry.getMessage()
    listed = await intake.client.get("/v1/incidents?limit=7", headers={**COORDINATOR, "x-request-id": "req-87654321"})
    assert listed.status_code == 200
    (entry,) = [r for r in caplog.records if r.name == "panui.access" and r.request_id == "req-87654321"]
    assert entry.route == "/v1/incidents" and "limit" not in JsonFormatter().format(entry)
    # An id that could carry data into the logs is replaced by one made here (logged, not sent).
    caplog.set_level(logging.DEBUG, logger="panui.access")
    odd = await intake.client.get("/healthz", headers={"x-request-id": "a b c"})
    assert "x-request-id" not in odd.headers
    made = [r for r in caplog.records if r.name == "panui.access" and r.route == "/healthz"]
    assert made and re.fullmatch(r"[0-9a-f]{16}", made[-1].request_id)


async def test_metrics_for_charts_are_set(intake):
    setup = await intake.new_incident(1)
    key = next(iter(setup.keys.values()))
    before = (await intake.client.get("/metrics")).text
    body = ndjson([affected_record("m-1"), affected_record("m-2", nhi="ZZZ0017"),
                   {"source_record_id": "m-3"}])
    posted = await intake.post_feed(setup.incident_id, key, body)
    assert posted.status_code == 202, posted.text
    after = (await intake.client.get("/metrics")).text

    def delta(name: str, labels: str) -> float:
        return _samples(after, name).get(labels, 0) - _samples(before, name).get(labels, 0)

    receipt = posted.json()
    assert delta("panui_intake_records_total", '{outcome="accepted"}') == receipt["accepted"]
    assert delta("panui_intake_records_total", '{outcome="rejected"}') == receipt["rejected"] >= 1
    rejected_reasons = _samples(after, "panui_intake_records_rejected_total")
    assert rejected_reasons and all(re.fullmatch(r'\{reason="[a-z0-9_.-]+"\}', k) for k in rejected_reasons)
    assert delta("panui_intake_feed_records_count", "") == 1
    route = 'method="POST",route="/v1/incidents/{incident_id}/feeds",service="intake"'
    assert delta("panui_http_request_seconds_count", "{" + route + "}") == 1, [
        line for line in after.splitlines() if "request_seconds_count" in line]
    # The outbox backlog is counted at each scrape (a gauge set, not only declared).
    assert '{service="intake"}' in _samples(after, "panui_outbox_pending")
    # No label carries an id or a value from the feed.
    for leaked in (setup.incident_id, key, "m-1", "ZZZ0016"):
        assert leaked not in after
