"""The reference printed on every notice, and the keyed digests that let a person check it.

A reference is what a person quotes on the phone and types into the "is this notice genuine?"
page, so it is made for that: an alphabet without look-alikes (0/O, 1/I/L, U), grouped in fours.
It is derived by dedupe, which makes the notice, as an HMAC of the notice id under the incident's
notices data key (services.common.crypto.Vault.digest) — so it cannot be computed from the notice
id (which is in logs and Kafka keys) and is destroyed with the incident's key. Twelve characters
of a 30-letter alphabet: log2(30**12) = 58.9 bits (the old unkeyed 8-character code, still
accepted for notices made before, had 39.3 bits and was computable from the notice id).

A date of birth is never kept for the check: dedupe sends the same kind of keyed digest of each
date of birth the person's records hold (`dob_checks` on the notice), and the check compares
digests.
"""

from __future__ import annotations

import hashlib
import re

# Reference alphabet without look-alikes (0/O, 1/I/L, U) so it can be read out over the phone.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 12
REFERENCE_LABEL = "notice-reference"
DOB_LABEL = "notice-date-of-birth"
# The most date-of-birth digests a notice carries (one per distinct date the person's records
# give; more than a few means the records disagree, and the check compares them all).
MAX_DOB_CHECKS = 4
_CHAR = "[2-9A-HJKMNP-TV-Z]"
REFERENCE_PATTERN = rf"^PAN-{_CHAR}{{4}}-{_CHAR}{{4}}(-{_CHAR}{{4}})?$"
REFERENCE_RE = re.compile(REFERENCE_PATTERN)
DIGEST_PATTERN = r"^[0-9a-f]{64}$"


def _encode(n: int, length: int) -> str:
    chars = []
    for _ in range(length):
        n, r = divmod(n, len(ALPHABET))
        chars.append(ALPHABET[r])
    code = "".join(chars)
    return "PAN-" + "-".join(code[i:i + 4] for i in range(0, length, 4))


def reference_from_digest(hex_digest: str) -> str:
    """'PAN-XXXX-XXXX-XXXX' from a keyed digest (256 bits in, 58.9 bits kept)."""
    return _encode(int(hex_digest, 16), LENGTH)


def legacy_reference(notice_id: str) -> str:
    """The unkeyed 8-character code of notices made before references were keyed
    ('PAN-7K3Q-9XWD', 39.3 bits of SHA-256(notice_id)); what those notices printed."""
    return _encode(int.from_bytes(hashlib.sha256(notice_id.encode("utf-8")).digest(), "big"), 8)


def normalise_reference(text: str) -> str | None:
    """What a person typed, as a reference (case, spaces and dashes as they come), or None.
    Look-alikes are read as what they must have been (O→0 is not in the alphabet: refused)."""
    raw = re.sub(r"[\s\-]", "", text.upper())
    if raw.startswith("PAN"):
        raw = raw[3:]
    if len(raw) not in (8, LENGTH):
        return None
    code = "PAN-" + "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))
    return code if REFERENCE_RE.match(code) else None


def dob_text(value: object) -> str:
    """The one spelling digested for a date of birth (ISO 8601)."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def notice_checks(sealer: object, notice_id: str, sealed: str, dates_of_birth: list
                  ) -> tuple[str, list[str]]:
    """(reference, date-of-birth digests) of a notice, keyed by the data key that sealed its
    recipient (`sealer`: a crypto.Vault or Sealer). Distinct dates in the order given (most
    recent record first), at most MAX_DOB_CHECKS, the digests sorted: the same records always
    give the same notice."""
    key_id = sealed.split(".", 2)[1]
    reference = reference_from_digest(
        sealer.digest(notice_id, label=REFERENCE_LABEL, key_id=key_id))  # type: ignore[attr-defined]
    dobs = list(dict.fromkeys(dob_text(d) for d in dates_of_birth if d))[:MAX_DOB_CHECKS]
    checks = sorted(sealer.digest(d, label=DOB_LABEL, key_id=key_id)  # type: ignore[attr-defined]
                    for d in dobs)
    return reference, checks
