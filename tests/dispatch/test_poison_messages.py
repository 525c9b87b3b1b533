"""Poison messages on dispatch's inputs, with the real gateways: a schema-invalid incident
revision and an undecodable notice are dead-lettered and their partitions move on — the next
incident revision is applied, and every valid notice is sent exactly once (the gateway's own
log). Replaying the superseded incident revision is refused: on a compacted topic it would
bring back old state. (On main both partitions stalled for ever.)"""

import asyncio
import json

import orjson
import pytest
from typer.testing import CliRunner

from services.cli.main import app as cli
from testkit.deadletters import dead_letters
from testkit.infra import free_port
from testkit.messages import publish_raw
from testkit.notices import incident_message, notice_message, person

from .stack import dispatch_settings, running_dispatch

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

NOTICES = 6


async def test_poison_incident_and_notice_are_dead_lettered_and_sending_goes_on(
        service_env, pg_database, smtp_gw, sms_gw, kafka_bootstrap, topic_prefix):
    settings = dispatch_settings(service_env, pg_database("dispatch"), port=free_port(),
                                 smtp_port=smtp_gw.port, sms_url=sms_gw.url,
                                 quiet_hours_enabled=False, consumer_retry_backoff_s=0.02)
    async with running_dispatch(settings) as stack:
        broken = orjson.loads(incident_message(revision=1).to_bytes())
        del broken["content"]  # schema-invalid: no s 117 content
        [bad_incident] = await publish_raw(kafka_bootstrap, f"{topic_prefix}incidents.v1",
                                           [("inc-1", orjson.dumps(broken))])
        await stack.publish_incident(incident_message(revision=2))  # same key: after the poison
        notices = [notice_message(stack.sealer, n, person(n, mobile=False)) for n in range(NOTICES)]
        await stack.publish_notices(notices[:3])
        [bad_notice] = await publish_raw(kafka_bootstrap, f"{topic_prefix}notices.v1",
                                         [(notices[0].person_id, b"\x00 not a notice")])
        await stack.publish_notices(notices[3:])
        await stack.wait_until(lambda: len(smtp_gw.messages) >= NOTICES, what="every email")
        await stack.wait_until(lambda: set(stack.delivery_map().values()) == {"sent"},
                               what="all sent")
        await asyncio.sleep(0.5)

    sent_to = sorted(m.rcpt_tos[0] for m in smtp_gw.messages)
    assert sent_to == sorted(f"person{n}@example.nz" for n in range(NOTICES))  # each once
    letters = await dead_letters(kafka_bootstrap, topic_prefix, 2)
    by_reason = {d["reason"]: d for d in letters}
    assert set(by_reason) == {"schema-invalid", "undecodable"}
    assert by_reason["schema-invalid"]["origin"]["offset"] == bad_incident.offset
    assert by_reason["schema-invalid"]["origin"]["group"] == settings.consumer_group("dispatch.incidents")
    assert {"loc": "content", "type": "missing"} in by_reason["schema-invalid"]["errors"]
    assert by_reason["undecodable"]["origin"]["offset"] == bad_notice.offset
    assert by_reason["undecodable"]["origin"]["key"] == notices[0].person_id

    replay = await asyncio.to_thread(CliRunner().invoke, cli, [
        "dead-letters", "replay", "--all", "--reason", "schema-invalid", "--json",
        "--bootstrap", kafka_bootstrap, "--prefix", topic_prefix])
    assert replay.exit_code == 0, replay.output
    [outcome] = json.loads(replay.stdout)
    assert outcome["outcome"] == "skipped" and "superseded" in outcome["note"]
