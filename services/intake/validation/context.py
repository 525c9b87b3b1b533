"""Per-record bookkeeping shared by the field validators."""
from __future__ import annotations

from .problems import CODES, ERROR, Problem
from .text import LIMITS, clean_text


class RecordContext:
    """Collects problems for one record, stamped with its line and source_record_id."""

    __slots__ = ("line", "source_record_id", "problems", "errored_fields", "has_error")

    def __init__(self, line: int) -> None:
        self.line = line
        self.source_record_id: str | None = None
        self.problems: list[Problem] = []
        self.errored_fields: set[str] = set()
        self.has_error = False

    def add(self, code: str, field: str | None) -> None:
        if CODES[code].severity == ERROR:
            self.has_error = True
            if field is not None:
                self.errored_fields.add(field)
        self.problems.append(Problem.of(code, self.line, self.source_record_id, field))

    def text(self, value: object, field: str) -> str | None:
        """A clean text value for `field`, or None (missing, or reported as an error)."""
        if type(value) is not str:
            if value is None:
                return None
            self.add("field.wrong_type", field)
            return None
        text, code = clean_text(value, LIMITS[field])
        if code:
            self.add(code, field)
        return text
