"""A mail-out pack for a print house: one PDF holding a batch's letters, and a manifest CSV
(formula-safe) saying which pages are whose letter and where it goes.

Every letter starts on an odd page (a blank back page, marked as such, is added after a letter
with an odd number of pages), so printing the pack double-sided never puts two people's
letters on one sheet.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from services.common.csvsafe import SafeWriter
from services.dispatch.letters import layout

MANIFEST_COLUMNS = [
    "sequence", "first_page", "pages", "sheets", "reference_code", "notice_id", "language",
    "large_print", "addressee_name", "address_line1", "address_line2", "address_line3",
    "address_line4",
]


@dataclass(frozen=True)
class PackedLetter:
    notice_id: str
    letter: layout.Letter
    addressee_name: str
    address: list[str]  # the postal address's lines, without the name


@dataclass(frozen=True)
class Pack:
    pdf: bytes
    manifest_csv: str
    letters: int
    pages: int


def _blank_back_page() -> PdfReader:
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, invariant=True)
    canvas.setFont("Helvetica", 8)
    canvas.drawCentredString(A4[0] / 2, 40, "This page is intentionally blank.")
    canvas.showPage()
    canvas.save()
    return PdfReader(io.BytesIO(out.getvalue()))


def build_pack(letters: Iterable[PackedLetter]) -> Pack:
    writer = PdfWriter()
    blank = _blank_back_page()
    manifest = io.StringIO()
    csv = SafeWriter(manifest, lineterminator="\r\n")
    csv.writerow(MANIFEST_COLUMNS)
    page = 1
    count = 0
    for count, item in enumerate(letters, start=1):
        writer.append(PdfReader(io.BytesIO(item.letter.pdf)))
        pages = item.letter.pages
        if pages % 2:
            writer.add_page(blank.pages[0])
        lines = (item.address + [""] * 4)[:4]
        csv.writerow([
            count, page, pages, (pages + 1) // 2, item.letter.reference_code, item.notice_id,
            item.letter.language, "yes" if item.letter.large_print else "no", item.addressee_name,
            *lines,
        ])
        page += pages + pages % 2
    # The letters embed the same fonts: keep one copy of each identical object.
    writer.compress_identical_objects(remove_duplicates=True, remove_unreferenced=True)
    out = io.BytesIO()
    writer.write(out)
    return Pack(out.getvalue(), manifest.getvalue(), count, page - 1)
