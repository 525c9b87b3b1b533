"""validate_record: one raw affected-record.v1 dict in, a clean record and its problems out.

Errors reject the record; warnings drop (or default) one field and keep the record, so a
person is never lost over a typo. Every field is checked even after an error, so the
agency sees all of a record's problems in one report.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from services.common.nhi import check_nhi, normalise_nhi

from .categories import DATA_CATEGORIES, normalise_category, split_categories
from .context import RecordContext
from .contract import contract_violations
from .dates import parse_date_of_birth
from .dates import today as cached_today
from .email import normalise_email
from .hold import validate_hold
from .mobile import normalise_mobile
from .problems import Problem
from .text import LIMITS, MAX_CATEGORIES, clean_text

RECORD_FIELDS = frozenset({
    "source_record_id", "nhi", "given_names", "family_name", "date_of_birth", "email",
    "mobile", "address", "data_categories", "document_count", "preferred_language", "hold",
})
ADDRESS_FIELDS = ("line1", "line2", "suburb", "city", "postcode")
_ADDRESS_KEYS = {k: f"address.{k}" for k in ADDRESS_FIELDS}  # sub-field -> limit/field name
LANGUAGES = {"en": "en", "mi": "mi", "en-nz": "en", "mi-nz": "mi"}
MAX_DOCUMENT_COUNT = 1_000_000_000
_MAX_UNKNOWN_FIELD_WARNINGS = 10
_KNOWN_CATEGORIES = frozenset(DATA_CATEGORIES)


@dataclass(slots=True)
class ValidationResult:
    record: dict | None  # clean contract fields, or None when rejected
    problems: list[Problem] = field(default_factory=list)
    line: int = 0

    @property
    def accepted(self) -> bool:
        return self.record is not None


def validate_record(raw: object, line_no: int, *, today: date | None = None) -> ValidationResult:
    """Validate one raw record. Never raises: a broken record must not stop a feed."""
    try:
        return _validate(raw, line_no, today)
    except Exception:  # noqa: BLE001 - last resort; the hypothesis test asserts it never fires
        return ValidationResult(None, [Problem.of("record.internal_error", line_no)], line_no)


def _validate(raw: object, line: int, today: date | None) -> ValidationResult:
    ctx = RecordContext(line)
    if not isinstance(raw, dict):
        ctx.add("record.not_an_object", None)
        return ValidationResult(None, ctx.problems, line)

    ctx.source_record_id = _source_record_id(raw.get("source_record_id"), ctx)
    _report_unexpected_fields(raw, ctx)

    given_names = ctx.text(raw.get("given_names"), "given_names")
    family_name = ctx.text(raw.get("family_name"), "family_name")
    nhi = _nhi(raw.get("nhi"), ctx)
    on = today or cached_today()
    dob = _normalised(raw.get("date_of_birth"), ctx, "date_of_birth",
                      lambda text: parse_date_of_birth(text, on))
    email = _normalised(raw.get("email"), ctx, "email", normalise_email)
    mobile = _normalised(raw.get("mobile"), ctx, "mobile", normalise_mobile)
    address = _address(raw.get("address"), ctx)
    categories = _data_categories(raw.get("data_categories"), ctx)
    document_count = _document_count(raw.get("document_count"), ctx)
    language = _preferred_language(raw.get("preferred_language"), ctx)
    hold = validate_hold(raw.get("hold"), ctx)

    if given_names is None and family_name is None:
        _check_no_name(ctx)
    # An address counts as a way to reach someone only with a street line.
    if not (nhi or dob or email or mobile or (address and address["line1"])):
        _check_unreachable(ctx)

    if ctx.has_error:
        return ValidationResult(None, ctx.problems, line)
    record = {
        "source_record_id": ctx.source_record_id,
        "nhi": nhi,
        "given_names": given_names,
        "family_name": family_name,
        "date_of_birth": dob,
        "email": email,
        "mobile": mobile,
        "address": address,
        "data_categories": categories,
        "document_count": document_count,
        "preferred_language": language,
        "hold": hold,
    }
    for code, field_name in contract_violations(record):
        ctx.add(code, field_name)
    if ctx.has_error:
        return ValidationResult(None, ctx.problems, line)
    return ValidationResult(record, ctx.problems, line)


def _check_no_name(ctx: RecordContext) -> None:
    # A name that was present but broken is already an error; don't report it twice.
    if not ctx.errored_fields & {"given_names", "family_name"}:
        ctx.add("record.no_name", "given_names")


def _check_unreachable(ctx: RecordContext) -> None:
    errored = ctx.errored_fields
    if errored & {"nhi", "date_of_birth", "email", "mobile"}:
        return
    if any(f.startswith("address") for f in errored):
        return
    ctx.add("record.unreachable", None)


def _source_record_id(value: object, ctx: RecordContext) -> str | None:
    if type(value) is int:  # numeric ids from JSON exports are fine as text
        value = str(value)
    srid = ctx.text(value, "source_record_id")
    if srid is None and "source_record_id" not in ctx.errored_fields:
        ctx.add("record.source_record_id_missing", "source_record_id")
    return srid


def _report_unexpected_fields(raw: dict, ctx: RecordContext) -> None:
    unknown = 0
    for key in raw:
        if key in RECORD_FIELDS:
            continue
        if key == "agency_id":
            # The agency is whoever authenticated the upload; a body claim is never trusted.
            ctx.add("record.agency_id_ignored", "agency_id")
        elif unknown < _MAX_UNKNOWN_FIELD_WARNINGS:
            unknown += 1
            ctx.add("field.unknown", str(key)[:64])


def _nhi(value: object, ctx: RecordContext) -> str | None:
    text = ctx.text(value, "nhi")
    if text is None:
        return None
    nhi = normalise_nhi(text)
    code = check_nhi(nhi)
    if code:
        ctx.add(code, "nhi")
        return None
    return nhi


def _normalised(value: object, ctx: RecordContext, name: str,
                normalise: Callable[[str], tuple[str | None, str | None]]) -> str | None:
    """The field's text through its normaliser; a problem code from it is recorded."""
    text = ctx.text(value, name)
    if text is None:
        return None
    normalised, code = normalise(text)
    if code:
        ctx.add(code, name)
    return normalised


def _address(value: object, ctx: RecordContext) -> dict | None:
    if value is None or value == "":
        return None
    if not isinstance(value, dict):
        ctx.add("field.wrong_type", "address")
        return None
    address = dict.fromkeys(ADDRESS_FIELDS)
    for key, item in value.items():
        if key not in _ADDRESS_KEYS:
            ctx.add("field.unknown", f"address.{str(key)[:64]}")
            continue
        if key == "postcode" and type(item) is int:
            item = str(item)  # a JSON number loses a leading 0; the 4-digit check catches it
        address[key] = ctx.text(item, _ADDRESS_KEYS[key])
    pc = address["postcode"]
    if pc is not None and not (len(pc) == 4 and pc.isdigit() and pc.isascii()):
        ctx.add("address.postcode_invalid", "address.postcode")
        address["postcode"] = None
    return address if any(address.values()) else None


def _data_categories(value: object, ctx: RecordContext) -> list[str]:
    if value is None or value == "":
        return []
    if type(value) is str:
        value = split_categories(value)
    elif not isinstance(value, list):
        ctx.add("field.wrong_type", "data_categories")
        return []
    if len(value) > MAX_CATEGORIES:
        ctx.add("field.too_many_items", "data_categories")
        return []
    limit = LIMITS["data_categories.item"]
    out: list[str] = []
    for item in value:
        if type(item) is str and item in _KNOWN_CATEGORIES:  # fast path: canonical spelling is already clean
            if item not in out:
                out.append(item)
            continue
        if type(item) is not str:
            ctx.add("field.wrong_type", "data_categories")
            continue
        text, code = clean_text(item, limit)
        if code:
            ctx.add(code, "data_categories")
            continue
        if text is None:
            continue
        category = normalise_category(text)
        if category is None:
            ctx.add("data_categories.unknown", "data_categories")
            category = "other"
        if category not in out:
            out.append(category)
    return out


def _document_count(value: object, ctx: RecordContext) -> int | None:
    # No count (or a bad one) stays unknown: a notice must never read it as "0 documents".
    if value is None or value == "":
        return None
    if type(value) is int:
        count = value
    elif type(value) is float and value.is_integer():
        count = int(value)
    elif type(value) is str and value.strip().isdigit() and value.strip().isascii():
        count = int(value.strip()) if len(value.strip()) <= 10 else -1
    else:
        count = -1
    if not 0 <= count <= MAX_DOCUMENT_COUNT:
        ctx.add("document_count.invalid", "document_count")
        return None
    return count


def _preferred_language(value: object, ctx: RecordContext) -> str:
    if value is None or value == "":
        return "en"
    if type(value) is str:
        key = value.strip().lower().replace("_", "-")
        if not key:
            return "en"
        language = LANGUAGES.get(key)
        if language is not None:
            return language
    ctx.add("preferred_language.unknown", "preferred_language")
    return "en"
