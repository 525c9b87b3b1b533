"""Replays and re-identification: what dedupe does when it reads a topic again, or when a
person it has notified turns out to be two.

- A record withdrawn and re-sent, then the topic replayed from offset 0: the person must still
  be notified (the re-sent version is the live one).
- A notified person split in two (one agency corrects its record: the new version is someone
  else), then both halves amended: the split-off person gets a first notice of their own, and both amendments
  go out.
- Dedupe replayed from offset 0 into an EMPTY database: it resolves the same persons with the
  same ids, so its notices carry the same notice ids and dispatch — which dedupes by notice id
  — sends nothing a second time. That is what "correct" means for a rebuild.
"""

import dataclasses

import pytest

from testkit.groundtruth import TruePerson, ground_truth

from .conftest import driver_for, settle_and_reconcile

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

DEDUPE_GROUP, RECORDS_TOPIC = "dedupe.affected-records", "affected-records.v1"


async def _replay_dedupe_from_zero(system) -> None:  # noqa: ANN001
    system.terminate("dedupe")
    await system.rewind_group(DEDUPE_GROUP, RECORDS_TOPIC)
    await system.restart("dedupe")


async def test_withdraw_resend_then_replay_from_offset_zero(make_system):
    truth = ground_truth(300, agencies=2, seed=71)
    [incident] = truth.incidents
    person = next(p for p in truth.persons if len(p.records) == 1)
    [(agency, srid)] = person.records
    system = await make_system()
    driver = driver_for(system, truth)
    await driver.create_incidents()
    await driver.upload_all()
    assert (await driver.withdraw(incident, agency, srid))["status"] == "withdrawn"
    [again] = await driver.upload(incident, agency, [truth.record(incident, agency, srid)], tag="again")
    assert again["accepted"] == 1  # the re-sent record is its version 2
    await system.wait_for(lambda: system.query(
        "dedupe", "SELECT record_version, withdrawn FROM record_state WHERE source_record_id = %s",
        (srid,)) == [(2, False)], what="dedupe to apply the re-sent version")
    assert (await system.wait_quiescent(timeout=60)).quiet
    await _replay_dedupe_from_zero(system)  # v1, the withdrawal, v2 — all read again
    await driver.complete_all()
    result = await settle_and_reconcile(system, truth, timeout=90)
    result.assert_clean()
    assert result.copies(person.index, person.expected_channels(truth.mode)[0]) == 1


def _record(index: int, srid: str, nhi: str, given: str) -> dict:
    return {"source_record_id": srid, "nhi": nhi, "given_names": given, "family_name": "Splitfield",
            "date_of_birth": f"19{50 + index % 40}-0{1 + index % 9}-1{index % 9}",
            "email": f"split{index}@example.nz",
            "address": {"line1": f"{index} Split Street", "city": "Testville", "postcode": "9010"},
            "data_categories": ["clinical_notes"], "document_count": 1}


async def test_split_after_notification_then_amendments(make_system):
    truth = ground_truth(300, agencies=3, seed=72)
    [incident] = truth.incidents
    n = len(truth.persons)
    p, q, r = n, n + 1, n + 2
    p_gp, p_lab = _record(p, "split-p-gp", "ZZZ0024", "Pita"), _record(p, "split-p-lab", "ZZZ0024", "Pita")
    truth.feeds[(incident, "ag-0")].append(p_gp)
    truth.feeds[(incident, "ag-1")].append(p_lab)
    system = await make_system()
    driver = driver_for(system, truth)

    # 1. P, held by two agencies, is notified once (with the whole population).
    await driver.run()
    truth.persons.append(TruePerson(p, incident, p_gp["email"], None, p_gp["address"]["line1"],
                                    (("ag-0", "split-p-gp"), ("ag-1", "split-p-lab"))))
    await system.wait_quiescent(timeout=90)

    # 2. The lab's record was someone else, Q: the lab corrects it (its version 2 has Q's
    #    details), so the record leaves P for a person of its own.
    q_lab = _record(q, "split-p-lab", "ZZZ0032", "Quinn")
    [corrected] = await driver.upload(incident, "ag-1", [q_lab], tag="split")
    assert corrected["accepted"] == 1
    await system.wait_quiescent(timeout=60)

    # 3. A third agency holds both of them, and someone new, R: amendments and a first notice.
    p_more, q_more = _record(p, "split-p-hosp", "ZZZ0024", "Pita"), _record(q, "split-q-hosp", "ZZZ0032", "Quinn")
    r_new = _record(r, "split-r-hosp", "ZZZ0059", "Rangi")
    await driver.upload(incident, "ag-2", [p_more, q_more, r_new], tag="more")

    truth.persons[p] = dataclasses.replace(truth.persons[p], records=(("ag-0", "split-p-gp"),
                                                                      ("ag-2", "split-p-hosp")))
    truth.persons.append(TruePerson(q, incident, q_lab["email"], None, q_lab["address"]["line1"],
                                    (("ag-1", "split-p-lab"), ("ag-2", "split-q-hosp"))))
    truth.persons.append(TruePerson(r, incident, r_new["email"], None, r_new["address"]["line1"],
                                    (("ag-2", "split-r-hosp"),)))
    result = await settle_and_reconcile(system, truth, timeout=90)
    result.assert_clean()
    assert result.copies(q, "email") == 1, "Q, split off after P's notice, was never told"
    assert result.amendments.get(p) == [2], "P's amendment (the third agency)"
    assert result.amendments.get(q) == [2], "Q's amendment (the third agency)"
    assert result.copies(r, "email") == 1


async def test_replay_into_an_empty_dedupe_database(make_system):
    truth = ground_truth(600, agencies=3, seed=73)
    system = await make_system()
    await driver_for(system, truth).run()
    first = await settle_and_reconcile(system, truth)
    first.assert_clean()
    persons = sorted(system.query("dedupe", "SELECT incident_id, agency_id, source_record_id, person_id "
                                            "FROM record_state"))
    notices = sorted(system.query("dedupe", "SELECT notice_id FROM notice_state"))

    system.terminate("dedupe")
    system.use_database("dedupe", await system.create_database("dedupe"))  # empty, migrated
    await system.rewind_group(DEDUPE_GROUP, RECORDS_TOPIC)
    await system.restart("dedupe")
    result = await settle_and_reconcile(system, truth)
    assert system.count("dedupe", "SELECT count(*) FROM record_state") == truth.records
    # The same persons, under the same ids: the same notice ids, which dispatch already has.
    assert sorted(system.query("dedupe", "SELECT incident_id, agency_id, source_record_id, person_id "
                                         "FROM record_state")) == persons
    assert sorted(system.query("dedupe", "SELECT notice_id FROM notice_state")) == notices
    result.assert_clean()
    assert result.exactly_once == len(truth.persons)
