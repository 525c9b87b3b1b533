"""`panui resolve` (services/cli/resolve.py), driven through typer as main.py will register it."""
import csv
import json

import pytest
import typer
from typer.testing import CliRunner

from services.cli.resolve import resolve_command

pytest.importorskip("services.intake.validation")

app = typer.Typer()
app.command()(resolve_command)
app.command("noop")(lambda: None)  # two commands, so 'resolve' is addressed by name as in main.py

RECORDS = [
    {"agency_id": "gp-1", "source_record_id": "a1", "nhi": "ZZZ0016", "given_names": "Wiremu",
     "family_name": "Te Whata", "date_of_birth": "1980-03-04", "mobile": "+64211234567"},
    {"agency_id": "lab-1", "source_record_id": "b7", "given_names": "William",
     "family_name": "Te Whata", "date_of_birth": "1980-03-04", "mobile": "+64211234567"},
    {"agency_id": "gp-1", "source_record_id": "a2", "given_names": "Hine",
     "family_name": "Te Whata", "date_of_birth": "1980-03-04", "mobile": "+64211234567"},
    # Warnings only: bad NHI check digit, not a mobile, malformed email, impossible date.
    {"agency_id": "hosp-1", "source_record_id": "c3", "nhi": "ZZZ0017", "given_names": "Mere",
     "family_name": "Parata", "date_of_birth": "1990-02-30", "mobile": "+6480012345",
     "email": "not-an-email", "address": {"line1": "1 Rimu Street", "postcode": "6011"}},
]


def write_feed(tmp_path, lines):
    path = tmp_path / "in.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(tmp_path, lines, review=True):
    feed = write_feed(tmp_path, lines)
    args = ["resolve-command", str(feed), "--out", str(tmp_path / "out.csv")]
    if review:
        args += ["--review", str(tmp_path / "review.csv")]
    result = CliRunner().invoke(app, args)
    return result


def read_csv(path):
    with path.open(encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_writes_one_row_per_record_with_header(tmp_path):
    result = run(tmp_path, [json.dumps(r) for r in RECORDS])
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "out.csv")
    assert rows[0] == ["agency_id", "source_record_id", "person_id"]
    people = {(a, s): p for a, s, p in rows[1:]}
    assert set(people) == {("gp-1", "a1"), ("lab-1", "b7"), ("gp-1", "a2"), ("hosp-1", "c3")}
    assert people[("gp-1", "a1")] == people[("lab-1", "b7")]  # Wiremu ~ William
    assert people[("gp-1", "a2")] != people[("gp-1", "a1")]  # Hine: same household, other person
    assert read_csv(tmp_path / "review.csv")[0][0] == "a_agency_id"


def test_field_warnings_keep_the_record(tmp_path):
    result = run(tmp_path, [json.dumps(RECORDS[3])])
    assert result.exit_code == 0, result.output
    assert len(read_csv(tmp_path / "out.csv")) == 2
    assert "warning: line 1" in result.output


def test_bad_lines_are_reported_with_line_numbers_and_the_run_continues(tmp_path):
    lines = [json.dumps(RECORDS[0]), "{not json", json.dumps({**RECORDS[1], "agency_id": None}),
             json.dumps({"agency_id": "gp-9", "nhi": "ZZZ0016"}), json.dumps(RECORDS[2])]
    result = run(tmp_path, lines)
    assert result.exit_code == 1
    assert "line 2:" in result.output and "line 3:" in result.output and "line 4:" in result.output
    assert len(read_csv(tmp_path / "out.csv")) == 3  # header + the two good lines
    assert "ZZZ0016" not in result.output  # no personal values in messages


def test_same_input_same_output(tmp_path):
    lines = [json.dumps(r) for r in RECORDS]
    run(tmp_path, lines)
    first = (tmp_path / "out.csv").read_bytes(), (tmp_path / "review.csv").read_bytes()
    run(tmp_path, list(reversed(lines)))
    assert ((tmp_path / "out.csv").read_bytes(), (tmp_path / "review.csv").read_bytes()) == first
