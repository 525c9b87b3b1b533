"""A JSON array of records, split incrementally so memory stays flat in feed size.

A small scanner tracks strings and bracket nesting and cuts out each top-level element;
orjson then parses that one element. Scanning every string in Python costs ~40 µs per
record, so the usual case takes a fast path: at the start of an object element, try
orjson on the text up to each following `}` that is followed by `,` or `]`. JSON is
deterministic, so the first candidate that parses is exactly the element. Anything odd
(strings containing "},", chunk boundaries, bad elements) falls back to the scanner.

Problems are numbered by array position (1-based), since a minified array is one line.
"""
from __future__ import annotations

import re

import orjson

from .errors import MAX_RECORD_BYTES, ParseError
from .lines import BOM
from .ndjson import decode_json_record

Item = tuple[int, "dict | ParseError"]

_STRUCTURAL = re.compile(rb'["\[\]{},]')
_STRING_END = re.compile(rb'["\\]')
_NON_WS = re.compile(rb"[^ \t\r\n]")
_OBJECT_END = re.compile(rb"\}[ \t\r\n]*+([,\]])")
_MAX_FAST_ATTEMPTS = 8
_CLOSER = {ord("]"): ord("["), ord("}"): ord("{")}

# Scanner states
_BEFORE, _IN_ARRAY, _AFTER, _DEAD = range(4)


class JsonArrayParser:
    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._max = max_record_bytes
        self._state = _BEFORE
        self._head = b""  # bytes seen before the opening '[' (for BOM / whitespace)
        self._stack = bytearray()  # open brackets inside the current element
        self._in_string = False
        self._escape = False  # a backslash ended the previous chunk inside a string
        self._parts: list[bytes] = []  # the current element's bytes so far
        self._size = 0
        self._oversize = False
        self._index = 0  # array position of the current element
        self._trailing_reported = False
        self._at_element_start = False  # just after '[' or a top-level ','

    def feed(self, chunk: bytes) -> list[Item]:
        out: list[Item] = []
        if self._state == _BEFORE:
            chunk = self._find_array_start(chunk, out)
        if self._state == _IN_ARRAY and chunk:
            self._scan(chunk, out)
        elif self._state == _AFTER and chunk:
            self._check_trailing(chunk, out)
        return out

    def close(self) -> list[Item]:
        out: list[Item] = []
        if self._state == _BEFORE and self._head.strip(b" \t\r\n") not in (b"", BOM):
            out.append((0, ParseError(0, "parse.not_a_json_array", True)))
        elif self._state == _IN_ARRAY:
            line = self._index + 1  # the unfinished element
            out.append((line, ParseError(line, "parse.truncated", True)))
        self._state = _DEAD
        return out

    # -- before the array
    def _find_array_start(self, chunk: bytes, out: list[Item]) -> bytes:
        data = self._head + chunk
        if len(data) < 3 and BOM.startswith(data):
            self._head = data
            return b""
        if data.startswith(BOM):
            data = data[3:]
        m = _NON_WS.search(data)
        if m is None:
            self._head = b""
            return b""
        if data[m.start()] != ord("["):
            out.append((0, ParseError(0, "parse.not_a_json_array", True)))
            self._state = _DEAD
            return b""
        self._state = _IN_ARRAY
        self._at_element_start = True
        self._head = b""
        return data[m.end():]

    # -- inside the array
    def _scan(self, chunk: bytes, out: list[Item]) -> None:
        pos = 0
        start = 0  # where the current element's bytes begin in this chunk
        n = len(chunk)
        if self._escape:
            self._escape = False
            pos = 1
        while pos < n:
            if self._at_element_start:
                self._at_element_start = False
                if not self._parts and not self._oversize:
                    end = self._fast_object(chunk, pos, out)
                    if end is not None:
                        if chunk[end - 1] == 0x5D:  # the element closed the array
                            self._state = _AFTER
                            self._check_trailing(chunk[end:], out)
                            return
                        pos = start = end
                        self._at_element_start = True
                        continue
            if self._in_string:
                m = _STRING_END.search(chunk, pos)
                if m is None:
                    break
                if chunk[m.start()] == 0x5C:  # backslash: skip the escaped byte
                    if m.end() >= n:
                        self._escape = True
                        pos = n
                        break
                    pos = m.end() + 1
                    continue
                self._in_string = False
                pos = m.end()
                continue
            m = _STRUCTURAL.search(chunk, pos)
            if m is None:
                break
            c = chunk[m.start()]
            pos = m.end()
            if c == 0x22:
                self._in_string = True
            elif c == 0x5B or c == 0x7B:  # [ {
                self._stack.append(c)
            elif c == 0x5D or c == 0x7D:  # ] }
                if self._stack:
                    if self._stack.pop() != _CLOSER[c]:
                        return self._broken(out)
                elif c == 0x5D:  # end of the array
                    self._end_element(chunk[start:m.start()], out, last=True)
                    self._state = _AFTER
                    self._check_trailing(chunk[pos:], out)
                    return
                else:
                    return self._broken(out)
            elif not self._stack:  # a top-level comma ends an element
                self._end_element(chunk[start:m.start()], out, last=False)
                start = pos
                self._at_element_start = True
        self._keep(chunk[start:])

    def _fast_object(self, chunk: bytes, pos: int, out: list[Item]) -> int | None:
        """Parse an object element wholly inside `chunk` starting at `pos` (after
        whitespace); return the index just past its terminator, or None to fall back."""
        m = _NON_WS.search(chunk, pos)
        if m is None or chunk[m.start()] != 0x7B:  # not '{'
            return None
        begin = m.start()
        for attempt, end in enumerate(_OBJECT_END.finditer(chunk, begin)):
            if attempt == _MAX_FAST_ATTEMPTS or end.start() - begin > self._max:
                return None
            try:
                value = orjson.loads(chunk[begin:end.start() + 1])
            except orjson.JSONDecodeError:
                continue
            self._index += 1
            out.append((self._index, value))
            return end.end()
        return None

    def _keep(self, piece: bytes) -> None:
        if self._oversize or not piece:
            return
        self._size += len(piece)
        if self._size > self._max:
            self._oversize = True  # keep scanning, stop buffering
            self._parts = []
        else:
            self._parts.append(piece)

    def _end_element(self, piece: bytes, out: list[Item], last: bool) -> None:
        self._keep(piece)
        data = b"".join(self._parts).strip(b" \t\r\n")
        oversize = self._oversize
        self._parts, self._size, self._oversize = [], 0, False
        if not data and not oversize:
            if last and self._index == 0:
                return  # "[]": an empty feed
            self._index += 1
            out.append((self._index, ParseError(self._index, "parse.invalid_json")))
            return
        self._index += 1
        if oversize:
            out.append((self._index, ParseError(self._index, "parse.record_too_large")))
        else:
            out.append(decode_json_record(data, self._index))

    def _broken(self, out: list[Item]) -> None:
        # Mismatched brackets: element boundaries can no longer be trusted.
        line = self._index + 1
        out.append((line, ParseError(line, "parse.json_structure", True)))
        self._state = _DEAD

    def _check_trailing(self, data: bytes, out: list[Item]) -> None:
        if not self._trailing_reported and _NON_WS.search(data):
            self._trailing_reported = True
            line = self._index + 1
            out.append((line, ParseError(line, "parse.trailing_data")))
