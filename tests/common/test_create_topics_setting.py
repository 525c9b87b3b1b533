"""PANUI_KAFKA_CREATE_TOPICS=false (a cluster whose ACLs give the service no Create): start-up
checks the topics exist instead of creating them, and a missing one stops the service with its
name (the process exits non-zero)."""

import asyncio
import os
import subprocess
import sys

import pytest

from services.common.kafka import MissingTopics, ensure_topics
from services.common.settings import ServiceSettings
from services.common.topics import AFFECTED_RECORDS, INCIDENTS
from testkit.infra import REPO

pytestmark = pytest.mark.kafka


async def test_without_creating_a_missing_topic_is_named(kafka_bootstrap, topic_prefix):
    settings = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                               kafka_create_topics=False)
    with pytest.raises(MissingTopics) as caught:
        await ensure_topics(settings, [AFFECTED_RECORDS, INCIDENTS])
    assert caught.value.topics == [f"{topic_prefix}affected-records.v1", f"{topic_prefix}incidents.v1"]
    # Once the platform made them, the same check passes (and creates nothing itself).
    await ensure_topics(settings.model_copy(update={"kafka_create_topics": True}), [AFFECTED_RECORDS])
    for _ in range(60):  # a topic created a moment ago takes a while to show in the metadata
        with pytest.raises(MissingTopics) as caught:
            await ensure_topics(settings, [AFFECTED_RECORDS, INCIDENTS])
        if len(caught.value.topics) == 1:
            break
        await asyncio.sleep(0.5)
    assert caught.value.topics == [f"{topic_prefix}incidents.v1"]


@pytest.mark.postgres
def test_the_service_exits_non_zero_naming_the_topic(kafka_bootstrap, topic_prefix, pg_database,
                                                     data_keys):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANUI_")}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PANUI_TOPIC_PREFIX": topic_prefix,
            "PANUI_KAFKA_CREATE_TOPICS": "false", "DATABASE_URL": pg_database("intake"),
            "PANUI_DATA_KEYS": data_keys, "PANUI_PORT": "0"}
    result = subprocess.run([sys.executable, "-m", "services.intake"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"{topic_prefix}affected-records.v1" in result.stderr
    assert "PANUI_KAFKA_CREATE_TOPICS" in result.stderr
