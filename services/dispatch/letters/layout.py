"""One person's notice as a print-ready letter: A4, the address placed for a windowed DL
envelope, the same text and reference as the email (render_letter_text), standard or large
print. Pure: notice + incident content in, PDF bytes out (the console's preview calls it too).

Layout (millimetres from the sheet's top-left corner):
- the sheet is folded in three (Z-fold, 99 mm panels) into a DL envelope (220 x 110 mm) whose
  window is 90 x 45 mm, 20 mm from its left and 15 mm from its bottom edge. With the sheet's
  top panel at the back of the envelope, what shows through the window is ADDRESS_WINDOW below
  (inset by the few mm a folded sheet moves inside the envelope); only the addressee's name
  and address are printed there, nothing about the breach;
- the letter's text starts below the first fold; every page carries the reference and its
  page number, so a page that comes loose can still be matched to its letter.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import (
    BaseDocTemplate,
    Frame,
    KeepTogether,
    NextPageTemplate,
    PageTemplate,
    Paragraph,
    Spacer,
)

from services.common.pdffonts import FONT, FONT_BOLD, register_fonts
from services.dispatch.content.models import IncidentContent, Notice
from services.dispatch.content.render import RenderError, as_models, render_letter_text

PAGE_W, PAGE_H = A4


@dataclass(frozen=True)
class Rect:
    """A rectangle in mm from the sheet's top-left corner."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height


# What a DL window shows of the top panel (see the module doc): 90 x 45 mm at 20 mm from the
# left, 50 mm from the top of the envelope; the sheet sits up to ~5 mm lower, so the address
# is printed inside this rectangle with a margin on every side.
ADDRESS_WINDOW = Rect(left=20, top=50, width=90, height=40)
_ADDRESS_PAD = 4  # mm inside the window on each side
FOLD = 99  # mm: the first fold; the letter text starts below it



@dataclass(frozen=True)
class PrintSize:
    body: float  # pt
    heading: float
    address: float
    small: float


STANDARD = PrintSize(body=11, heading=13, address=11, small=8.5)
# Large print: 16 pt body at least (the usual large-print guidance); the address stays a size
# that fits the window, it is read by the postie.
LARGE = PrintSize(body=16, heading=19, address=11, small=11)


@dataclass(frozen=True)
class Letter:
    pdf: bytes
    pages: int
    reference_code: str
    language: str
    large_print: bool


def address_lines(notice: Notice) -> list[str]:
    """The window's lines: the addressee's name and postal address (the representative's when
    there is one). Refuses when there is no usable address."""
    address = notice.addressee_address
    if address is None:
        raise RenderError("addressee has no usable postal address")
    name = notice.addressee_name.strip()
    return ([name] if name else []) + address.lines()


# -------------------------------------------------------------------------- text -> flowables

_HEADING = re.compile(r"^[A-ZĀĒĪŌŪ0-9][A-ZĀĒĪŌŪ0-9 ,.'’()&/:-]{3,}$")


def _blocks(text: str) -> list[tuple[str, str]]:
    """(kind, text) blocks of the letter text: 'heading' (an upper-case line, as the email's
    text part marks them), 'bullet', 'subbullet' or 'para' (consecutive lines joined)."""
    blocks: list[tuple[str, str]] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(("para", "\n".join(para)))
            para.clear()

    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            flush()
        elif line.startswith("    - "):
            flush()
            blocks.append(("subbullet", line[6:].strip()))
        elif line.startswith("- "):
            flush()
            blocks.append(("bullet", line[2:].strip()))
        elif _HEADING.match(line.strip()) and any(c.isalpha() for c in line):
            flush()
            blocks.append(("heading", line.strip()))
        else:
            para.append(line.strip())
    flush()
    return blocks


def _styles(size: PrintSize) -> dict[str, ParagraphStyle]:
    lead = 1.35
    base = ParagraphStyle("body", fontName=FONT, fontSize=size.body, leading=size.body * lead,
                          spaceAfter=size.body * 0.6, textColor="#0b0c0c")
    return {
        "para": base,
        "heading": ParagraphStyle("heading", parent=base, fontName=FONT_BOLD,
                                  fontSize=size.heading, leading=size.heading * lead,
                                  spaceBefore=size.body * 0.8, spaceAfter=size.body * 0.4),
        "bullet": ParagraphStyle("bullet", parent=base, leftIndent=size.body * 1.6,
                                 bulletIndent=size.body * 0.4, spaceAfter=size.body * 0.25),
        "subbullet": ParagraphStyle("subbullet", parent=base, leftIndent=size.body * 3.2,
                                    bulletIndent=size.body * 2.0, spaceAfter=size.body * 0.2),
    }


def _flowables(text: str, size: PrintSize) -> list[Any]:
    styles = _styles(size)
    out: list[Any] = []
    pending_heading: list[Any] = []  # headings in a row (a title, then a section's) stay
    for kind, body in _blocks(text):
        markup = escape(body).replace("\n", "<br/>")
        if kind == "heading":
            pending_heading.append(Paragraph(markup, styles["heading"]))
            continue
        bullet = {"bullet": "•", "subbullet": "–"}.get(kind)
        para = Paragraph(markup, styles[kind], bulletText=bullet)
        if pending_heading:  # never a heading alone at the foot of a page
            out.append(KeepTogether([*pending_heading, para]))
            pending_heading = []
        else:
            out.append(para)
    out.extend(pending_heading)
    return out


# ------------------------------------------------------------------------------------ pages


def _draw_address(canvas: Any, lines: list[str], size: PrintSize) -> None:
    win = ADDRESS_WINDOW
    x = (win.left + _ADDRESS_PAD) * mm
    top = PAGE_H - (win.top + _ADDRESS_PAD) * mm
    canvas.setFont(FONT, size.small * 0.85 if size is STANDARD else 7.5)
    canvas.drawString(x, top - 7, "Private and confidential")
    leading = size.address * 1.25
    y = top - 7 - leading * 1.1
    canvas.setFont(FONT, size.address)
    for line in lines:
        canvas.drawString(x, y, line)
        y -= leading
    if PAGE_H - y > (win.bottom - _ADDRESS_PAD) * mm + leading:
        raise RenderError("postal address has too many lines for the envelope window")


def _draw_header(canvas: Any, sender: str, when: date, reference: str, size: PrintSize) -> None:
    right = PAGE_W - 20 * mm
    y = PAGE_H - 20 * mm
    canvas.setFont(FONT_BOLD, size.heading)
    canvas.drawRightString(right, y, sender)
    canvas.setFont(FONT, size.body)
    step = size.body * 1.4
    canvas.drawRightString(right, y - step * 1.3, f"{when.day} {when:%B %Y}")
    canvas.drawRightString(right, y - step * 2.3, f"Your reference: {reference}")


def _draw_footer(canvas: Any, reference: str, size: PrintSize) -> None:
    canvas.setFont(FONT, size.small)
    canvas.drawString(20 * mm, 12 * mm, f"Reference {reference}")
    canvas.drawRightString(PAGE_W - 20 * mm, 12 * mm, f"Page {canvas.getPageNumber()}")


def render_letter_pdf(
    notice: Notice | dict, incident: IncidentContent | dict, *, large_print: bool = False,
    letter_date: date,
) -> Letter:
    """The person's letter as a PDF. Raises RenderError (no personal data in the message) when
    the notice cannot be posted or its content fails the s 117 / safety checks."""
    notice, incident = as_models(notice, incident)
    text = render_letter_text(notice, incident)
    window = address_lines(notice)
    reference = notice.effective_reference_code
    size = LARGE if large_print else STANDARD
    register_fonts()

    def first_page(canvas: Any, _doc: Any) -> None:
        _draw_header(canvas, incident.sender_name, letter_date, reference, size)
        _draw_address(canvas, window, size)
        _draw_footer(canvas, reference, size)

    def later_page(canvas: Any, _doc: Any) -> None:
        _draw_footer(canvas, reference, size)

    out = io.BytesIO()
    margin = 20 * mm
    doc = BaseDocTemplate(
        out, pagesize=A4, leftMargin=margin, rightMargin=margin, topMargin=margin,
        bottomMargin=margin, title=f"Notice {reference}", author=incident.sender_name,
        lang="mi" if notice.preferred_language == "mi" else "en-NZ",
        invariant=True,  # byte-identical output for the same input: no timestamps or ids
    )
    body_w = PAGE_W - 2 * margin
    first = Frame(margin, margin, body_w, PAGE_H - (FOLD + 4) * mm - margin, id="first",
                  leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
    later = Frame(margin, margin, body_w, PAGE_H - 2 * margin, id="later",
                  leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
    doc.addPageTemplates([
        PageTemplate(id="first", frames=[first], onPage=first_page),
        PageTemplate(id="later", frames=[later], onPage=later_page),
    ])
    story: list[Any] = [NextPageTemplate("later"), *_flowables(text, size), Spacer(1, 1)]
    doc.build(story)
    return Letter(out.getvalue(), doc.page, reference, notice.preferred_language, large_print)
