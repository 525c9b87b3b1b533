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
from testkit.staff import token as staff_token
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


def test_issued_through_intake_the_issuance_is_on_record(pg_admin_url, kafka_bootstrap, data_keys):  # noqa: ANN001
    """`panui token issue --url` asks intake, which records who issued what to whom (roles,
    incidents, lifetime, token id — never the token); a scoped coordinator cannot issue beyond
    its own incidents, a reviewer cannot issue at all; offline minting warns that it is on no
    record."""
    with serve_intake(pg_admin_url, kafka_bootstrap, data_keys, token_signing_key=SIGNING_KEY) as intake:
        incident_id, _keys = intake.new_incident(1)
        args = ["token", "issue", "--json", "--url", intake.url, "--name", "rita", "--role", "reviewer",
                "--role", "call-centre", "--incident", incident_id, "--ttl", "2h"]
        result = runner.invoke(cli, args, env={"PANUI_TOKEN": COORDINATOR_TOKEN})
        assert result.exit_code == 0, result.output
        assert "NO audit log" not in result.output
        rita = json.loads(result.stdout)
        assert rita["claims"]["sub"] == "rita" and rita["claims"]["incidents"] == [incident_id]
        assert rita["claims"]["roles"] == ["call-centre", "reviewer"]
        assert rita["claims"]["exp"] - rita["claims"]["iat"] == 7200
        # The issued token works (a reviewer reads the incident).
        seen = httpx.get(f"{intake.url}/v1/incidents/{incident_id}",
                         headers={"authorization": f"Bearer {rita['token']}"}, timeout=30)
        assert seen.status_code == 200

        audit = runner.invoke(cli, ["audit", "--url", intake.url, "--json"],
                              env={"PANUI_TOKEN": COORDINATOR_TOKEN})
        assert audit.exit_code == 0, audit.output
        entries = [json.loads(line) for line in audit.stdout.splitlines()]
        issued = [e for e in entries if e["action"] == "token.issue"]
        assert [(e["actor"], e["actor_kind"], e["incident_id"]) for e in issued] == [
            ("configured", "coordinator", incident_id)]
        assert issued[0]["object_ids"] == [
            rita["claims"]["jti"], "principal:rita", "role:call-centre", "role:reviewer",
            f"incident:{incident_id}", "ttl_s:7200"]
        assert rita["token"].split(".")[2] not in audit.stdout  # never the token itself

        # A coordinator scoped to this incident: may delegate within it, not beyond it.
        cora, _ = staff_token(["coordinator"], [incident_id], name="cora")
        headers = {"authorization": f"Bearer {cora}"}
        body = {"name": "x", "roles": ["ops"], "ttl_s": 60}
        within = httpx.post(f"{intake.url}/v1/tokens", json={**body, "incidents": [incident_id]},
                            headers=headers, timeout=30)
        assert within.status_code == 201, within.text
        for beyond in ([incident_id, "inc-other"], None):
            refused = httpx.post(f"{intake.url}/v1/tokens", json={**body, "incidents": beyond},
                                 headers=headers, timeout=30)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "auth.forbidden"
        reviewer = httpx.post(f"{intake.url}/v1/tokens", json={**body, "incidents": [incident_id]},
                              headers={"authorization": f"Bearer {rita['token']}"}, timeout=30)
        assert reviewer.status_code == 403
        bad = httpx.post(f"{intake.url}/v1/tokens", json={**body, "roles": ["root"]},
                         headers={"authorization": f"Bearer {COORDINATOR_TOKEN}"}, timeout=30)
        assert bad.status_code == 422
        with psycopg.connect(intake.database_url, autocommit=True) as conn:
            actors = conn.execute("SELECT actor, object_ids FROM audit_log WHERE action = 'token.issue'"
                                  " ORDER BY id").fetchall()
        assert [(a, o[0]) for a, o in actors] == [("configured", rita["claims"]["jti"]),
                                                  ("cora", within.json()["claims"]["jti"])]

    offline = runner.invoke(cli, ["token", "issue", "--name", "x", "--role", "ops", "--all-incidents"],
                            env=ENV)
    assert offline.exit_code == 0 and "NO audit log" in offline.stderr
