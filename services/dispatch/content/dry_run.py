"""A dry-run incident's notices say so (issue 14): a rehearsal, like GOV.UK Notify's test keys.
The mark is added to what the templates rendered — the subject, the top of the text and of the
HTML body, the start of the SMS — so whoever reads one (at the simulated gateways, or in the
console's preview) cannot take it for a real notice."""

from __future__ import annotations

import html
import re
from dataclasses import replace

from services.dispatch.content.render import RenderedEmail, RenderedSms
from services.dispatch.content.sms_segments import count_segments

MARK = "[DRY RUN]"
SENTENCE = "DRY RUN: a rehearsal of a breach notice. This is not a real notice."
_BODY = re.compile(r"<body[^>]*>", re.IGNORECASE)
_BANNER = ('<p style="border:2px solid #b3261e;color:#b3261e;padding:8px;font-weight:bold" '
           f'role="note">{html.escape(SENTENCE)}</p>')


def mark_email(email: RenderedEmail) -> RenderedEmail:
    found = _BODY.search(email.html)
    at = found.end() if found else 0
    return replace(email, subject=f"{MARK} {email.subject}", text=f"{SENTENCE}\n\n{email.text}",
                   html=email.html[:at] + _BANNER + email.html[at:])


def mark_sms(sms: RenderedSms) -> RenderedSms:
    body = f"{MARK} {sms.body}"
    return replace(sms, body=body, segments=count_segments(body))


def mark_letter(text: str) -> str:
    return f"{SENTENCE}\n\n{text}"
