"""The Privacy Commissioner's report (services/common/report.py) as a PDF suitable to send:
A4, reportlab, the same rows as the CSV — the whole incident, then each agency, then the dated
milestones — with a page header naming the incident and "page n of m" on every page, so a
printed page that comes loose is still placed. Pure: a Report in, PDF bytes out; `panui report
--format pdf` and the console's download (intake) both call it.

Nothing goes in that the Report does not hold: counts, dates, and agency ids (the only names
in it). Text is set with Paragraph markup escaped, so an agency id cannot inject markup.
"""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    KeepTogether,
    LongTable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus.flowables import Flowable

from services.common.pdffonts import FONT, FONT_BOLD, register_fonts
from services.common.report import Report, ReportCount

TITLE = "Privacy breach: report to the Privacy Commissioner"
# What each family of measures counts, and which service counted it (shown under the tables).
GLOSSARY = (
    ("records.*, feeds, rejected.<code>", "intake: records the agencies sent, accepted, unchanged, "
     "rejected (by the validation problem that rejected them) and withdrawn"),
    ("persons.*", "dedupe: the people the records resolved to, by state; dispatch: persons.notified"),
    ("held.<ground>", "dedupe: people whose notice is withheld under s 116, by ground"),
    ("reviews.*, amendments", "dedupe: possible matches decided by a person, and notices amended"),
    ("deliveries.<channel>.<status>", "dispatch: notices by channel (email, sms, post) and state"),
    ("unreachable", "dispatch: people no channel reached (for the s 115 public notice)"),
)


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=FONT, fontSize=9.5, leading=12.5)
    return {
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=8, leading=10,
                                textColor=colors.HexColor("#444444")),
        "title": ParagraphStyle("title", parent=base, fontName=FONT_BOLD, fontSize=16, leading=20,
                                spaceAfter=4 * mm),
        "h2": ParagraphStyle("h2", parent=base, fontName=FONT_BOLD, fontSize=12, leading=15,
                             spaceBefore=5 * mm, spaceAfter=2 * mm),
        "cell": ParagraphStyle("cell", parent=base, fontSize=9, leading=11),
        "number": ParagraphStyle("number", parent=base, fontSize=9, leading=11, alignment=TA_RIGHT),
        "head": ParagraphStyle("head", parent=base, fontName=FONT_BOLD, fontSize=9, leading=11),
        "head_number": ParagraphStyle("head_number", parent=base, fontName=FONT_BOLD, fontSize=9,
                                      leading=11, alignment=TA_RIGHT),
    }


_TABLE = TableStyle([
    ("FONT", (0, 0), (-1, -1), FONT, 9),
    ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
    ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.HexColor("#bbbbbb")),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ("TOPPADDING", (0, 0), (-1, -1), 2),
    ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
])


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], styles: dict,
           widths: tuple[float, ...], numbers_last: bool = False) -> LongTable:
    """A table of text; `numbers_last`: the last column holds numbers (right-aligned)."""
    last = len(header) - 1

    def style(i: int) -> ParagraphStyle:
        return styles["number"] if numbers_last and i == last else styles["cell"]

    cells = [[Paragraph(escape(h), styles["head_number" if numbers_last and i == last else "head"])
              for i, h in enumerate(header)]]
    cells += [[Paragraph(escape(text), style(i)) for i, text in enumerate(row)] for row in rows]
    table = LongTable(cells, colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(_TABLE)
    return table


def _counts_table(counts: list[ReportCount], styles: dict) -> Flowable:
    if not counts:
        return Paragraph("No counts.", styles["small"])
    return _table(("Measure", "Counted by", "Value"),
                  [(c.measure, c.service or "", f"{c.value:,}") for c in counts], styles,
                  (95 * mm, 30 * mm, 35 * mm), numbers_last=True)


def render_report_pdf(report: Report) -> bytes:
    """The report as a PDF (bytes)."""
    register_fonts()
    styles = _styles()
    incident = [c for c in report.counts if c.agency_id is None]
    by_agency: dict[str, list[ReportCount]] = defaultdict(list)
    for c in report.counts:
        if c.agency_id is not None:
            by_agency[c.agency_id].append(c)
    generated = report.generated_at.isoformat(timespec="seconds")
    story: list[Flowable] = [
        Paragraph(escape(TITLE), styles["title"]),
        Paragraph(f"Incident <b>{escape(report.incident_id)}</b>", styles["body"]),
        Paragraph(f"Generated {escape(generated)} from: {escape(', '.join(report.services))}",
                  styles["body"]),
        Paragraph("Counts and dates only: this report holds no personal information about any "
                  "person affected.", styles["small"]),
        Paragraph("The whole incident", styles["h2"]),
        _counts_table(incident, styles),
        Paragraph(f"Each agency ({len(by_agency)})", styles["h2"]),
    ]
    if not by_agency:
        story.append(Paragraph("No agency has sent records yet.", styles["small"]))
    for agency_id in sorted(by_agency):
        story.append(KeepTogether([
            Paragraph(f"Agency <b>{escape(agency_id)}</b>", styles["body"]), Spacer(1, 1.5 * mm),
            _counts_table(by_agency[agency_id], styles), Spacer(1, 4 * mm)]))
    story.append(Paragraph("Milestones", styles["h2"]))
    if report.milestones:
        story.append(_table(("When (UTC)", "Milestone"), [
            (m.at.isoformat(timespec="seconds"), m.milestone + (f" ({m.agency_id})" if m.agency_id else ""))
            for m in report.milestones], styles, (55 * mm, 105 * mm)))
    else:
        story.append(Paragraph("No milestones yet.", styles["small"]))
    story.append(Paragraph("What the measures count", styles["h2"]))
    story.append(_table(("Measure", "Counted by, and what"), list(GLOSSARY), styles, (55 * mm, 105 * mm)))

    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm,
                            topMargin=22 * mm, bottomMargin=18 * mm,
                            title=f"{TITLE} — {report.incident_id}", author="Pānui",
                            subject="Privacy Commissioner's report", creator="Pānui")
    header = f"Pānui — Privacy Commissioner's report — {report.incident_id}"

    def on_page(canvas: Any, _doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 8)
        canvas.drawString(20 * mm, A4[1] - 12 * mm, header)
        canvas.restoreState()

    doc.build(story, onFirstPage=on_page, onLaterPages=on_page, canvasmaker=_NumberedCanvas)
    return out.getvalue()


class _NumberedCanvas(Canvas):
    """Holds every page until the end so each can say "page n of m" (reportlab's recipe)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict] = []

    def showPage(self) -> None:  # noqa: N802 - reportlab's API
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for page in self._pages:
            self.__dict__.update(page)
            self.setFont(FONT, 8)
            self.drawRightString(A4[0] - 20 * mm, 10 * mm, f"page {self._pageNumber} of {total}")
            super().showPage()
        super().save()
