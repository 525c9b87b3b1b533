"""NDJSON: one JSON object per line; a bad line is reported and the feed goes on."""
from __future__ import annotations

import orjson

from .errors import MAX_RECORD_BYTES, ParseError
from .lines import LineSplitter

Item = tuple[int, "dict | ParseError"]


def decode_json_record(data: bytes, line_no: int) -> Item:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return line_no, ParseError(line_no, "parse.invalid_utf8")
        return line_no, ParseError(line_no, "parse.invalid_json")
    if type(value) is not dict:
        return line_no, ParseError(line_no, "record.not_an_object")
    return line_no, value


class NdjsonParser:
    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._lines = LineSplitter(max_record_bytes)

    def feed(self, chunk: bytes) -> list[Item]:
        return self._records(self._lines.feed(chunk))

    def close(self) -> list[Item]:
        return self._records(self._lines.close())

    @staticmethod
    def _records(lines: list[tuple[int, bytes | None]]) -> list[Item]:
        out: list[Item] = []
        for line_no, line in lines:
            if line is None:
                out.append((line_no, ParseError(line_no, "parse.record_too_large")))
            elif line.strip():  # blank lines (often a trailing one) are not records
                out.append(decode_json_record(line, line_no))
        return out
