"""Entry points: pick a format, push or pull bytes, get numbered raw records out."""
from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import BinaryIO, Literal

from ..validation import Problem, ValidationResult, validate_record
from .csv_feed import CsvParser
from .errors import MAX_RECORD_BYTES, ParseError
from .json_array import JsonArrayParser
from .ndjson import NdjsonParser

FeedFormat = Literal["ndjson", "csv", "json"]
Item = tuple[int, "dict | ParseError"]
FORMATS: tuple[str, ...] = ("ndjson", "csv", "json")
CHUNK_SIZE = 64 * 1024

_CONTENT_TYPES = {
    "application/x-ndjson": "ndjson", "application/ndjson": "ndjson",
    "application/jsonl": "ndjson", "application/x-jsonlines": "ndjson",
    "application/jsonlines": "ndjson",
    "text/csv": "csv", "application/csv": "csv",
    "application/json": "json", "text/json": "json",
}
_EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".csv": "csv", ".json": "json"}


def detect_format(content_type: str | None, filename: str | None = None) -> FeedFormat | None:
    """The feed format from a Content-Type, else the file name's extension; None if neither
    says (the caller decides whether that is a 415). Generic types like
    application/octet-stream or text/plain defer to the file name."""
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        fmt = _CONTENT_TYPES.get(media)
        if fmt:
            return fmt  # type: ignore[return-value]
    if filename:
        name = filename.lower()
        for ext, fmt in _EXTENSIONS.items():
            if name.endswith(ext):
                return fmt  # type: ignore[return-value]
    return None


class FeedParser:
    """Incremental parser: `feed(chunk)` returns the records completed by that chunk,
    `close()` the rest. Use from an async request body stream; never buffers more than
    one record (bounded by `max_record_bytes`)."""

    def __init__(self, fmt: FeedFormat, *, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        parsers = {"ndjson": NdjsonParser, "csv": CsvParser, "json": JsonArrayParser}
        if fmt not in parsers:
            raise ValueError(f"unknown feed format {fmt!r}; expected one of {FORMATS}")
        self.format = fmt
        self._parser = parsers[fmt](max_record_bytes)
        self._closed = False

    def feed(self, chunk: bytes) -> list[Item]:
        if self._closed:
            raise RuntimeError("feed() after close()")
        return self._parser.feed(bytes(chunk))

    def close(self) -> list[Item]:
        if self._closed:
            return []
        self._closed = True
        return self._parser.close()


def iter_feed(stream: BinaryIO, fmt: FeedFormat, *, chunk_size: int = CHUNK_SIZE,
              max_record_bytes: int = MAX_RECORD_BYTES) -> Iterator[Item]:
    """Stream (line_no, raw dict | ParseError) from a binary file-like object."""
    parser = FeedParser(fmt, max_record_bytes=max_record_bytes)
    while chunk := stream.read(chunk_size):
        yield from parser.feed(chunk)
    yield from parser.close()


async def aiter_feed(chunks: AsyncIterable[bytes], fmt: FeedFormat, *,
                     max_record_bytes: int = MAX_RECORD_BYTES) -> AsyncIterator[Item]:
    """Same as iter_feed for an async byte stream (e.g. Starlette's request.stream())."""
    parser = FeedParser(fmt, max_record_bytes=max_record_bytes)
    async for chunk in chunks:
        for item in parser.feed(chunk):
            yield item
    for item in parser.close():
        yield item


def to_result(line_no: int, item: dict | ParseError) -> ValidationResult:
    """Validate a parsed item; a parse error becomes a rejected result."""
    if isinstance(item, ParseError):
        return ValidationResult(None, [item.to_problem()], line_no)
    return validate_record(item, line_no)


def validate_feed(stream: BinaryIO, fmt: FeedFormat, **kwargs) -> Iterator[ValidationResult]:
    """Parse and validate a whole feed lazily, one result per record or bad line."""
    for line_no, item in iter_feed(stream, fmt, **kwargs):
        yield to_result(line_no, item)


__all__ = [
    "CHUNK_SIZE", "FORMATS", "FeedFormat", "FeedParser", "Item", "ParseError", "Problem",
    "aiter_feed", "detect_format", "iter_feed", "to_result", "validate_feed",
]
