"""Text normalisation shared by every free-text field: NFC, trimmed, no control characters."""
from __future__ import annotations

import re
import unicodedata

# Size limits in characters (after NFC and trimming). Oversize is an error: a 10 kB
# "name" is a broken export, not a typo we should guess around.
LIMITS: dict[str, int] = {
    "source_record_id": 128,
    "nhi": 16,
    "given_names": 200,
    "family_name": 200,
    "date_of_birth": 32,
    "email": 254,
    "mobile": 32,
    "address.line1": 200,
    "address.line2": 200,
    "address.suburb": 200,
    "address.city": 200,
    "address.postcode": 16,
    "data_categories.item": 64,
    "preferred_language": 16,
    "document_count": 16,
    "hold.reason": 32,
    "hold.note": 1000,  # as contracts/schemas/affected-record.v1.json
    "hold.representative.name": 200,
    "hold.representative.email": 254,
    "hold.representative.mobile": 32,
    "hold.representative.relationship": 100,
}
MAX_CATEGORIES = 32

# Cc = C0 controls, DEL and C1 controls; no exceptions (tabs and newlines inside a name
# or address line are export damage). Lone surrogates can't be encoded to UTF-8 later.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str, limit: int) -> tuple[str | None, str | None]:
    """Return (clean text or None if empty, error code or None).

    Trim first so a trailing CR or tab from an export is not counted as damage.
    """
    if value.isascii() and value.isprintable():
        # Fast path, most fields: plain printable ASCII is already NFC and control-free.
        if value[:1] == " " or value[-1:] == " ":
            value = value.strip()
    else:
        value = value.strip()
        # isprintable() rules out Cc and Cs in one C pass; text failing it (e.g. one with a
        # no-break space) needs the precise checks.
        if not value.isprintable():
            if _SURROGATE.search(value):
                return None, "text.invalid_unicode"
            if _CONTROL.search(value):
                return None, "text.control_characters"
        if not value.isascii():
            value = unicodedata.normalize("NFC", value)
    if not value:
        return None, None
    if len(value) > limit:
        return None, "field.too_long"
    return value, None
