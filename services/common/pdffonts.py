"""The fonts every PDF Pānui makes uses (the letters, the Privacy Commissioner's report):
DejaVu Sans, vendored in fonts/ (licence there), because reportlab's standard PDF fonts have no
macrons (ā ē ī ō ū) and te reo names and agency names carry them."""

from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT_DIR = Path(__file__).with_name("fonts")
FONT, FONT_BOLD = "PanuiSans", "PanuiSans-Bold"


def register_fonts() -> None:
    """Register FONT and FONT_BOLD with reportlab once per process."""
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT, str(FONT_DIR / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont(FONT_BOLD, str(FONT_DIR / "DejaVuSans-Bold.ttf")))
