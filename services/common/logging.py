"""One-line JSON logs. Log ids and counts, never personal data: no names, NHIs, contacts,
addresses or message payloads. Exceptions from sealed data never include plaintext, and a
validation error is logged as where and what kind (`email: string_too_long`), never with the
value or pydantic's message about it (which can quote the input, e.g. an unknown tag)."""

import json
import logging
import sys
import time
import traceback

from pydantic import ValidationError

_MASKED = "*"  # an unknown field's name is input too


def validation_errors(exc: ValidationError, limit: int = 20) -> list[tuple[str, str]]:
    """(location, error type) of each error, without the input: safe to log and to publish."""
    out = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False)[:limit]:
        loc = [str(part) for part in error.get("loc", ())]
        if error["type"] == "extra_forbidden" and loc:
            loc[-1] = _MASKED
        out.append((".".join(loc)[:300] or "$", str(error["type"])[:64]))
    return out


def describe_validation_error(exc: ValidationError) -> str:
    errors = validation_errors(exc)
    shown = "; ".join(f"{loc}: {kind}" for loc, kind in errors)
    return f"{exc.error_count()} validation error(s) for {exc.title}: {shown}"


def format_exception(exc: BaseException) -> str:
    """The traceback as Python prints it, with every validation error in the chain described
    by `describe_validation_error` instead of its own text."""
    formatted = traceback.TracebackException.from_exception(exc)
    _scrub(formatted, exc, set())
    return "".join(formatted.format()).rstrip("\n")


def raised_at(exc: BaseException) -> str:
    """Where an exception was raised, as `module.py:line function` of its innermost frame:
    code only, never the exception's message (which can quote the values it refused), so it
    can be logged where the message cannot."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"


def _scrub(formatted: traceback.TracebackException, exc: BaseException | None, seen: set[int]) -> None:
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ValidationError):
            formatted._str = describe_validation_error(exc)  # noqa: SLF001 - the printed text
        if formatted.__cause__ is not None and exc.__cause__ is not None:
            _scrub(formatted.__cause__, exc.__cause__, seen)
        if formatted.__context__ is None:
            return
        formatted, exc = formatted.__context__, exc.__context__


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("service", "incident_id", "feed_id", "notice_id", "count", "group", "topic",
                    "partition", "offset", "reason", "request_id", "method", "route", "status",
                    "duration_ms", "raised_at"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info and record.exc_info[1] is not None:
            entry["exc"] = format_exception(record.exc_info[1])
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # httpx logs every request with its full URL, query string included (the console's
    # pass-through): the access log is the record of requests.
    logging.getLogger("httpx").setLevel(logging.WARNING)
