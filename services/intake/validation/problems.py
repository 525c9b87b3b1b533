"""Problems found while reading a feed: one stable code table for docs, API and reports.

Messages are fixed per code so they can never echo a personal value (an NHI, a name,
a phone number); the `field` says where the problem is, the code says what it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"


class CodeInfo(NamedTuple):
    severity: Severity
    message: str


# Every code intake can report. Errors reject the record; warnings drop a field (or
# apply a default) and keep the record, because a person must not be lost over a typo.
CODES: dict[str, CodeInfo] = {
    # --- record-level errors
    "record.not_an_object": CodeInfo(ERROR, "Record is not a JSON object"),
    "record.source_record_id_missing": CodeInfo(ERROR, "source_record_id is missing"),
    "record.no_name": CodeInfo(ERROR, "Record has neither given_names nor family_name"),
    "record.unreachable": CodeInfo(
        ERROR,
        "Record has nothing to identify or reach the person by "
        "(no usable NHI, date of birth, email, mobile or address line)",
    ),
    "record.internal_error": CodeInfo(ERROR, "Record could not be validated (internal error)"),
    "record.contract_invalid": CodeInfo(
        ERROR, "Field does not fit the affected-record contract once normalised"
    ),
    "field.wrong_type": CodeInfo(ERROR, "Field has the wrong type"),
    "field.too_long": CodeInfo(ERROR, "Field is longer than its limit"),
    "field.too_many_items": CodeInfo(ERROR, "List field has more items than its limit"),
    "text.control_characters": CodeInfo(ERROR, "Text contains control characters"),
    "text.invalid_unicode": CodeInfo(ERROR, "Text contains invalid Unicode (lone surrogates)"),
    # --- holds: a hold must never be silently lost, so every hold problem is an error
    "hold.malformed": CodeInfo(ERROR, "hold must be an object with a reason"),
    "hold.reason_missing": CodeInfo(ERROR, "hold has no reason"),
    "hold.reason_unknown": CodeInfo(
        ERROR, "hold reason is not one of health_prejudice, representative, other"
    ),
    "hold.representative_missing": CodeInfo(
        ERROR, "hold for a representative has no representative details"
    ),
    "hold.representative_unreachable": CodeInfo(
        ERROR, "representative has no valid email or mobile"
    ),
    "hold.representative_contact_invalid": CodeInfo(
        ERROR, "representative's email or mobile is invalid"
    ),
    # --- feed parsing errors (per line unless marked fatal by the parser)
    "parse.invalid_json": CodeInfo(ERROR, "Line is not valid JSON"),
    "parse.invalid_utf8": CodeInfo(ERROR, "Line is not valid UTF-8"),
    "parse.record_too_large": CodeInfo(ERROR, "Record is larger than the size limit"),
    "parse.not_a_json_array": CodeInfo(ERROR, "JSON feed is not an array of records"),
    "parse.json_structure": CodeInfo(ERROR, "JSON array is malformed; the rest of the feed was not read"),
    "parse.truncated": CodeInfo(ERROR, "Feed ended in the middle of a record"),
    "parse.trailing_data": CodeInfo(ERROR, "Unexpected data after the end of the JSON array"),
    "csv.column_count": CodeInfo(ERROR, "CSV row has a different number of columns from the header"),
    "csv.malformed": CodeInfo(ERROR, "CSV row is malformed (quoting)"),
    "csv.header_missing": CodeInfo(
        ERROR, "CSV has no header row naming the fields (source_record_id, …); the feed was not read"),
    "csv.header_invalid": CodeInfo(ERROR, "CSV header names a field twice; the feed was not read"),
    # --- warnings: field dropped or defaulted, record kept
    "record.agency_id_ignored": CodeInfo(
        WARNING, "agency_id in the record is ignored; the agency is the authenticated sender"
    ),
    "field.unknown": CodeInfo(WARNING, "Unknown field ignored"),
    "nhi.malformed": CodeInfo(WARNING, "NHI is not in an NHI format (AAANNNC or AAANNAC); dropped"),
    "nhi.check_failed": CodeInfo(WARNING, "NHI fails its check character; dropped"),
    "mobile.invalid": CodeInfo(WARNING, "Mobile is not a valid phone number; dropped"),
    "mobile.not_a_mobile": CodeInfo(
        WARNING, "Phone number is not a mobile (landline, toll-free or other); dropped"
    ),
    "email.invalid": CodeInfo(WARNING, "Email address is not valid; dropped"),
    "date_of_birth.unrecognised": CodeInfo(
        WARNING, "Date of birth is not in YYYY-MM-DD or dd/mm/yyyy form; dropped"
    ),
    "date_of_birth.impossible": CodeInfo(WARNING, "Date of birth is not a real calendar date; dropped"),
    "date_of_birth.in_future": CodeInfo(WARNING, "Date of birth is in the future; dropped"),
    "date_of_birth.too_old": CodeInfo(WARNING, "Date of birth is more than 130 years ago; dropped"),
    "address.postcode_invalid": CodeInfo(WARNING, "Postcode is not 4 digits; postcode dropped"),
    "data_categories.unknown": CodeInfo(WARNING, "Unknown data category recorded as 'other'"),
    "document_count.invalid": CodeInfo(
        WARNING, "document_count is not a non-negative whole number; left unknown"
    ),
    "preferred_language.unknown": CodeInfo(
        WARNING, "preferred_language is not 'en' or 'mi'; set to 'en'"
    ),
}


@dataclass(frozen=True, slots=True)
class Problem:
    severity: Severity
    line: int
    source_record_id: str | None
    field: str | None
    code: str
    message: str

    @classmethod
    def of(cls, code: str, line: int, source_record_id: str | None = None,
           field: str | None = None) -> Problem:
        info = CODES[code]
        return cls(info.severity, line, source_record_id, field, code, info.message)

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def to_dict(self) -> dict:
        return {
            "severity": self.severity,
            "line": self.line,
            "source_record_id": self.source_record_id,
            "field": self.field,
            "code": self.code,
            "message": self.message,
        }


def code_table() -> list[dict[str, str]]:
    """All codes as rows, for docs and the API."""
    return [{"code": c, "severity": i.severity, "message": i.message} for c, i in CODES.items()]
