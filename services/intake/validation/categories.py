"""Breach data categories: a fixed vocabulary so notices can say what each agency held."""
from __future__ import annotations

import re

DATA_CATEGORIES: tuple[str, ...] = (
    "clinical_notes", "lab_results", "referral_letters", "discharge_summaries",
    "prescriptions", "identity_documents", "images", "contact_details", "other",
)
_KNOWN = frozenset(DATA_CATEGORIES)
# CSV cells carry several categories in one cell.
_SPLIT = re.compile(r"[;|]")


def split_categories(cell: str) -> list[str]:
    return _SPLIT.split(cell)


def normalise_category(item: str) -> str | None:
    """Canonical category for an (already trimmed) item, or None if unknown.

    Tolerates case and space/hyphen spelling ("Lab Results", "lab-results").
    """
    if item in _KNOWN:
        return item
    key = item.lower().replace(" ", "_").replace("-", "_")
    return key if key in _KNOWN else None
