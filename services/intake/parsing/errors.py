"""A per-line problem found before a record could even be read."""
from __future__ import annotations

from dataclasses import dataclass

from ..validation.problems import Problem

# One record's encoded size limit. Far above any legitimate record (every field at its
# limit is ~10 kB), low enough that a corrupt upload can't make us buffer gigabytes.
MAX_RECORD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class ParseError:
    line: int  # physical line (NDJSON, CSV) or 1-based array position (JSON)
    code: str  # a key of validation.CODES
    fatal: bool = False  # True when the parser cannot continue; nothing more will follow

    def to_problem(self) -> Problem:
        return Problem.of(self.code, self.line)
