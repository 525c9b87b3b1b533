"""Pure validation of affected-record.v1 feed records (no I/O)."""
from services.common.nhi import check_nhi, is_valid_nhi, normalise_nhi

from .categories import DATA_CATEGORIES, normalise_category
from .dates import parse_date_of_birth
from .email import normalise_email
from .hold import HOLD_REASONS, validate_hold
from .mobile import normalise_mobile
from .problems import CODES, ERROR, WARNING, CodeInfo, Problem, Severity, code_table
from .record import RECORD_FIELDS, ValidationResult, validate_record
from .text import LIMITS, clean_text

__all__ = [
    "CODES", "CodeInfo", "DATA_CATEGORIES", "ERROR", "HOLD_REASONS", "LIMITS", "Problem",
    "RECORD_FIELDS", "Severity", "ValidationResult", "WARNING", "check_nhi", "clean_text",
    "code_table", "is_valid_nhi", "normalise_category", "normalise_email", "normalise_mobile",
    "normalise_nhi", "parse_date_of_birth", "validate_hold", "validate_record",
]
