"""`panui report`: clear errors and exit codes without running services; the combined report
itself (three live services) is tested in tests/integration/test_beyond_the_notice.py, and its
CSV here."""

import csv
import io
from datetime import UTC, datetime

from typer.testing import CliRunner

from services.cli.main import app
from services.common.report import ReportMilestone, ServiceReport, combine, counts_of, report_csv
from testkit.infra import free_port

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_report_needs_a_coordinator_token(monkeypatch):
    monkeypatch.delenv("PANUI_COORDINATOR_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["report", "-i", "inc-1"])
    assert result.exit_code == 2 and "PANUI_COORDINATOR_TOKEN" in result.output


def test_report_says_which_service_cannot_be_reached(monkeypatch):
    monkeypatch.setenv("PANUI_COORDINATOR_TOKEN", "t")
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["report", "-i", "inc-1", "--intake-url", url])
    assert result.exit_code == 3 and "intake could not be reached" in result.output


def test_the_csv_is_formula_safe_and_combines_only_one_incident():
    part = ServiceReport(service="intake", incident_id="inc-1", generated_at=NOW,
                         counts=counts_of({"records.received": 3},
                                          {"=HYPERLINK(1)": {"records.received": 3}}),
                         milestones=[])
    rows = list(csv.reader(io.StringIO(report_csv(combine([part], NOW)))))
    assert ["inc-1", "count", "'=HYPERLINK(1)", "records.received", "3", "intake"] in rows
    assert ["inc-1", "count", "", "records.received", "3", "intake"] in rows
    other = part.model_copy(update={"incident_id": "inc-2"})
    try:
        combine([part, other], NOW)
    except ValueError as exc:
        assert "one incident" in str(exc)
    else:
        raise AssertionError("two incidents combined")


def test_each_csv_row_names_the_service_that_counted_it():
    """Two services count persons.notified (dedupe's released, dispatch's received): without
    the service column the CSV had two rows nobody could tell apart."""
    dedupe = ServiceReport(service="dedupe", incident_id="inc-1", generated_at=NOW,
                           counts=counts_of({"persons.notified": 2}, {}),
                           milestones=[ReportMilestone(agency_id=None, milestone="release", at=NOW)])
    dispatch = ServiceReport(service="dispatch", incident_id="inc-1", generated_at=NOW,
                             counts=counts_of({"persons.notified": 1}, {}), milestones=[])
    rows = list(csv.reader(io.StringIO(report_csv(combine([dedupe, dispatch], NOW)))))
    assert rows[0] == ["incident_id", "section", "agency_id", "measure", "value", "service"]
    assert ["inc-1", "count", "", "persons.notified", "2", "dedupe"] in rows
    assert ["inc-1", "count", "", "persons.notified", "1", "dispatch"] in rows
    assert ["inc-1", "milestone", "", "release", NOW.isoformat(), "dedupe"] in rows
