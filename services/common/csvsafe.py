"""Formula-safe CSV, for every CSV the project writes (exports, the CLI's reports).

A spreadsheet evaluates a cell beginning with = + - @ tab or CR as a formula (OWASP "CSV
injection"): names, addresses and problem messages come from outside, so every text cell is
neutralised by prefixing a single quote, which shows it as text. Numbers are written as numbers.
"""

import csv
from collections.abc import Iterable
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # -3.5 is a number, not a formula
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class SafeWriter:
    """`csv.writer` whose every cell goes through `csv_safe`."""

    def __init__(self, handle: Any, **kwargs: Any):
        self._writer = csv.writer(handle, **kwargs)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([csv_safe(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)
