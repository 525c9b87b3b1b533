"""Streaming parsers for affected-record feeds (NDJSON, CSV, JSON array). No I/O of their own."""
from .errors import MAX_RECORD_BYTES, ParseError
from .feed import (
                   CHUNK_SIZE,
                   FORMATS,
                   FeedFormat,
                   FeedParser,
                   Item,
                   aiter_feed,
                   detect_format,
                   iter_feed,
                   to_result,
                   validate_feed,
)

__all__ = [
    "CHUNK_SIZE", "FORMATS", "FeedFormat", "FeedParser", "Item", "MAX_RECORD_BYTES",
    "ParseError", "aiter_feed", "detect_format", "iter_feed", "to_result", "validate_feed",
]
