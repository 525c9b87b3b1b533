"""CSV with a header row, streamed record by record.

The header row is required and checked: it must name a source_record_id column and every cell
must look like a column name. A file without one (its first row is a person's) yields one fatal
`csv.header_missing` and nothing else; intake refuses such a feed whole (nothing stored), so a
person's values never become field names in problems or receipts.

Record boundaries are found on the raw bytes (a quoted field may span lines), then each
complete record is handed to the stdlib csv reader. Columns are named as the contract's
fields; nested ones are flattened as address_line1 / address.line1, hold_reason,
representative_name and so on, and are nested again here.
"""
from __future__ import annotations

import csv
import re

from .errors import MAX_RECORD_BYTES, ParseError
from .lines import LineSplitter

Item = tuple[int, "dict | ParseError"]

_ADDRESS = ("line1", "line2", "suburb", "city", "postcode")
_REPRESENTATIVE = ("name", "email", "mobile", "relationship")


def _column_aliases() -> dict[str, tuple[str, ...]]:
    aliases: dict[str, tuple[str, ...]] = {}
    for sub in _ADDRESS:
        for name in (f"address_{sub}", f"address.{sub}"):
            aliases[name] = ("address", sub)
    for sub in ("reason", "note"):
        for name in (f"hold_{sub}", f"hold.{sub}"):
            aliases[name] = ("hold", sub)
    for sub in _REPRESENTATIVE:
        for name in (f"representative_{sub}", f"representative.{sub}",
                     f"hold_representative_{sub}", f"hold.representative.{sub}"):
            aliases[name] = ("hold", "representative", sub)
    return aliases


_ALIASES = _column_aliases()


def column_path(header: str) -> tuple[str, ...]:
    """Where a CSV column goes in the raw record; unknown names pass through unchanged
    so validation can warn about them."""
    name = header.strip().lower().replace(" ", "_").replace("-", "_")
    return _ALIASES.get(name, (name,))


_QUOTE_OR_COMMA = re.compile(rb'[",]')
# What a column name looks like once normalised by column_path: never an email, a date, a
# phone number or an NHI with a digit first… A name or an NHI alone could pass, hence the
# required source_record_id column too.
_COLUMN_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")


def is_header(cells: list[str]) -> bool:
    paths = [column_path(c) for c in cells]
    names = [".".join(p) for p in paths]
    return ("source_record_id",) in paths and all(
        n == "" or _COLUMN_NAME.fullmatch(n) for n in names)


def in_quotes_after(line: bytes, in_quotes: bool) -> bool:
    """Quote state at the end of `line`, with the csv module's rules: a quote opens a
    quoted field only at the start of a field, and "" inside one is a literal quote.
    Works on bytes: '"' and ',' never occur inside a UTF-8 multi-byte sequence.
    Public: `panui feed submit` cuts CSV files into chunks at the record boundaries found here."""
    skip_to = -1
    for m in _QUOTE_OR_COMMA.finditer(line):
        pos = m.start()
        if pos < skip_to:
            continue
        if in_quotes:
            if line[pos] == 0x22:
                if line[pos + 1: pos + 2] == b'"':
                    skip_to = pos + 2
                else:
                    in_quotes = False
        elif line[pos] == 0x22 and (pos == 0 or line[pos - 1] == 0x2C):
            in_quotes = True
    return in_quotes


class _OneLine:
    """Iterator the csv reader pulls from; we push exactly one record into it."""

    __slots__ = ("item",)

    def __init__(self) -> None:
        self.item: str | None = None

    def __iter__(self):
        return self

    def __next__(self) -> str:
        item, self.item = self.item, None
        if item is None:
            raise StopIteration
        return item


class CsvParser:
    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._lines = LineSplitter(max_record_bytes)
        self._max = max_record_bytes
        self._pending: list[bytes] = []  # lines of a record still inside quotes
        self._pending_size = 0
        self._pending_oversize = False
        self._start_line = 0
        self._header: list[tuple[str, ...]] | None = None
        self._dead = False  # after a fatal header error nothing more is read
        self._feeder = _OneLine()
        self._reader = csv.reader(self._feeder)

    def feed(self, chunk: bytes) -> list[Item]:
        return self._records(self._lines.feed(chunk))

    def close(self) -> list[Item]:
        out = self._records(self._lines.close())
        if self._pending and not self._dead:
            out.append((self._start_line, ParseError(self._start_line, "parse.truncated", True)))
            self._pending = []
        return out

    def _records(self, lines: list[tuple[int, bytes | None]]) -> list[Item]:
        out: list[Item] = []
        for line_no, line in lines:
            if self._dead:
                break
            if self._pending:
                self._continue_record(line_no, line, out)
            elif line is None:
                out.append((line_no, ParseError(line_no, "parse.record_too_large")))
            elif b'"' not in line:  # fast path: a whole record on one line
                if line.strip():
                    self._row(line_no, line, out)
            elif in_quotes_after(line, False):
                self._start_line = line_no
                self._pending = [line]
                self._pending_size = len(line)
            else:
                self._row(line_no, line, out)
        return out

    def _continue_record(self, line_no: int, line: bytes | None, out: list[Item]) -> None:
        if line is None:  # a giant line inside a quoted field: quote state is lost
            line, self._pending_oversize = b"", True
        self._pending_size += len(line) + 1
        if self._pending_size > self._max:
            self._pending_oversize = True
            del self._pending[1:]  # keep one element only as the "in a record" marker
        if not self._pending_oversize:
            self._pending.append(line)
        if in_quotes_after(line, True):
            return
        start = self._start_line
        if self._pending_oversize:
            out.append((start, ParseError(start, "parse.record_too_large")))
        else:
            self._row(start, b"\n".join(self._pending), out)
        self._pending, self._pending_size, self._pending_oversize = [], 0, False

    def _row(self, line_no: int, data: bytes, out: list[Item]) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            out.append((line_no, ParseError(line_no, "parse.invalid_utf8")))
            return
        if text.endswith("\r"):
            text = text[:-1]
        self._feeder.item = text
        try:
            cells = next(self._reader)
        except (csv.Error, StopIteration):
            self._feeder.item = None
            self._reader = csv.reader(self._feeder)  # start clean after a bad row
            out.append((line_no, ParseError(line_no, "csv.malformed")))
            return
        if self._header is None:
            self._set_header(line_no, cells, out)
            return
        if len(cells) != len(self._header):
            out.append((line_no, ParseError(line_no, "csv.column_count")))
            return
        out.append((line_no, self._to_record(cells)))

    def _set_header(self, line_no: int, cells: list[str], out: list[Item]) -> None:
        if not is_header(cells):
            out.append((line_no, ParseError(line_no, "csv.header_missing", True)))
            self._dead = True
            return
        header = [column_path(c) for c in cells]
        nested_roots = {p[0] for p in header if len(p) > 1}
        flat = [p[0] for p in header if len(p) == 1]
        if len(set(header)) != len(header) or nested_roots.intersection(flat):
            # Two columns claiming one field (or "hold" beside "hold_reason"): any choice
            # between them could be wrong.
            out.append((line_no, ParseError(line_no, "csv.header_invalid", True)))
            self._dead = True
            return
        self._header = header

    def _to_record(self, cells: list[str]) -> dict:
        record: dict = {}
        for path, cell in zip(self._header, cells, strict=True):
            if not cell:  # empty cell == missing field
                continue
            if len(path) == 1:
                record[path[0]] = cell
                continue
            target = record
            for key in path[:-1]:
                target = target.setdefault(key, {})
            target[path[-1]] = cell
        return record
