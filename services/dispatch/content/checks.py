"""The checks every rendered text passes before it is sent, whatever template produced it
(bundled or coordinator-supplied): nothing clickable, the reference code present, and the
s 117 elements the template must not drop (DOMAIN.md §1, §4)."""

from __future__ import annotations

import re
from typing import Any


class RenderError(ValueError):
    """The notice cannot be rendered safely or completely. Messages carry no personal data."""


class SmsTooLong(RenderError):
    pass


class UnsafeContent(RenderError):
    pass


# Real tags/attributes only: escaped text such as "&lt;a href=" is inert and allowed.
_ANCHOR = re.compile(r"<\s*a[\s>]|<[^>]*\b(?:href|src|action)\s*=|<\s*form", re.IGNORECASE)
_SCHEME = re.compile(r"\b(?:https?|ftp|mailto|tel):", re.IGNORECASE)


# Substrings without which the patterns above cannot match: checked first (in C), so the
# regexes only run on the rare text that might contain a link. Same verdicts, ~20x cheaper.
_ATTRIBUTE_HINTS = ("href", "src", "action")
_TAG_HINT = re.compile(r"<\s*(?:a[\s>]|form)", re.IGNORECASE)  # a cheap pattern: no [^>]* scan
_SCHEME_HINTS = ("http:", "https:", "ftp:", "mailto:", "tel:")


def check_safe(part: str, text: str, reference_code: str, *, html: bool = False) -> None:
    low = text.lower()
    suspicious = html and (any(h in low for h in _ATTRIBUTE_HINTS) or _TAG_HINT.search(text))
    if suspicious and _ANCHOR.search(text):
        raise UnsafeContent(f"{part} contains a link, form or remote resource")
    if any(h in low for h in _SCHEME_HINTS) and _SCHEME.search(text):
        raise UnsafeContent(f"{part} contains a clickable URL scheme")
    if reference_code not in text and part != "email subject":
        raise UnsafeContent(f"{part} does not include the reference code")


def check_s117(part: str, text: str, ctx: dict[str, Any]) -> None:
    """Cheap guard that the coordinator's template did not drop a required element."""
    required = {
        "contact phone": ctx["contact"]["phone"],
        "web address": ctx["contact"]["web_address"],
        "sender": ctx["incident"]["sender_name"],
    }
    for what, value in required.items():
        if value not in text:
            raise RenderError(f"{part} is missing the {what}")
    for agency in ctx["agencies"]:
        if agency["name"] not in text:
            raise RenderError(f"{part} does not list every agency")
