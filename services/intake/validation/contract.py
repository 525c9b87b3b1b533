"""The last check of an accepted record: the contract models dedupe decodes it with, after
every normalisation. What intake accepts, dedupe can read — a record that passes intake's own
rules but not the contract (a limit outgrown by normalising, a rule the two disagree on) is
rejected here with the field named, instead of stalling or dead-lettering downstream."""
from __future__ import annotations

from pydantic import ConfigDict, ValidationError, create_model

from services.common.logging import validation_errors
from services.common.messages import AffectedRecordMessage, SealedPersonalFields

# The record's fields that travel in clear in the message; the rest are sealed.
CLEAR_FIELDS = ("source_record_id", "data_categories", "document_count", "preferred_language")

# The clear fields exactly as AffectedRecordMessage declares them (same types and limits).
_ClearFields = create_model(
    "AffectedRecordClearFields",
    __config__=ConfigDict(extra="forbid", hide_input_in_errors=True),
    **{name: (AffectedRecordMessage.model_fields[name].annotation,
              AffectedRecordMessage.model_fields[name]) for name in CLEAR_FIELDS},
)


def contract_violations(record: dict) -> list[tuple[str, str]]:
    """(problem code, field) for each way the clean record breaks the contract; [] if none."""
    clear = {name: record[name] for name in CLEAR_FIELDS}
    personal = {k: v for k, v in record.items() if k not in CLEAR_FIELDS}
    found: list[tuple[str, str]] = []
    for model, values in ((_ClearFields, clear), (SealedPersonalFields, personal)):
        try:
            model.model_validate(values)
        except ValidationError as exc:
            found.extend(("field.too_long" if kind == "string_too_long" else "record.contract_invalid",
                          loc) for loc, kind in validation_errors(exc))
    return found
