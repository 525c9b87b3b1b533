"""The incident generator: the breach's shape, ground truth for every record, reproducible."""

import json

from benchmarks.incident import scenario


def _records(incident: scenario.Incident, agency_id: str) -> list[dict]:
    return [json.loads(line) for line in incident.feed_path(agency_id).read_text().splitlines()]


def test_breach_shape_portal_largest_many_small_practices(tmp_path):
    incident = scenario.build(scenario.BREACH, 6_000, 7, tmp_path)
    assert incident.records == 6_000 == sum(incident.counts.values()) == len(incident.truth)
    assert len(incident.agencies) == 50
    counts = incident.counts
    assert max(counts, key=counts.get) == "portal-operator"
    assert counts["portal-operator"] > 0.35 * incident.records
    practices = sorted((n for a, n in counts.items() if a.startswith("gp-")), reverse=True)
    assert practices[0] > 10 * practices[-1]  # a few large, many small
    assert 3.0 < incident.records / incident.persons < 3.35  # 400k records ≈ 126k people
    assert incident.persons == len(set(incident.truth.values()))


def test_every_record_has_its_truth_and_synthetic_identifiers(tmp_path):
    incident = scenario.build(scenario.BREACH, 2_000, 3, tmp_path)
    for agency in incident.agencies:
        for record in _records(incident, agency.agency_id):
            assert (agency.agency_id, record["source_record_id"]) in incident.truth
            assert record.get("nhi") is None or record["nhi"].startswith("Z")
            assert record["data_categories"]


def test_same_seed_same_feeds_and_reused_from_disk(tmp_path):
    first = scenario.build(scenario.BREACH, 1_500, 11, tmp_path / "a")
    second = scenario.build(scenario.BREACH, 1_500, 11, tmp_path / "b")
    assert first.truth == second.truth
    assert first.feed_path("portal-operator").read_bytes() == second.feed_path("portal-operator").read_bytes()
    again = scenario.build(scenario.BREACH, 1_500, 11, tmp_path / "a")  # loaded, not generated
    assert again.truth == first.truth and again.persons == first.persons
    other = scenario.build(scenario.BREACH, 1_500, 12, tmp_path / "a")
    assert other.truth != first.truth


def test_demo_holds_mark_every_hospital_record_of_the_held_people(tmp_path):
    incident = scenario.build(scenario.DEMO, 3_000, 7, tmp_path)
    assert len(incident.agencies) == 24 and len(incident.held) == scenario.DEMO.holds
    held_records = [r for r in _records(incident, "hospital-1") if "hold" in r]
    assert {incident.truth[("hospital-1", r["source_record_id"])] for r in held_records} == incident.held
