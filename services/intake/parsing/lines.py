"""Split a byte stream into numbered lines without ever holding more than one line."""
from __future__ import annotations

from .errors import MAX_RECORD_BYTES

BOM = b"\xef\xbb\xbf"


class LineSplitter:
    """Push bytes in, get complete (line_no, line) pairs out.

    `line` excludes the newline (a trailing CR is kept; callers strip it as their format
    needs) and is None when the line was longer than `max_bytes` and was discarded.
    A UTF-8 BOM at the very start is dropped, even if it arrives one byte at a time.
    """

    __slots__ = ("_buf", "_line_no", "_oversize", "_at_start", "_max")

    def __init__(self, max_bytes: int = MAX_RECORD_BYTES) -> None:
        self._buf = b""
        self._line_no = 0
        self._oversize = False
        self._at_start = True
        self._max = max_bytes

    def feed(self, chunk: bytes) -> list[tuple[int, bytes | None]]:
        if self._at_start:
            chunk = self._buf + chunk
            self._buf = b""
            if len(chunk) < 3 and BOM.startswith(chunk):
                self._buf = chunk  # could still become a BOM
                return []
            self._at_start = False
            if chunk.startswith(BOM):
                chunk = chunk[3:]
        parts = chunk.split(b"\n")
        out: list[tuple[int, bytes | None]] = []
        if len(parts) > 1:
            first = self._buf + parts[0] if self._buf else parts[0]
            self._emit(first, out)
            for part in parts[1:-1]:
                self._emit(part, out)
            self._buf = b""
        tail = parts[-1]
        if self._oversize:
            return out
        if len(self._buf) + len(tail) > self._max:
            self._oversize = True  # drop it now; memory stays flat on a giant line
            self._buf = b""
        else:
            self._buf += tail
        return out

    def close(self) -> list[tuple[int, bytes | None]]:
        out: list[tuple[int, bytes | None]] = []
        if self._at_start:
            self._at_start = False
            if self._buf == BOM[: len(self._buf)]:
                self._buf = b""
        if self._buf or self._oversize:
            self._emit(self._buf, out)
            self._buf = b""
        return out

    def _emit(self, line: bytes, out: list) -> None:
        self._line_no += 1
        if self._oversize or len(line) > self._max:
            self._oversize = False
            out.append((self._line_no, None))
        else:
            out.append((self._line_no, line))
