"""Agency feeds end to end: each format, receipts and problems, re-sends, withdrawal,
completion, and what reaches Kafka (sealed, keyed by incident)."""

import json

import pytest

from services.common.messages import (
    AffectedRecordMessage,
    ContributionCompleteMessage,
    RecordWithdrawnMessage,
    SealedPersonalFields,
)
from testkit.factories import affected_record, ndjson

from .conftest import agency_headers

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _records(messages: list, kind: type) -> list:
    return [decoded for _, decoded in messages if isinstance(decoded, kind)]


async def _one_agency(intake):  # noqa: ANN001, ANN202
    setup = await intake.new_incident(1)
    agency_id, key = next(iter(setup.keys.items()))
    return setup.incident_id, agency_id, key


async def test_ndjson_feed_is_stored_sealed_and_published(intake):
    incident_id, agency_id, key = await _one_agency(intake)
    body = ndjson([affected_record(f"nd-{i}", nhi=nhi)
                   for i, nhi in enumerate(["ZZZ0016", "ZZZ0024", "ZBN77VL"])])
    response = await intake.post_feed(incident_id, key, body)
    assert response.status_code == 202, response.text
    receipt = response.json()
    assert (receipt["format"], receipt["received"], receipt["accepted"], receipt["rejected"],
            receipt["warnings"], receipt["unchanged"]) == ("ndjson", 3, 3, 0, 0, 0)
    assert receipt["problems"] == []
    assert receipt["problems_url"] == f"/v1/incidents/{incident_id}/feeds/{receipt['feed_id']}/problems"

    stored = intake.query("SELECT source_record_id, version, sealed, feed_id FROM affected_record "
                          "WHERE incident_id = %s ORDER BY source_record_id", incident_id)
    assert [(s, v) for s, v, _, _ in stored] == [("nd-0", 1), ("nd-1", 1), ("nd-2", 1)]
    assert all(f == receipt["feed_id"] for *_, f in stored)
    dump = str(intake.query("SELECT * FROM affected_record WHERE incident_id = %s", incident_id))
    for plaintext in ("Aroha", "Testperson", "ZZZ0016", "ZBN77VL", "example.nz", "+6421"):
        assert plaintext not in dump

    messages = await intake.messages(incident_id, lambda ms: len(ms) >= 3)
    assert len(messages) == 3
    for raw, message in messages:
        assert isinstance(message, AffectedRecordMessage)
        assert raw.key == incident_id.encode()  # the key is the incident, never personal data
        for plaintext in (b"Aroha", b"Testperson", b"ZZZ00", b"example.nz", b"+6421", b"1980-04-12"):
            assert plaintext not in raw.value
        assert (message.agency_id, message.record_version, message.feed_id) == (
            agency_id, 1, receipt["feed_id"])
        assert message.data_categories == ["clinical_notes"] and message.document_count == 2
        personal = SealedPersonalFields.model_validate(
            intake.sealer.open(message.sealed, message.sealing_context()))
        assert personal.given_names == "Aroha" and personal.family_name == "Testperson"
        assert personal.email == "aroha.testperson@example.nz" and personal.mobile == "+64211234567"
        assert str(personal.date_of_birth) == "1980-04-12"
    assert sorted(m.source_record_id for _, m in messages) == ["nd-0", "nd-1", "nd-2"]
    nhis = {m.source_record_id: intake.sealer.open(m.sealed, m.sealing_context())["nhi"]
            for _, m in messages}
    assert nhis == {"nd-0": "ZZZ0016", "nd-1": "ZZZ0024", "nd-2": "ZBN77VL"}


async def test_csv_without_a_header_row_is_refused_and_stores_nothing(intake):
    incident_id, _, key = await _one_agency(intake)
    person = ["GP-000123", "ZZZ0016", "Aroha", "Te Whare", "1985-04-03", "aroha@example.co.nz"]
    body = (",".join(person) + "\r\nGP-000124,ZZZ0024,Hemi,Tauira,1990-01-01,hemi@example.co.nz\r\n")
    response = await intake.post_feed(incident_id, key, body.encode(), "text/csv")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "feed.csv_header_missing"
    assert not any(value.lower() in response.text.lower() for value in person)
    for table in ("feed", "affected_record"):
        assert intake.query(f"SELECT count(*) FROM {table} WHERE incident_id = %s",  # noqa: S608
                            incident_id) == [(0,)]
    assert not any(value in str(intake.query("SELECT field FROM feed_problem")) for value in person)


async def test_csv_feed_with_nz_dates_and_flattened_columns(intake):
    incident_id, _, key = await _one_agency(intake)
    body = (
        "source_record_id,nhi,given_names,family_name,date_of_birth,mobile,email,"
        "address_line1,address_city,address_postcode,data_categories,document_count\r\n"
        "csv-1,ZAC5361,Mere,Testing,03/04/1985,021 123 4567,mere@example.nz,"
        "\"12 Example St, Te Aro\",Wellington,6011,lab_results;images,4\r\n"
        "csv-2,zzz 0024,Hēmi,Tauira,31/12/1999,,,,,,,\r\n"
        "csv-3,,,,,,,,,,,\r\n"
    ).encode()
    response = await intake.post_feed(incident_id, key, body, "text/csv")
    assert response.status_code == 202, response.text
    receipt = response.json()
    assert (receipt["format"], receipt["received"], receipt["accepted"], receipt["rejected"]) == (
        "csv", 3, 2, 1)
    assert {p["code"] for p in receipt["problems"]} == {"record.no_name", "record.unreachable"}
    assert all(p["line"] == 4 for p in receipt["problems"])

    messages = await intake.messages(incident_id, lambda ms: len(ms) >= 2)
    opened = {m.source_record_id: intake.sealer.open(m.sealed, m.sealing_context())
              for _, m in messages}
    assert opened["csv-1"]["date_of_birth"] == "1985-04-03"
    assert opened["csv-1"]["mobile"] == "+64211234567"
    assert opened["csv-1"]["address"]["line1"] == "12 Example St, Te Aro"
    assert opened["csv-2"]["date_of_birth"] == "1999-12-31"
    assert opened["csv-2"]["nhi"] == "ZZZ0024"
    assert opened["csv-2"]["given_names"] == "Hēmi"
    by_id = {m.source_record_id: m for _, m in messages}
    assert by_id["csv-1"].data_categories == ["lab_results", "images"]
    assert by_id["csv-1"].document_count == 4


async def test_json_array_feed(intake):
    incident_id, _, key = await _one_agency(intake)
    records = [affected_record("js-1"), affected_record("js-2", hold={"reason": "health_prejudice"}),
               {"source_record_id": "js-3"}]
    response = await intake.post_feed(incident_id, key, json.dumps(records).encode(), "application/json")
    assert response.status_code == 202, response.text
    receipt = response.json()
    assert (receipt["format"], receipt["received"], receipt["accepted"], receipt["rejected"]) == (
        "json", 3, 2, 1)
    messages = await intake.messages(incident_id, lambda ms: len(ms) >= 2)
    holds = {m.source_record_id: m.on_hold for _, m in messages}
    assert holds == {"js-1": False, "js-2": True}


# The NHI test values from DOMAIN.md §2: valid ones are kept, invalid ones are dropped with
# a warning (the person is kept: they still have a name and contact details).
VALID_NHIS = ["ZZZ0016", "ZZZ0024", "ZAC5361", "JBX3656", "EPT6335", "CGC2720",
              "ZZZ00AC", "ZBN77VL", "ZSC21TN", "ZVU27KE", "ZHW58CV"]
INVALID_NHIS = ["ZZZ0044", "DAB8233", "ZZZ0017", "ZZZ00AA", "ZZZ00AX", "ZHW58CN"]


async def test_nhi_test_values_through_the_api(intake):
    incident_id, _, key = await _one_agency(intake)
    nhis = VALID_NHIS + INVALID_NHIS
    body = ndjson([affected_record(f"nhi-{i}", nhi=n) for i, n in enumerate(nhis)])
    receipt = (await intake.post_feed(incident_id, key, body)).json()
    assert receipt["accepted"] == len(nhis) and receipt["warnings"] == len(INVALID_NHIS)
    problems = (await intake.client.get(receipt["problems_url"], headers=agency_headers(key, None))).json()
    flagged = {p["source_record_id"]: p["code"] for p in problems["problems"]}
    assert flagged == {f"nhi-{i}": "nhi.check_failed" for i in range(len(VALID_NHIS), len(nhis))}
    messages = await intake.messages(incident_id, lambda ms: len(ms) >= len(nhis))
    kept = {m.source_record_id: intake.sealer.open(m.sealed, m.sealing_context()).get("nhi")
            for _, m in messages}
    assert [kept[f"nhi-{i}"] for i in range(len(nhis))] == VALID_NHIS + [None] * len(INVALID_NHIS)


# One line per validation rule, each expected to report its code (through the whole API).
RULE_LINES: list[tuple[object, str]] = [
    ([1, 2], "record.not_an_object"),
    ({"given_names": "A", "nhi": "ZZZ0016"}, "record.source_record_id_missing"),
    ({"source_record_id": "r", "nhi": "ZZZ0016"}, "record.no_name"),
    ({"source_record_id": "r", "given_names": "A"}, "record.unreachable"),
    ({"source_record_id": "r", "given_names": 5, "nhi": "ZZZ0016"}, "field.wrong_type"),
    ({"source_record_id": "r", "given_names": "A" * 201, "nhi": "ZZZ0016"}, "field.too_long"),
    ({"source_record_id": "r", "given_names": "A", "nhi": "ZZZ0016",
      "data_categories": ["images"] * 33}, "field.too_many_items"),
    ({"source_record_id": "r", "given_names": "A\u0007", "nhi": "ZZZ0016"}, "text.control_characters"),
    ({"source_record_id": "r", "given_names": "A", "nhi": "ZZZ0016", "hold": "yes"}, "hold.malformed"),
    ({"source_record_id": "r", "given_names": "A", "nhi": "ZZZ0016", "hold": {"note": "n"}},
     "hold.reason_missing"),
    ({"source_record_id": "r", "given_names": "A", "nhi": "ZZZ0016", "hold": {"reason": "whim"}},
     "hold.reason_unknown"),
    ({"source_record_id": "r", "given_names": "A", "nhi": "ZZZ0016", "hold": {"reason": "representative"}},
     "hold.representative_missing"),
    ({"source_record_id": "r", "given_names": "A", "nhi": "ZZZ0016",
      "hold": {"reason": "representative", "representative": {"name": "B"}}},
     "hold.representative_unreachable"),
    ({"source_record_id": "r", "given_names": "A", "nhi": "ZZZ0016",
      "hold": {"reason": "representative", "representative": {"name": "B", "email": "nope"}}},
     "hold.representative_contact_invalid"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "agency_id": "x"},
     "record.agency_id_ignored"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "colour": "x"}, "field.unknown"),
    ({"source_record_id": "w", "given_names": "A", "email": "a@example.nz", "nhi": "12345"}, "nhi.malformed"),
    ({"source_record_id": "w", "given_names": "A", "email": "a@example.nz", "nhi": "ZZZ0017"},
     "nhi.check_failed"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "mobile": "12"}, "mobile.invalid"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "mobile": "0800 123 456"},
     "mobile.not_a_mobile"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "email": "not-an-email"}, "email.invalid"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "date_of_birth": "April"},
     "date_of_birth.unrecognised"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "date_of_birth": "31/02/1990"},
     "date_of_birth.impossible"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "date_of_birth": "2999-01-01"},
     "date_of_birth.in_future"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "date_of_birth": "1800-01-01"},
     "date_of_birth.too_old"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "address": {"postcode": "60"}},
     "address.postcode_invalid"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "data_categories": ["gossip"]},
     "data_categories.unknown"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "document_count": -3},
     "document_count.invalid"),
    ({"source_record_id": "w", "given_names": "A", "nhi": "ZZZ0016", "preferred_language": "fr"},
     "preferred_language.unknown"),
]


async def test_every_validation_rule_is_reported_on_its_line(intake):
    incident_id, _, key = await _one_agency(intake)
    lines = [json.dumps(r).encode() for r, _ in RULE_LINES]
    lines += [b"{not json", b"\xff\xfe{}"]
    body = b"\n".join(lines) + b"\n"
    response = await intake.post_feed(incident_id, key, body)
    assert response.status_code == 202, response.text
    problems = (await intake.client.get(response.json()["problems_url"] + "?limit=10000",
                                        headers=agency_headers(key, None))).json()["problems"]
    by_line: dict[int, set[str]] = {}
    for p in problems:
        by_line.setdefault(p["line"], set()).add(p["code"])
        assert "Aroha" not in p["message"]
    for i, (_, code) in enumerate(RULE_LINES, start=1):
        assert code in by_line.get(i, set()), (i, code, by_line.get(i))
    assert by_line[len(RULE_LINES) + 1] == {"parse.invalid_json"}
    assert by_line[len(RULE_LINES) + 2] == {"parse.invalid_utf8"}
    errors = {c for c, _ in [(code, 0) for _, code in RULE_LINES]}
    assert errors  # every code listed above was seen


async def test_receipt_has_the_first_problems_and_the_list_pages(intake):
    incident_id, _, key = await _one_agency(intake)
    # 60 rejected lines, each with two problems (missing id and unreachable), plus 5 good ones.
    bad = [{"given_names": "A", "colour": "x"} for _ in range(60)]
    body = ndjson([affected_record(f"ok-{i}") for i in range(5)] + bad)
    receipt = (await intake.post_feed(incident_id, key, body)).json()
    assert (receipt["received"], receipt["accepted"], receipt["rejected"]) == (65, 5, 60)
    assert len(receipt["problems"]) == intake.settings.receipt_problem_limit
    assert receipt["problems"][0]["line"] == 6

    headers = agency_headers(key, None)
    seen: list[dict] = []
    after = 0
    pages = 0
    while True:
        page = (await intake.client.get(f"{receipt['problems_url']}?after_line={after}&limit=25",
                                        headers=headers)).json()
        pages += 1
        seen.extend(page["problems"])
        if page["next_after_line"] is None:
            break
        after = page["next_after_line"]
        # A line's problems are never split across pages.
        assert all(p["line"] <= after for p in page["problems"])
    assert pages > 3
    assert len(seen) == 60 * 3  # missing id, no way to reach, unknown field
    assert sorted({p["line"] for p in seen}) == list(range(6, 66))
    assert {(p["severity"], p["code"]) for p in seen} == {
        ("error", "record.source_record_id_missing"), ("error", "record.unreachable"),
        ("warning", "field.unknown")}

    feed = await intake.client.get(f"/v1/incidents/{incident_id}/feeds/{receipt['feed_id']}",
                                   headers=headers)
    assert feed.status_code == 200
    assert feed.json()["problems"] == receipt["problems"]
    bad_limit = await intake.client.get(f"{receipt['problems_url']}?limit=0", headers=headers)
    assert bad_limit.status_code == 422


async def test_resend_identical_is_a_no_op_and_changed_is_a_new_version(intake):
    incident_id, agency_id, key = await _one_agency(intake)
    first = [affected_record("v-1"), affected_record("v-2")]
    r1 = (await intake.post_feed(incident_id, key, ndjson(first))).json()
    assert (r1["accepted"], r1["unchanged"]) == (2, 0)
    await intake.drained()

    r2 = (await intake.post_feed(incident_id, key, ndjson(first))).json()
    assert (r2["received"], r2["accepted"], r2["unchanged"]) == (2, 0, 2)
    assert intake.query("SELECT count(*) FROM outbox_message")[0][0] == 0  # nothing new to publish

    changed = [affected_record("v-1", email="new.address@example.nz"), affected_record("v-2")]
    r3 = (await intake.post_feed(incident_id, key, ndjson(changed))).json()
    assert (r3["accepted"], r3["unchanged"]) == (1, 1)

    versions = intake.query("SELECT source_record_id, version FROM affected_record WHERE incident_id = %s "
                            "ORDER BY 1, 2", incident_id)
    assert versions == [("v-1", 1), ("v-1", 2), ("v-2", 1)]
    messages = await intake.messages(incident_id, lambda ms: len(ms) >= 3)
    records = _records(messages, AffectedRecordMessage)
    assert len(records) == 3  # the identical re-send published nothing
    v2 = next(m for m in records if m.record_version == 2)
    assert (v2.source_record_id, v2.agency_id, v2.feed_id) == ("v-1", agency_id, r3["feed_id"])
    assert intake.sealer.open(v2.sealed, v2.sealing_context())["email"] == "new.address@example.nz"


async def test_idempotency_key_replays_the_original_receipt(intake):
    incident_id, _, key = await _one_agency(intake)
    body = ndjson([affected_record("i-1"), {"source_record_id": "i-2"}])
    first = await intake.post_feed(incident_id, key, body, **{"idempotency-key": "chunk-0001"})
    assert first.status_code == 202
    # Same key, even with a different body, replays the stored receipt and stores nothing.
    again = await intake.post_feed(incident_id, key, ndjson([affected_record("i-3")]),
                                   **{"idempotency-key": "chunk-0001"})
    assert again.status_code == 202
    assert again.json() == first.json()
    assert intake.query("SELECT count(*) FROM feed WHERE incident_id = %s", incident_id) == [(1,)]
    assert intake.query("SELECT count(*) FROM affected_record WHERE incident_id = %s", incident_id) == [(1,)]


async def test_withdrawal_publishes_and_is_idempotent(intake):
    incident_id, agency_id, key = await _one_agency(intake)
    await intake.post_feed(incident_id, key, ndjson([affected_record("wd-1"), affected_record("wd-2")]))
    headers = agency_headers(key, None)
    url = f"/v1/incidents/{incident_id}/records"

    response = await intake.client.delete(f"{url}/wd-1", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"incident_id": incident_id, "source_record_id": "wd-1", "status": "withdrawn"}
    again = await intake.client.delete(f"{url}/wd-1", headers=headers)
    assert again.json()["status"] == "already-withdrawn"
    unknown = await intake.client.delete(f"{url}/never-sent", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "record.not_found"

    messages = await intake.messages(
        incident_id, lambda ms: _records(ms, RecordWithdrawnMessage))
    withdrawn = _records(messages, RecordWithdrawnMessage)
    assert [(w.source_record_id, w.agency_id) for w in withdrawn] == [("wd-1", agency_id)]
    assert withdrawn[0].record_version == 1  # the version it withdraws

    # Completion counts live records only; the withdrawn one is not counted.
    done = await intake.client.post(f"/v1/incidents/{incident_id}/completion", headers=headers)
    assert done.status_code == 200, done.text
    assert done.json()["record_count"] == 1
    messages = await intake.messages(
        incident_id, lambda ms: _records(ms, ContributionCompleteMessage))
    complete = _records(messages, ContributionCompleteMessage)
    assert [(c.agency_id, c.record_count, c.withdrawn_count) for c in complete] == [
        (agency_id, 1, 1)]
    raw_complete = next(raw for raw, m in messages if isinstance(m, ContributionCompleteMessage))
    assert raw_complete.key == incident_id.encode()

    # Re-sending a withdrawn record brings it back as a new version.
    back = (await intake.post_feed(incident_id, key, ndjson([affected_record("wd-1")]))).json()
    assert back["accepted"] == 1
    assert intake.query("SELECT max(version) FROM affected_record WHERE incident_id = %s AND "
                        "source_record_id = 'wd-1'", incident_id) == [(2,)]
    # Withdrawn again: the withdrawal names version 2, ordered after the first one.
    await intake.client.delete(f"{url}/wd-1", headers=headers)
    messages = await intake.messages(
        incident_id, lambda ms: len(_records(ms, RecordWithdrawnMessage)) == 2)
    assert [w.record_version for w in _records(messages, RecordWithdrawnMessage)] == [1, 2]


async def test_completion_counts_distinct_live_records(intake):
    incident_id, agency_id, key = await _one_agency(intake)
    await intake.post_feed(incident_id, key, ndjson([affected_record(f"c-{i}") for i in range(4)]))
    await intake.post_feed(incident_id, key, ndjson([affected_record("c-0", given_names="Changed")]))
    done = (await intake.client.post(f"/v1/incidents/{incident_id}/completion",
                                     headers=agency_headers(key, None))).json()
    assert (done["agency_id"], done["record_count"]) == (agency_id, 4)
    view = (await intake.client.get(f"/v1/incidents/{incident_id}",
                                    headers={"authorization": "Bearer test-coordinator-token"})).json()
    assert view["agencies"][0]["completed_at"] is not None


async def test_idempotency_key_is_scoped_to_its_incident(intake):
    setup = await intake.new_incident(1)
    agency_id, key = next(iter(setup.keys.items()))
    first = await intake.post_feed(setup.incident_id, key, ndjson([affected_record("s-1")]),
                                   **{"idempotency-key": "k-1"})
    assert first.status_code == 202
    # Enrol the same agency in a second incident and reuse the key there.
    other = await intake.new_incident(0)
    enrolled = await intake.client.post(f"/v1/incidents/{other.incident_id}/agencies",
                                        headers={"authorization": "Bearer test-coordinator-token"},
                                        json={"agency_id": agency_id, "name": "Same agency"})
    assert enrolled.status_code == 201
    reused = await intake.post_feed(other.incident_id, key, ndjson([affected_record("s-1")]),
                                    **{"idempotency-key": "k-1"})
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "feed.idempotency_key_reused"


async def test_odd_field_names_never_break_a_feed(intake):
    incident_id, _, key = await _one_agency(intake)
    record = affected_record("odd-1", address={"line1": "1 Test St", "x" * 200: "y"})
    record["bad\u0000key" + "z" * 100] = 1
    response = await intake.post_feed(incident_id, key, ndjson([record]))
    assert response.status_code == 202, response.text
    fields = [p["field"] for p in response.json()["problems"]]
    assert len(fields) == 2 and all(len(f) <= 64 and "\x00" not in f for f in fields)


async def test_concurrent_feeds_with_overlapping_records_get_consecutive_versions(intake):
    import asyncio

    incident_id, _, key = await _one_agency(intake)
    bodies = [ndjson([affected_record(f"cc-{i}", given_names=f"Name{n}") for i in range(200)])
              for n in range(4)]
    responses = await asyncio.gather(*(intake.post_feed(incident_id, key, b) for b in bodies))
    assert [r.status_code for r in responses] == [202] * 4
    rows = intake.query("SELECT source_record_id, array_agg(version ORDER BY version) FROM affected_record "
                        "WHERE incident_id = %s GROUP BY 1", incident_id)
    assert len(rows) == 200 and all(versions == [1, 2, 3, 4] for _, versions in rows)
