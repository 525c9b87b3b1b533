"""`panui incident close` against a real intake (uvicorn in a thread, real PostgreSQL and
Kafka): closes once, says when the purge is due, and refuses clearly without a token or for an
incident that does not exist."""

import psycopg
import pytest
from typer.testing import CliRunner

from services.cli.main import app
from tests.conftest import COORDINATOR_TOKEN
from tests.intake.api.server import serve_intake

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

runner = CliRunner()


def _close(url: str, incident: str, token: str) -> object:
    return runner.invoke(app, ["incident", "close", incident, "--url", url],
                         env={"PANUI_COORDINATOR_TOKEN": token})


def test_close_then_close_again_then_refusals(pg_admin_url, kafka_bootstrap, data_keys):
    with serve_intake(pg_admin_url, kafka_bootstrap, data_keys, purge_after_s=3600) as served:
        incident_id, _keys = served.new_incident()
        first = _close(served.url, incident_id, COORDINATOR_TOKEN)
        assert first.exit_code == 0, first.output
        assert f"{incident_id}: closed at " in first.output and "purged after" in first.output
        again = _close(served.url, incident_id, COORDINATOR_TOKEN)
        assert again.exit_code == 0 and again.output == first.output  # the first close stands
        with psycopg.connect(served.database_url) as conn:
            closed_at, purge_after, purged_at = conn.execute(
                "SELECT closed_at, purge_after, purged_at FROM incident WHERE incident_id = %s",
                (incident_id,)).fetchone()
            events = conn.execute("SELECT action, actor FROM retention_event WHERE incident_id = %s",
                                  (incident_id,)).fetchall()
            audited = conn.execute("SELECT action FROM audit_log WHERE incident_id = %s "
                                   "AND action = 'incident.close'", (incident_id,)).fetchall()
        assert len(audited) == 1  # the close that closed it, not the second
        assert (purge_after - closed_at).total_seconds() == 3600 and purged_at is None
        assert [(a, actor.startswith("coordinator:")) for a, actor in events] == [("closed", True)]

        missing = _close(served.url, "inc-nope", COORDINATOR_TOKEN)
        assert missing.exit_code == 1 and "404 incident.not_found" in missing.output
        wrong = _close(served.url, incident_id, "not-a-token")
        assert wrong.exit_code == 1 and "401" in wrong.output
    no_token = _close("http://127.0.0.1:9", incident_id, "")
    assert no_token.exit_code == 2 and "PANUI_COORDINATOR_TOKEN" in no_token.output
