"""Issue 18, "Done when": a small full incident run as processes (testkit/system.py), with bad
requests that carry personal values, then every log line of every service, every error body,
the metric exposition (labels included), every Kafka key and header (and each message's clear
fields: everything but `sealed`, a dead letter's `payload` and the signature) on every topic,
and every problem row are searched for every personal value of the input, in the forms it
was given and normalised to. None may be found.

The search is whole-word and case-insensitive (a given name such as "Vai" is not found inside
"available"); `test_the_scan_finds_what_it_looks_for` shows it catches each kind of value."""

from __future__ import annotations

import json
import re
from datetime import date

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from testkit.driver import IncidentDriver
from testkit.groundtruth import ground_truth
from testkit.infra import topic_reader
from testkit.system import COORDINATOR_TOKEN, System

# Bad input a careless agency sends: every value here is personal too and searched for.
BAD_RECORDS = [
    {"source_record_id": "bad-0001", "nhi": "ZZZ0000", "given_names": "Hinewairua",
     "family_name": "Testbadrecord", "date_of_birth": "31/02/1980", "email": "hinewairua@@example",
     "mobile": "+64 21 999 0000 x", "address": {"line1": "99 Leakage Lane", "postcode": "12"}},
    {"source_record_id": "bad-0002", "nhi": "ZQX9Q9Q", "given_names": "Wiremutest" * 30,
     "family_name": "Ngatatestbad", "date_of_birth": "2199-01-01", "email": "wt@example.nz"},
]
HEADERLESS_CSV = "bad-0003,ZTT1234,Kahuranginui,Testheaderless,1977-05-04,kahu.hl@example.nz\n"


def personal_values(truth, extra_records) -> set[str]:  # noqa: ANN001
    """Every personal value of the input, in each form it may show up in."""
    values: set[str] = set()
    records = [r for feed in truth.feeds.values() for r in feed] + list(extra_records)
    for r in records:
        for key in ("nhi", "given_names", "family_name", "email", "mobile"):
            if r.get(key):
                values.add(r[key])
        if r.get("given_names") and r.get("family_name"):
            values.add(f"{r['given_names']} {r['family_name']}")
        if r.get("mobile", "").startswith("+64"):
            values.add("0" + r["mobile"][3:])  # the national form
        if dob := r.get("date_of_birth"):
            values.add(dob)
            try:
                d = date.fromisoformat(dob)
                values |= {d.strftime("%d/%m/%Y"), d.strftime("%Y%m%d")}
            except ValueError:
                pass
        if (r.get("address") or {}).get("line1"):
            values.add(r["address"]["line1"])
    values |= {"Kahuranginui", "Testheaderless", "ZTT1234", "kahu.hl@example.nz"}
    return {v for v in values if len(v) >= 3}


def find(values: set[str], text: str) -> set[str]:
    """The values that occur in `text` as whole words."""
    return {v for v in values
            if re.search(rf"(?<![\w@.+]){re.escape(v)}(?![\w@])", text, re.IGNORECASE)}


def test_the_scan_finds_what_it_looks_for():
    truth = ground_truth(4, agencies=1, seed=5)
    values = personal_values(truth, BAD_RECORDS)
    record = next(iter(truth.feeds.values()))[0]
    for leaked in (record["given_names"], record["family_name"], record["nhi"],
                   record["date_of_birth"], record["address"]["line1"], "hinewairua@@example"):
        assert leaked in find(values, f'{{"msg": "matching {leaked} failed", "count": 3}}')
    assert not find(values, '{"msg": "feed accepted", "incident": "inc-faults-0", "count": 3}')


def _clear_fields(value: bytes | None) -> str:
    if value is None:
        return ""
    try:
        fields = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode(errors="replace")
    if isinstance(fields, dict):
        for key in ("sealed", "payload", "signature"):
            fields.pop(key, None)
    return json.dumps(fields, ensure_ascii=False)


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.slow
async def test_no_personal_value_in_logs_errors_metrics_kafka_or_problems(
        tmp_path, kafka_bootstrap, pg_admin_url):
    truth = ground_truth(40, agencies=2, seed=18)
    system = System(tmp_path / "system", kafka_bootstrap=kafka_bootstrap, pg_admin_url=pg_admin_url)
    captured: dict[str, str] = {}  # where -> text
    try:
        await system.start()
        intake_url = system.services["intake"].url
        driver = IncidentDriver(truth, lambda: [intake_url], COORDINATOR_TOKEN)
        await driver.run()
        incident, agency = truth.incidents[0], truth.agencies[0]
        agency_key = {"authorization": f"Bearer {driver.keys[(incident, agency)]}"}
        async with httpx.AsyncClient(base_url=intake_url, timeout=30) as http:
            bad = {
                "feed with invalid records": await http.post(
                    f"/v1/incidents/{incident}/feeds", headers={**agency_key, "content-type": "application/json"},
                    content=orjson.dumps(BAD_RECORDS)),
                "ndjson with invalid records": await http.post(
                    f"/v1/incidents/{incident}/feeds", headers={**agency_key, "content-type": "application/x-ndjson"},
                    content=b"\n".join(orjson.dumps(r) for r in BAD_RECORDS)),
                "header-less CSV": await http.post(
                    f"/v1/incidents/{incident}/feeds", headers={**agency_key, "content-type": "text/csv"},
                    content=HEADERLESS_CSV.encode()),
                "malformed JSON": await http.post(
                    f"/v1/incidents/{incident}/feeds", headers={**agency_key, "content-type": "application/json"},
                    content=b'[{"given_names": "Kahuranginui", "nhi": "ZTT1234",'),
                "wrong agency key": await http.post(
                    f"/v1/incidents/{incident}/feeds", headers={"authorization": "Bearer Kahuranginui",
                                                                "content-type": "application/json"},
                    content=orjson.dumps(BAD_RECORDS[:1])),
                "unknown incident": await http.post(
                    "/v1/incidents/Testheaderless/feeds", headers={**agency_key, "content-type": "application/json"},
                    content=orjson.dumps(BAD_RECORDS[:1])),
            }
            assert all(r.status_code != 500 for r in bad.values()), {k: r.status_code for k, r in bad.items()}
            refused = ("header-less CSV", "wrong agency key", "unknown incident")
            assert all(bad[k].status_code >= 400 for k in refused), {k: bad[k].status_code for k in refused}
            # A truncated JSON array is a feed with a problem (intake takes what parses): its
            # receipt and problem rows are scanned below like any other.
            assert bad["malformed JSON"].status_code == 202, bad["malformed JSON"].text
            assert bad["malformed JSON"].json()["accepted"] == 0
            for what, response in bad.items():
                captured[f"response to {what} ({response.status_code})"] = response.text
                url = response.json().get("problems_url") if response.status_code < 300 else None
                if url:  # every page of the feed's problems, as the agency reads them
                    problems = await http.get(url, headers=agency_key)
                    captured[f"problems of {what} ({problems.status_code})"] = problems.text
        await system.wait_quiescent(timeout=120)
        async with httpx.AsyncClient(timeout=30) as http:
            for name, proc in system.services.items():
                captured[f"{name} /metrics"] = (await http.get(f"{proc.url}/metrics")).text
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            topics = sorted(t for t in await admin.list_topics() if t.startswith(system.topic_prefix))
        finally:
            await admin.close()
        assert len(topics) >= 5, topics
        for topic in topics:
            async with topic_reader(kafka_bootstrap, topic) as reader:
                records = await reader.drain()
            captured[f"{topic} keys and headers"] = "\n".join(
                f"{(r.key or b'').decode(errors='replace')} {[(k, v.decode(errors='replace')) for k, v in r.headers]}"
                for r in records)
            captured[f"{topic} clear fields"] = "\n".join(_clear_fields(r.value) for r in records)
        captured["intake feed_problem rows"] = "\n".join(
            " | ".join(map(str, row)) for row in system.query("intake", "SELECT * FROM feed_problem"))
        assert captured["intake feed_problem rows"], "the bad records made no problem rows"
    finally:
        await system.close()
    for log in sorted(system.log_dir.glob("*.log")):
        if log.stem.split("-")[0] in ("intake", "dedupe", "dispatch"):
            captured[f"log {log.name}"] = log.read_text(errors="replace")
    assert sum(1 for k in captured if k.startswith("log ")) >= 3
    assert sum(t.count("\n") for k, t in captured.items() if k.startswith("log ")) > 20

    values = personal_values(truth, BAD_RECORDS)
    leaks = {where: sorted(found) for where, text in captured.items() if (found := find(values, text))}
    assert not leaks, f"personal values found: {leaks}"
