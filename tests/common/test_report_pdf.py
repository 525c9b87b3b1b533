"""The Privacy Commissioner's report as a PDF (services/common/report_pdf.py), read back with
poppler (pdftotext, pdftoppm): every count and milestone of the report is in it, agency ids
with macrons and markup come out as written, long reports page with "page n of m" on each
page; and `panui report --format pdf` refuses to write a PDF to the terminal. The PDF of a
real incident's report (three live services, no personal data in it) is checked in
tests/integration/test_beyond_the_notice.py."""

import io
import re
from datetime import UTC, datetime, timedelta

from pypdf import PdfReader
from typer.testing import CliRunner

from services.cli.main import app
from services.common.report import ReportMilestone, ServiceReport, combine, counts_of
from services.common.report_pdf import render_report_pdf
from testkit.rendering import pdf_page_png, pdf_text

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
AGENCIES = [f"gp-{i:02d}-kōwhai" for i in range(40)] + ["<b>lab</b> & co"]


def _report():
    intake = ServiceReport(
        service="intake", incident_id="inc-pdf", generated_at=NOW,
        counts=counts_of({"records.received": 123_456, "records.rejected": 78},
                         {a: {"records.received": 1000 + i, "rejected.nhi.checksum": i}
                          for i, a in enumerate(AGENCIES)}),
        milestones=[ReportMilestone(agency_id=None, milestone="incident.created", at=NOW),
                    ReportMilestone(agency_id=AGENCIES[3], milestone="feed.first",
                                    at=NOW + timedelta(hours=2))])
    dispatch = ServiceReport(
        service="dispatch", incident_id="inc-pdf", generated_at=NOW,
        counts=counts_of({"deliveries.email.delivered": 9_876, "unreachable": 5}, {}),
        milestones=[ReportMilestone(agency_id=None, milestone="deliveries.first_sent",
                                    at=NOW + timedelta(days=1))])
    return combine([intake, dispatch], NOW + timedelta(days=2))


def test_every_count_and_milestone_is_in_the_pdf():
    report = _report()
    pdf = render_report_pdf(report)
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf, layout=True)
    words = " ".join(text.split())
    assert "report to the Privacy Commissioner" in words and "inc-pdf" in words
    assert "Generated 2026-12-03T09:00:00+00:00 from: intake, dispatch" in words
    # Each count with the service that counted it (combine says which).
    assert "records.received intake 123,456" in words
    assert "deliveries.email.delivered dispatch 9,876" in words
    # Each agency's block: its id (macrons intact, markup as text) and its own counts.
    for i, agency in enumerate(AGENCIES):
        block = words.split(f"Agency {agency}", 1)
        assert len(block) == 2, agency
        assert f"records.received intake {1000 + i:,}" in block[1][:200], agency
    for milestone in ("incident.created", f"feed.first ({AGENCIES[3]})", "deliveries.first_sent"):
        assert milestone in words
    assert "2026-12-02T09:00:00+00:00" in words


def test_a_long_report_numbers_its_pages_and_draws_them():
    pdf = render_report_pdf(_report())
    pages = len(PdfReader(io.BytesIO(pdf)).pages)
    assert pages >= 3  # 41 agencies do not fit on two
    for page in range(1, pages + 1):
        text = pdf_text(pdf, first=page, last=page, layout=True)
        assert f"page {page} of {pages}" in text
        assert "Privacy Commissioner's report — inc-pdf" in text
    image = pdf_page_png(pdf, 1, dpi=40)
    assert image.startswith(b"\x89PNG") and len(image) > 2_000  # a drawn page, not a blank one


def test_an_empty_report_says_so():
    empty = combine([ServiceReport(service="intake", incident_id="inc-0", generated_at=NOW,
                                   counts=[], milestones=[])], NOW)
    words = " ".join(pdf_text(render_report_pdf(empty), layout=True).split())
    assert "No counts." in words and "No agency has sent records yet." in words
    assert "No milestones yet." in words and re.search(r"page 1 of 1\b", words)


def test_the_cli_writes_a_pdf_only_to_a_file(monkeypatch):
    monkeypatch.setenv("PANUI_COORDINATOR_TOKEN", "t")
    result = CliRunner().invoke(app, ["report", "-i", "inc-1", "--format", "pdf"])
    assert result.exit_code == 2 and "--out" in result.output
