"""Bilingual notices (an incident option): te reo Māori, from the coordinator's approved
templates, then the full English notice, in one message."""

from __future__ import annotations

import re

from markupsafe import escape

from services.dispatch.content.models import IncidentContent

BILINGUAL_TEXT_DIVIDER = "\n\n" + "=" * 40 + "\nENGLISH\n" + "=" * 40 + "\n\n"
_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)
_HEAD = re.compile(r"^(.*?</head>\s*)", re.S | re.I)


def is_bilingual(language: str, incident: IncidentContent) -> bool:
    """For te reo readers, once the coordinator's te reo templates are approved (without them
    the te reo part would be the bundled wrapper around the same English)."""
    return (incident.bilingual and language == "mi" and incident.mi_templates is not None
            and incident.mi_templates_approved)


def bilingual_html(mi: str, en: str, title: str) -> str:
    """One HTML document: the te reo body (lang="mi"), then the English one (lang="en-NZ"),
    in the English document's head (its narrow-screen and dark-mode styles)."""

    def body(html: str) -> str:
        found = _BODY.search(html)
        return found.group(1) if found else html

    head = _HEAD.search(en)
    shell = head.group(1) if head else (
        '<!DOCTYPE html>\n<html lang="en-NZ">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n</head>\n")
    return (
        shell.replace('<html lang="en-NZ">', '<html lang="mi">', 1)
        + '<body style="margin: 0; padding: 16px; background: #ffffff; color: #0b0c0c;">\n'
        f'<section lang="mi">\n{body(mi)}\n</section>\n<hr>\n'
        f'<section lang="en-NZ">\n<p><strong>English</strong></p>\n{body(en)}\n</section>\n'
        "</body>\n</html>\n"
    )
