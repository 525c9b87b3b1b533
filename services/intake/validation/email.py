"""Email addresses: trimmed, domain lower-cased, syntax checked (no DNS: intake is pure)."""
from __future__ import annotations

import re

# Pragmatic RFC 5321 dot-atom: no quoted local parts or IP-literal domains, which no
# agency system is expected to hold for a patient. Non-ASCII is allowed (SMTPUTF8/IDN).
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
                    r"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+)*")
_LABEL = r"(?:[a-z0-9\u0080-\U0010ffff](?:[a-z0-9\-\u0080-\U0010ffff]{0,61}[a-z0-9\u0080-\U0010ffff])?)"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+(?:[a-z\u0080-\U0010ffff]{{2,63}}|xn--[a-z0-9\-]{{1,59}})")


def normalise_email(value: str) -> tuple[str | None, str | None]:
    """`value` is already NFC-trimmed text. Return (email or None, problem code or None)."""
    local, at, domain = value.rpartition("@")
    if not at or not local or len(local) > 64 or len(domain) > 253:
        return None, "email.invalid"
    domain = domain.lower()
    # Lower-casing can lengthen text ("İ" becomes "i" + U+0307): check the limits again.
    if len(domain) > 253 or len(local) + 1 + len(domain) > 254:
        return None, "email.invalid"
    if _LOCAL.fullmatch(local) is None or _DOMAIN.fullmatch(domain) is None:
        return None, "email.invalid"
    if not value.isascii():
        if any(c.isspace() for c in value):  # e.g. NBSP, which the ranges above let in
            return None, "email.invalid"
        try:  # IDN domains must be encodable for SMTP
            domain.encode("idna") if not domain.isascii() else None
        except UnicodeError:
            return None, "email.invalid"
    return f"{local}@{domain}", None
