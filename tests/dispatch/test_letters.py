"""Letters for people reached by post (issue 17), read back from the real PDF with poppler:
the same content and reference as the email, the address inside a DL envelope's window, large
print, and the print house's pack (one PDF, every letter on its own sheets, a safe manifest)."""

import csv
import io
import re
from datetime import date
from statistics import median

import pytest
from PIL import Image

from services.dispatch.content.render import RenderError, render_email, render_letter_text
from services.dispatch.letters import layout
from services.dispatch.letters.pack import PackedLetter, build_pack
from testkit.infra import REPO
from testkit.rendering import pdf_page_png, pdf_text, pdf_words

from .conftest import make_notice

DAY = date(2026, 12, 2)
ARTIFACTS = REPO / "var" / "artifacts"


def _postal_notice(n: int = 1, **overrides) -> dict:
    notice = make_notice(n, **overrides)
    notice["recipient"] = notice["recipient"] | {"email": None, "mobile": None}
    return notice


def _words(text: str) -> list[str]:
    return re.findall(r"\w[\w'’/-]*(?:\.[\w/]+)*", text)  # bullets are not words


def _is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(w == h for h in it) for w in needle)


def test_the_letter_says_what_the_email_says_with_the_same_reference(incident):
    notice = _postal_notice()
    letter = layout.render_letter_pdf(notice, incident, letter_date=DAY)
    text = pdf_text(letter.pdf)
    email = render_email(make_notice(), incident)
    assert letter.reference_code == email.reference_code
    # Every word of the email's text part, in the same order (headers, footers and bullets
    # around them are the letter's own).
    body = render_letter_text(notice, incident)
    assert body == email.text
    assert _is_subsequence(_words(body), _words(text))
    assert "2 December 2026" in text
    # Every page carries the reference, so a loose page can be matched to its letter.
    assert letter.pages >= 2
    for page in range(1, letter.pages + 1):
        assert f"Reference {letter.reference_code}" in pdf_text(letter.pdf, page, page)


def test_only_the_address_shows_through_the_dl_envelope_window(incident):
    notice = _postal_notice(7)
    letter = layout.render_letter_pdf(notice, incident, letter_date=DAY)
    words = [w for w in pdf_words(letter.pdf) if w.page == 1]
    win = layout.ADDRESS_WINDOW
    inside = [w for w in words if w.x_min < win.right and w.x_max > win.left
              and w.y_min < win.bottom and w.y_max > win.top]
    expected = "Private and confidential Testperson7 Fakename7 7 Test Street Testsuburb Testville 9007"
    assert " ".join(w.text for w in inside) == expected
    for w in inside:  # wholly inside, not just overlapping
        assert win.left <= w.x_min and w.x_max <= win.right, w
        assert win.top <= w.y_min and w.y_max <= win.bottom, w
    # The letter's text starts below the first fold: nothing about the breach in the window.
    first_body = next(w for w in words if w.text == "Kia")
    assert first_body.y_min > layout.FOLD
    # And the rendered page really has ink there (pdftoppm), none elsewhere in the top panel's
    # window band beside the address.
    png = Image.open(io.BytesIO(pdf_page_png(letter.pdf, 1, dpi=50))).convert("L")
    px = 50 / 25.4
    box = png.crop((int(win.left * px), int(win.top * px), int(win.right * px), int(win.bottom * px)))
    assert box.getextrema()[0] < 100  # dark text inside the window
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "letter-page-1.png").write_bytes(pdf_page_png(letter.pdf, 1, dpi=80))


def test_a_representatives_letter_goes_to_the_representatives_address(incident):
    rep = {"name": "Guardian Testrep", "relationship": "parent",
           "address": {"line1": "5 Carer Road", "city": "Testburg", "postcode": "9100"}}
    notice = _postal_notice(3, representative=rep)
    letter = layout.render_letter_pdf(notice, incident, letter_date=DAY)
    text = pdf_text(letter.pdf, 1, 1)
    assert "Guardian Testrep\n5 Carer Road\nTestburg 9100" in text
    assert "3 Test Street" not in text  # never the child's own address
    assert "parent of Testperson3 Fakename3" in " ".join(pdf_text(letter.pdf).split())


def test_no_letter_without_a_usable_address(incident):
    notice = _postal_notice()
    notice["recipient"]["address"] = {"line1": "1 Somewhere"}  # no town, no postcode
    with pytest.raises(RenderError, match="postal address"):
        layout.render_letter_pdf(notice, incident, letter_date=DAY)


def test_large_print_is_at_least_16_point(incident):
    notice = _postal_notice()
    standard = layout.render_letter_pdf(notice, incident, letter_date=DAY)
    large = layout.render_letter_pdf(notice, incident, letter_date=DAY, large_print=True)
    body = lambda pdf: median(w.height for w in pdf_words(pdf) if w.y_min > layout.FOLD + 5)  # noqa: E731
    # A word's box is about the font size tall: 16 pt is 5.6 mm.
    assert body(large.pdf) >= 16 / 72 * 25.4 * 0.95
    assert body(large.pdf) > 1.35 * body(standard.pdf)
    assert large.pages > standard.pages
    assert _is_subsequence(_words(render_letter_text(notice, incident)), _words(pdf_text(large.pdf)))


def test_te_reo_letters_keep_their_macrons(incident):
    notice = _postal_notice(preferred_language="mi")
    notice["agencies"][0]["name"] = "Kōwhai Hauora Māori"
    letter = layout.render_letter_pdf(notice, incident, letter_date=DAY)
    text = pdf_text(letter.pdf)
    assert "Tēnā koe Testperson1," in text and "Kōwhai Hauora Māori" in text
    assert "Nāku noa, nā" in text


def test_the_pack_starts_every_letter_on_a_new_sheet_and_its_manifest_is_formula_safe(incident):
    notices = [_postal_notice(1), _postal_notice(2), _postal_notice(3)]
    notices[1]["recipient"]["given_names"] = "=HYPERLINK(\"x\")"
    notices[1]["recipient"]["address"]["line1"] = "@SUM(1+1)"
    letters = [layout.render_letter_pdf(n, incident, letter_date=DAY, large_print=i == 2)
               for i, n in enumerate(notices)]
    packed = [PackedLetter(n["notice_id"], lt, f"{n['recipient']['given_names']} Fakename",
                           [n["recipient"]["address"]["line1"], "Testville 9001"])
              for n, lt in zip(notices, letters, strict=True)]
    pack = build_pack(packed)
    rows = list(csv.DictReader(io.StringIO(pack.manifest_csv)))
    assert [r["notice_id"] for r in rows] == [n["notice_id"] for n in notices]
    assert pack.letters == 3
    assert pack.pages == sum(lt.pages + lt.pages % 2 for lt in letters)
    for row, lt in zip(rows, letters, strict=True):
        first, pages = int(row["first_page"]), int(row["pages"])
        assert first % 2 == 1 and pages == lt.pages and row["reference_code"] == lt.reference_code
        # The letter's pages are its own: the first says its reference, the one before it
        # (a blank back or the previous letter) does not.
        assert lt.reference_code in pdf_text(pack.pdf, first, first)
        assert lt.reference_code in pdf_text(pack.pdf, first + pages - 1, first + pages - 1)
        if first > 1:
            assert lt.reference_code not in pdf_text(pack.pdf, first - 1, first - 1)
    assert rows[2]["large_print"] == "yes" and rows[0]["large_print"] == "no"
    assert rows[1]["addressee_name"].startswith("'=") and rows[1]["address_line1"] == "'@SUM(1+1)"
    # One copy of the fonts, not one per letter.
    assert len(pack.pdf) < sum(len(lt.pdf) for lt in letters)
