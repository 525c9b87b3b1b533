"""What intake accepts, dedupe can read: an email that grows past its 254-character limit when
intake lower-cases its domain ("İ" becomes "i" + U+0307) goes intake → Kafka → dedupe. Intake
drops the address with a warning (the person keeps their other contacts), dedupe reads every
record, and each person gets one notice — nothing is dead-lettered. (On main intake accepted
the grown address; dedupe's contract model rejected it and the partition stalled for ever.)"""

import asyncio

import pytest

from services.common.messages import decode_notice
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.settings import DedupeSettings
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from testkit.deadletters import dead_letters
from testkit.factories import affected_record, incident_body, ndjson, synthetic_nhi
from testkit.infra import topic_reader
from tests.conftest import COORDINATOR_TOKEN, running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

COORDINATOR = {"authorization": f"Bearer {COORDINATOR_TOKEN}"}
# 207 characters as sent (within the limit); 347 once the domain is lower-cased.
GROWING_EMAIL = "aroha.testperson@" + ".".join(["İ" * 10] * 14) + ".nz"


def test_the_growing_email_is_within_the_limit_as_sent_and_past_it_lower_cased():
    local, _, domain = GROWING_EMAIL.rpartition("@")
    assert len(GROWING_EMAIL) <= 254 < len(f"{local}@{domain.lower()}")


async def test_an_email_that_outgrows_its_limit_when_normalised_never_reaches_dedupe(
        service_env, pg_database, kafka_bootstrap, topic_prefix):
    intake = create_intake(IntakeSettings(**service_env, database_url=pg_database("intake")))
    dedupe = create_dedupe(DedupeSettings(**service_env, database_url=pg_database("dedupe"),
                                          release_tick_s=0.2))
    records = [
        affected_record("kowhai-0001", nhi=synthetic_nhi(1), given_names="Mere",
                        email="mere.testperson@example.nz", mobile="+64211000001"),
        affected_record("kowhai-0002", nhi=synthetic_nhi(2), given_names="Aroha",
                        email=GROWING_EMAIL, mobile="+64211000002"),
        affected_record("kowhai-0003", nhi=synthetic_nhi(3), given_names="Hemi",
                        email="hemi.testperson@example.nz", mobile="+64211000003"),
    ]
    async with running(intake) as client, running(dedupe):
        created = await client.post("/v1/incidents", headers=COORDINATOR, json=incident_body(
            "inc-norm", [("gp-kowhai", "Kōwhai Medical Centre")]))
        assert created.status_code == 201, created.text
        key = {"authorization": f"Bearer {created.json()['issued_keys'][0]['api_key']}"}
        response = await client.post("/v1/incidents/inc-norm/feeds", content=ndjson(records),
                                     headers={**key, "content-type": "application/x-ndjson"})
        assert response.status_code == 202, response.text
        receipt = response.json()
        done = await client.post("/v1/incidents/inc-norm/completion", headers=key)
        assert done.status_code == 200, done.text

        async with topic_reader(kafka_bootstrap, f"{topic_prefix}notices.v1") as reader:
            await reader.wait_for(lambda m: len(m) >= len(records), timeout=60)
            await asyncio.sleep(1.5)
            notices = [decode_notice(m.value) for m in await reader.drain()]

    assert receipt["accepted"] == 3 and receipt["rejected"] == 0
    assert [(p["line"], p["field"], p["code"]) for p in receipt["problems"]] == [
        (2, "email", "email.invalid")]
    assert len(notices) == 3 == len({n.person_id for n in notices})
    assert sorted(n.channels for n in notices) == [["email", "sms"], ["email", "sms"], ["sms"]]
    assert await dead_letters(kafka_bootstrap, topic_prefix, 0) == []
