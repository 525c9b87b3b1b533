"""/metrics under several uvicorn workers (PANUI_WORKERS=2): a scrape reaches any one worker,
and every scrape must show the whole process group's counts (prometheus_client's multiprocess
mode, turned on by services.common.runtime.serve). Without it each worker reports only the
requests it served, and the scrapes below disagree with the requests made."""

import asyncio
import re
import uuid

import httpx
import pytest

from services.common.crypto import generate_key_spec
from testkit import infra
from testkit.processes import clean_environ, service_process

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

TOKEN = "workers-coordinator-token"  # noqa: S105 - test-only credential
REQUESTS = 40


def _count(text: str) -> float:
    found = re.search(r'^panui_http_requests_total\{method="GET",route="/v1/incidents",'
                      r'service="intake",status="200"\} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.timeout(300)
async def test_every_scrape_counts_the_requests_of_every_worker(tmp_path, kafka_bootstrap, pg_admin_url):
    name, url = infra.create_database(pg_admin_url, service="intake")
    prefix = f"workers-{uuid.uuid4().hex[:10]}."
    env = {**clean_environ(), "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PANUI_TOPIC_PREFIX": prefix,
           "PANUI_DATA_KEYS": generate_key_spec("workers1"), "PANUI_COORDINATOR_TOKENS": TOKEN,
           "DATABASE_URL": url, "PANUI_WORKERS": "2", "PANUI_LAG_MONITOR": "false"}
    intake = service_process("intake", infra.free_port(), env, tmp_path)
    intake.start()
    try:
        await intake.wait_up(timeout=120)
        # A new connection per request, so the kernel spreads them over both workers.
        for _ in range(REQUESTS):
            async with httpx.AsyncClient(timeout=30) as client:
                response = await client.get(f"{intake.url}/v1/incidents",
                                            headers={"authorization": f"Bearer {TOKEN}"})
                assert response.status_code == 200, response.text
        seen = []
        for _ in range(8):
            async with httpx.AsyncClient(timeout=30) as client:
                seen.append(_count((await client.get(f"{intake.url}/metrics")).text))
            await asyncio.sleep(0.05)
        assert seen == [REQUESTS] * len(seen), seen
    finally:
        intake.kill()
        await infra.delete_topics_with_prefix(kafka_bootstrap, prefix)
        infra.drop_database(pg_admin_url, name)
