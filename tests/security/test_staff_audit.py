"""Named staff and the audit log, through the `panui` command against a real intake: a token is
issued, does privileged acts that land in the audit log with its name, is revoked (and then
refused), and the log is append-only in the database itself."""

import json

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from services.cli.main import app as cli
from testkit.staff import SIGNING_KEY
from tests.conftest import COORDINATOR_TOKEN
from tests.intake.api.server import serve_intake

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

runner = CliRunner()
ENV = {"PANUI_TOKEN_SIGNING_KEY": SIGNING_KEY}


def issue(*args: str) -> dict:
    result = runner.invoke(cli, ["token", "issue", "--json", *args], env=ENV)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_issue_act_audit_revoke(pg_admin_url, kafka_bootstrap, data_keys):  # noqa: ANN001
    with serve_intake(pg_admin_url, kafka_bootstrap, data_keys, token_signing_key=SIGNING_KEY) as intake:
        incident_id, keys = intake.new_incident(1)  # as the configured coordinator
        agency_id = next(iter(keys))
        cora = issue("--name", "cora", "--role", "coordinator", "--all-incidents", "--ttl", "1h")
        headers = {"authorization": f"Bearer {cora['token']}"}
        assert cora["claims"]["sub"] == "cora" and cora["claims"]["incidents"] == ["*"]
        key = httpx.post(f"{intake.url}/v1/agencies/{agency_id}/keys", headers=headers, timeout=30)
        assert key.status_code == 201
        revoked_key = httpx.delete(f"{intake.url}/v1/agencies/{agency_id}/keys/{key.json()['key_id']}",
                                   headers=headers, timeout=30)
        assert revoked_key.status_code == 204

        audit = runner.invoke(cli, ["audit", "--url", intake.url, "--json"],
                              env={"PANUI_TOKEN": cora["token"]})
        assert audit.exit_code == 0, audit.output
        entries = [json.loads(line) for line in audit.stdout.splitlines()]
        assert [(e["actor"], e["action"], e["incident_id"]) for e in entries] == [
            ("configured", "incident.create", incident_id),
            ("cora", "key.issue", None),
            ("cora", "key.revoke", None),
        ]
        assert entries[1]["object_ids"] == entries[2]["object_ids"] == [
            f"{agency_id}/{key.json()['key_id']}"]
        # Ids only: the key's secret is nowhere in the log.
        assert key.json()["api_key"].split(".")[1] not in audit.stdout

        # Revoked in intake (the only service here; the others do not answer: exit 1).
        revoke = runner.invoke(cli, ["token", "revoke", cora["claims"]["jti"], "--url", intake.url,
                                     "--url", "http://127.0.0.1:9"],
                               env={"PANUI_TOKEN": COORDINATOR_TOKEN})
        assert revoke.exit_code == 1
        assert f"{intake.url}: revoked" in revoke.output and "did not answer" in revoke.output
        refused = httpx.get(f"{intake.url}/v1/incidents/{incident_id}", headers=headers, timeout=30)
        assert refused.status_code == 401
        last = runner.invoke(cli, ["audit", "--url", intake.url], env={"PANUI_TOKEN": COORDINATOR_TOKEN})
        assert "configured  token.revoke" in last.stdout.splitlines()[-1].replace("coordinator:", "")

        # Append-only in the database: no update, delete or truncate of its rows.
        with psycopg.connect(intake.database_url, autocommit=True) as conn:
            for statement in ("UPDATE audit_log SET actor = 'someone-else'", "DELETE FROM audit_log",
                              "TRUNCATE audit_log"):
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    conn.execute(statement)
            assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 4


def test_issue_refuses_without_a_key_or_a_scope():
    no_key = runner.invoke(cli, ["token", "issue", "--name", "x", "--role", "ops", "--all-incidents"],
                           env={"PANUI_TOKEN_SIGNING_KEY": ""})
    assert no_key.exit_code == 2 and "PANUI_TOKEN_SIGNING_KEY" in no_key.output
    no_scope = runner.invoke(cli, ["token", "issue", "--name", "x", "--role", "ops"], env=ENV)
    assert no_scope.exit_code == 2 and "--all-incidents" in no_scope.output
    bad_role = runner.invoke(cli, ["token", "issue", "--name", "x", "--role", "root",
                                   "--all-incidents"], env=ENV)
    assert bad_role.exit_code == 2 and "roles must be among" in bad_role.output
    too_long = runner.invoke(cli, ["token", "issue", "--name", "x", "--role", "ops",
                                   "--all-incidents", "--ttl", "90d"], env=ENV)
    assert too_long.exit_code == 2
