"""`panui feed submit` against a real intake (uvicorn in a thread, real PostgreSQL and Kafka)."""

import csv
import json

import psycopg
import pytest
from typer.testing import CliRunner

from services.cli.main import app
from testkit.factories import affected_record, ndjson
from tests.intake.api.server import serve_intake

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

runner = CliRunner()


@pytest.fixture(scope="module")
def served(pg_admin_url, kafka_bootstrap, data_keys):  # noqa: ANN001, ANN201
    with serve_intake(pg_admin_url, kafka_bootstrap, data_keys, agency_requests_per_minute=100_000) as intake:
        yield intake


def _submit(served, path, incident, key, *extra):  # noqa: ANN001, ANN202
    env = {"PANUI_API_KEY": key} if key else {"PANUI_API_KEY": ""}
    return runner.invoke(app, ["feed", "submit", str(path), "--incident", incident, "--url", served.url,
                               *extra], env=env)


def _versions(served, incident_id):  # noqa: ANN001, ANN202
    with psycopg.connect(served.database_url) as conn:
        return conn.execute("SELECT source_record_id, version FROM affected_record WHERE incident_id = %s "
                            "ORDER BY 1, 2", (incident_id,)).fetchall()


def test_ndjson_upload_in_chunks(served, tmp_path):
    incident_id, keys = served.new_incident()
    path = tmp_path / "feed.ndjson"
    path.write_bytes(ndjson([affected_record(f"n-{i:03d}") for i in range(25)]))
    result = _submit(served, path, incident_id, next(iter(keys.values())), "--chunk-records", "10")
    assert result.exit_code == 0, result.output
    assert "Feed summary" in result.stdout
    row = [line for line in result.stdout.splitlines() if "25" in line]
    assert row, result.stdout
    assert len(_versions(served, incident_id)) == 25
    with psycopg.connect(served.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM feed WHERE incident_id = %s",
                            (incident_id,)).fetchone()[0] == 3
    assert not (tmp_path / "feed.problems.csv").exists()


def test_csv_problems_carry_the_original_line_numbers(served, tmp_path):
    incident_id, keys = served.new_incident()
    lines = ["source_record_id,given_names,family_name,nhi,date_of_birth,address_line1"]
    expected: dict[int, set[str]] = {}
    for i in range(12):
        line_no = sum(line.count("\n") + 1 for line in lines) + 1  # physical line of this record
        if i == 3:
            lines.append(f"c-{i},Aroha,Test,ZZZ0017,01/02/1990,")  # bad check digit: warning
            expected[line_no] = {"nhi.check_failed"}
        elif i == 5:
            # A quoted field spanning two physical lines (a newline in an address line is
            # export damage: rejected), then a record with no name.
            lines.append(f'c-{i},Mere,Test,ZZZ0016,01/02/1990,"1 Long Road\nRD 2"')
            lines.append("c-5b,,,ZZZ0024,,")
            expected[line_no] = {"text.control_characters"}
            expected[line_no + 2] = {"record.no_name"}
        elif i == 9:
            lines.append(f"c-{i},Hemi,Test,,31/02/1990,")  # impossible date, then unreachable
            expected[line_no] = {"date_of_birth.impossible", "record.unreachable"}
        else:
            lines.append(f"c-{i},Tester,Test,ZZZ0016,01/02/1990,")
    path = tmp_path / "agency export.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    problems = tmp_path / "out" / "problems.csv"
    problems.parent.mkdir()
    result = _submit(served, path, incident_id, next(iter(keys.values())), "--chunk-records", "4",
                     "--problems", str(problems))
    assert result.exit_code == 1, result.output  # some records were rejected
    assert "rejected" in result.output
    with problems.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["line", "source_record_id", "field", "severity", "code", "message"]
    got: dict[int, set[str]] = {}
    for r in rows:
        got.setdefault(int(r["line"]), set()).add(r["code"])
    assert got == expected
    # Original lines point at the records as the agency sees them in the file.
    file_lines = path.read_bytes().decode().replace("\r\n", "\n").split("\n")
    for r in rows:
        if r["source_record_id"]:
            assert file_lines[int(r["line"]) - 1].startswith(r["source_record_id"] + ",")
    assert len(_versions(served, incident_id)) == 10  # 13 records less 3 rejected


def test_problems_csv_is_formula_safe(served, tmp_path):
    incident_id, keys = served.new_incident()
    path = tmp_path / "feed.csv"
    # A source_record_id a spreadsheet would run as a formula, on a record with no name.
    path.write_text('source_record_id,given_names,nhi\r\n"=HYPERLINK(""x"")",,ZZZ0016\r\n')
    problems = tmp_path / "problems.csv"
    result = _submit(served, path, incident_id, next(iter(keys.values())), "--problems", str(problems))
    assert result.exit_code == 1, result.output
    with problems.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["source_record_id"] for r in rows} == {"'=HYPERLINK(\"x\")"}


def test_resume_after_interruption_sends_no_duplicates(served, tmp_path):
    incident_id, keys = served.new_incident()
    key = next(iter(keys.values()))
    path = tmp_path / "big.ndjson"
    path.write_bytes(ndjson([affected_record(f"r-{i:03d}", given_names=f"T{i}") for i in range(35)]))
    first = _submit(served, path, incident_id, key, "--chunk-records", "10", "--stop-after-chunks", "2")
    assert first.exit_code == 3, first.output
    assert "re-run" in first.output
    state_path = tmp_path / "big.ndjson.panui-state.json"
    state = json.loads(state_path.read_text())
    assert sorted(state["chunks"]) == ["0", "1"]
    assert len(_versions(served, incident_id)) == 20

    # Simulate dying after intake acknowledged chunk 1 but before the state file was saved:
    # the re-run sends chunk 1 again, and its Idempotency-Key replays the stored receipt.
    del state["chunks"]["1"]
    state_path.write_text(json.dumps(state))
    second = _submit(served, path, incident_id, key, "--chunk-records", "10")
    assert second.exit_code == 0, second.output
    versions = _versions(served, incident_id)
    assert len(versions) == 35 and all(v == 1 for _, v in versions)
    with psycopg.connect(served.database_url) as conn:
        feeds = conn.execute("SELECT accepted, unchanged FROM feed WHERE incident_id = %s",
                             (incident_id,)).fetchall()
    assert len(feeds) == 4 and sum(a for a, _ in feeds) == 35 and sum(u for _, u in feeds) == 0
    summary = [line for line in second.stdout.splitlines() if "│" in line][-1]
    cells = [c.strip() for c in summary.split("│") if c.strip()]
    assert cells == ["4", "35", "35", "0", "0", "0", "0"]  # chunks, received, accepted, ...

    # A third run with everything acknowledged sends nothing and reports the same totals.
    third = _submit(served, path, incident_id, key, "--chunk-records", "10")
    assert third.exit_code == 0
    with psycopg.connect(served.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM feed WHERE incident_id = %s",
                            (incident_id,)).fetchone()[0] == 4


def test_missing_api_key_is_a_usage_error(served, tmp_path):
    path = tmp_path / "feed.ndjson"
    path.write_bytes(ndjson([affected_record("x")]))
    result = _submit(served, path, "inc-x", None)
    assert result.exit_code == 2
    assert "PANUI_API_KEY" in result.output


def test_unknown_extension_needs_format(served, tmp_path):
    path = tmp_path / "feed.txt"
    path.write_bytes(ndjson([affected_record("x")]))
    result = _submit(served, path, "inc-x", "pk_x.y")
    assert result.exit_code == 2
    assert "--format" in result.output


def test_wrong_key_fails_clearly(served, tmp_path):
    incident_id, _ = served.new_incident()
    path = tmp_path / "feed.ndjson"
    path.write_bytes(ndjson([affected_record("x")]))
    result = _submit(served, path, incident_id, "pk_0000.wrong")
    assert result.exit_code == 3
    assert "auth.invalid" in result.output
