"""Real tools that read rendered notices back, for tests: poppler (pdftotext, pdftoppm) for the
letters. scripts/notice-tools.sh installs them when missing (as `make test` does)."""

from __future__ import annotations

import functools
import html
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testkit.infra import REPO

MM = 72 / 25.4  # PDF points per millimetre


@functools.cache
def ensure_tools() -> None:
    if not all(shutil.which(t) for t in ("pdftotext", "pdftoppm", "chromium", "chromedriver")):
        subprocess.run([str(REPO / "scripts/notice-tools.sh")], check=True)
    missing = [t for t in ("pdftotext", "pdftoppm") if not shutil.which(t)]
    if missing:
        raise RuntimeError(f"not installed: {missing} (scripts/notice-tools.sh)")


def axe_path() -> Path:
    """axe-core's axe.min.js (installed under var/tools/axe when missing)."""
    subprocess.run([str(REPO / "scripts/notice-tools.sh")], check=True)
    out = subprocess.run([str(REPO / "scripts/notice-tools.sh"), "axe-path"], check=True,
                         capture_output=True, text=True).stdout.strip()
    return Path(out)


def pdf_text(pdf: bytes, first: int | None = None, last: int | None = None,
             layout: bool = False) -> str:
    """The PDF's text; `layout`: as laid out (a table's row on one line), not in reading blocks."""
    ensure_tools()
    args = ["pdftotext", "-enc", "UTF-8", *(["-layout"] if layout else [])]
    if first:
        args += ["-f", str(first)]
    if last:
        args += ["-l", str(last)]
    return subprocess.run([*args, "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


@dataclass(frozen=True)
class Word:
    page: int
    text: str
    x_min: float  # mm from the page's left edge
    y_min: float  # mm from the page's top edge
    x_max: float
    y_max: float

    @property
    def height(self) -> float:
        return self.y_max - self.y_min


_PAGE = re.compile(r"<page [^>]*>(.*?)</page>", re.S)
_WORD = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>')


def pdf_words(pdf: bytes) -> list[Word]:
    """Every word with its bounding box (pdftotext -bbox), in mm from the top-left corner."""
    ensure_tools()
    out = subprocess.run(["pdftotext", "-bbox", "-enc", "UTF-8", "-", "-"], input=pdf,
                         capture_output=True, check=True).stdout.decode()
    words = []
    for n, page in enumerate(_PAGE.findall(out), start=1):
        for x0, y0, x1, y1, text in _WORD.findall(page):
            words.append(Word(n, html.unescape(text), float(x0) / MM, float(y0) / MM,
                              float(x1) / MM, float(y1) / MM))
    return words


def pdf_page_png(pdf: bytes, page: int = 1, dpi: int = 100) -> bytes:
    """One page as a PNG (pdftoppm)."""
    ensure_tools()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.pdf"
        src.write_bytes(pdf)
        subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", str(page), "-l", str(page),
                        "-singlefile", str(src), str(Path(tmp) / "out")], check=True)
        return (Path(tmp) / "out.png").read_bytes()
