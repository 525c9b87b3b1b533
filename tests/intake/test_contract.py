"""The contract check: a clean record that breaks the affected-record contract (the models
dedupe decodes with) is rejected with the field named and no value echoed."""

from services.intake.validation import validate_record
from services.intake.validation.contract import contract_violations

CLEAN = {"source_record_id": "r-1", "nhi": "ZZZ0016", "given_names": "Aroha",
         "family_name": "Testperson", "date_of_birth": "1980-04-12",
         "email": "aroha@example.nz", "mobile": "+64211234567", "address": None,
         "data_categories": ["lab_results"], "document_count": 1, "preferred_language": "en",
         "hold": None}


def test_a_clean_record_fits_the_contract():
    assert contract_violations(CLEAN) == []
    assert validate_record({k: v for k, v in CLEAN.items() if v is not None}, 1).accepted


def test_what_the_contract_rejects_is_named_by_field():
    assert contract_violations({**CLEAN, "email": "a" * 250 + "@x.nz"}) == [("field.too_long", "email")]
    assert contract_violations({**CLEAN, "mobile": "021 123"}) == [("record.contract_invalid", "mobile")]
    assert contract_violations({**CLEAN, "address": {"postcode": "12"}}) == [
        ("record.contract_invalid", "address.postcode")]
    assert contract_violations({**CLEAN, "document_count": -1}) == [
        ("record.contract_invalid", "document_count")]
    assert contract_violations({**CLEAN, "hold": {"reason": "whim"}}) == [
        ("record.contract_invalid", "hold.reason")]
