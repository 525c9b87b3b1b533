import pytest

from services.intake.validation import CODES, Problem, validate_record

from .conftest import TODAY


def run(raw, line=7):
    return validate_record(raw, line, today=TODAY)


def codes(result):
    return [p.code for p in result.problems]


def test_good_record_is_clean(good_record):
    result = run(good_record)
    assert result.problems == []
    assert result.line == 7
    assert result.record == {
        "source_record_id": "GP-000123",
        "nhi": "ZZZ0016",
        "given_names": "Aroha",
        "family_name": "Te Whare",
        "date_of_birth": "1985-04-03",
        "email": "aroha@example.co.nz",
        "mobile": "+64211234567",
        "address": {"line1": "12 Example Street", "line2": None, "suburb": "Te Aro",
                    "city": "Wellington", "postcode": "6011"},
        "data_categories": ["lab_results", "clinical_notes"],
        "document_count": 3,
        "preferred_language": "mi",
        "hold": None,
    }


def test_minimal_record_gets_defaults():
    result = run({"source_record_id": "1", "family_name": "Ngata", "nhi": " zzz00ac "})
    assert result.problems == []
    assert result.record["nhi"] == "ZZZ00AC"
    assert result.record["data_categories"] == []
    assert result.record["document_count"] is None  # not sent: unknown, never zero
    assert result.record["preferred_language"] == "en"
    assert result.record["address"] is None and result.record["hold"] is None


def test_problem_carries_line_id_field_code_message(good_record):
    good_record["nhi"] = "ZZZ0017"
    (problem,) = run(good_record, line=42).problems
    assert problem == Problem("warning", 42, "GP-000123", "nhi", "nhi.check_failed",
                              CODES["nhi.check_failed"].message)
    assert "ZZZ0017" not in problem.message


# ---- errors reject the record

@pytest.mark.parametrize("srid", [None, "", "   "])
def test_missing_source_record_id(good_record, srid):
    good_record["source_record_id"] = srid
    result = run(good_record)
    assert result.record is None
    assert codes(result) == ["record.source_record_id_missing"]


def test_numeric_source_record_id_is_text(good_record):
    good_record["source_record_id"] = 12345
    assert run(good_record).record["source_record_id"] == "12345"


def test_source_record_id_too_long(good_record):
    good_record["source_record_id"] = "x" * 129
    result = run(good_record)
    assert result.record is None and codes(result) == ["field.too_long"]
    good_record["source_record_id"] = "x" * 128
    assert run(good_record).record is not None


def test_no_name(good_record):
    del good_record["given_names"]
    good_record["family_name"] = ""
    result = run(good_record)
    assert result.record is None and codes(result) == ["record.no_name"]


def test_one_name_is_enough(good_record):
    del good_record["family_name"]
    assert run(good_record).record["given_names"] == "Aroha"


def test_unreachable():
    result = run({"source_record_id": "1", "given_names": "Aroha"})
    assert result.record is None and codes(result) == ["record.unreachable"]


@pytest.mark.parametrize("field, value", [
    ("nhi", "ZZZ0016"), ("date_of_birth", "03/04/1985"), ("email", "a@example.nz"),
    ("mobile", "0211234567"), ("address", {"line1": "RD 3"}),
])
def test_any_one_identifier_is_enough(field, value):
    result = run({"source_record_id": "1", "given_names": "Aroha", field: value})
    assert result.record is not None, codes(result)


def test_postcode_alone_does_not_reach_anyone():
    result = run({"source_record_id": "1", "given_names": "A", "address": {"postcode": "6011"}})
    assert codes(result) == ["record.unreachable"]


def test_dropped_only_identifier_makes_record_unreachable():
    result = run({"source_record_id": "1", "given_names": "A", "nhi": "ZZZ0017"})
    assert result.record is None
    assert codes(result) == ["nhi.check_failed", "record.unreachable"]


def test_not_an_object():
    for raw in ([1, 2], "text", None, 3):
        result = run(raw)
        assert result.record is None and codes(result) == ["record.not_an_object"]


@pytest.mark.parametrize("field, value", [
    ("given_names", 5), ("family_name", ["Te", "Whare"]), ("nhi", 16), ("email", True),
    ("mobile", 211234567), ("date_of_birth", 19850403), ("address", "12 Example St"),
    ("data_categories", {"a": 1}), ("source_record_id", 1.5),
])
def test_wrong_type_is_an_error(good_record, field, value):
    good_record[field] = value
    result = run(good_record)
    assert result.record is None
    assert ("field.wrong_type", field) in [(p.code, p.field) for p in result.problems]


@pytest.mark.parametrize("field, limit", [
    ("given_names", 200), ("family_name", 200), ("email", 254), ("nhi", 16),
])
def test_field_too_long(good_record, field, limit):
    good_record[field] = "a" * (limit + 1)
    result = run(good_record)
    assert result.record is None
    assert ("field.too_long", field) in [(p.code, p.field) for p in result.problems]


@pytest.mark.parametrize("sub", ["line1", "line2", "suburb", "city"])
def test_address_line_too_long(good_record, sub):
    good_record["address"][sub] = "a" * 201
    result = run(good_record)
    assert result.record is None
    assert [(p.code, p.field) for p in result.problems] == [("field.too_long", f"address.{sub}")]


@pytest.mark.parametrize("field", ["given_names", "family_name", "source_record_id"])
def test_control_characters_are_an_error(good_record, field):
    good_record[field] = "Aro\x07ha"
    result = run(good_record)
    assert result.record is None
    assert [(p.code, p.field) for p in result.problems] == [("text.control_characters", field)]


def test_control_characters_in_address(good_record):
    good_record["address"]["line1"] = "12 Example St\nFlat 2"
    assert codes(run(good_record)) == ["text.control_characters"]


def test_every_error_is_reported_at_once(good_record):
    good_record.update(source_record_id="", given_names="A\x00", email="x" * 300)
    result = run(good_record)
    assert set(codes(result)) == {"record.source_record_id_missing", "text.control_characters",
                                  "field.too_long"}


# ---- warnings keep the record

@pytest.mark.parametrize("field, value, code", [
    ("nhi", "ZZZ0017", "nhi.check_failed"),
    ("nhi", "ZHW58CN", "nhi.check_failed"),
    ("nhi", "12345", "nhi.malformed"),
    ("mobile", "09 523 4567", "mobile.not_a_mobile"),
    ("mobile", "0800 123 456", "mobile.not_a_mobile"),
    ("mobile", "021 12", "mobile.invalid"),
    ("email", "aroha@example", "email.invalid"),
    ("date_of_birth", "31/02/1985", "date_of_birth.impossible"),
    ("date_of_birth", "2030-01-01", "date_of_birth.in_future"),
    ("date_of_birth", "1800-01-01", "date_of_birth.too_old"),
    ("date_of_birth", "April 1985", "date_of_birth.unrecognised"),
])
def test_bad_field_is_dropped_with_a_warning(good_record, field, value, code):
    good_record[field] = value
    result = run(good_record)
    assert result.record is not None
    assert result.record[field] is None
    assert [(p.severity, p.code, p.field) for p in result.problems] == [("warning", code, field)]


def test_names_are_nfc(good_record):
    good_record["given_names"] = "Ma\u0304ui"
    good_record["family_name"] = "  Te Ra\u0304 "
    record = run(good_record).record
    assert record["given_names"] == "Māui" and record["family_name"] == "Te Rā"


def test_dd_mm_yyyy_date(good_record):
    good_record["date_of_birth"] = "03/04/1985"
    assert run(good_record).record["date_of_birth"] == "1985-04-03"


def test_email_domain_lower_cased(good_record):
    good_record["email"] = "  Aroha@Example.CO.NZ "
    assert run(good_record).record["email"] == "Aroha@example.co.nz"


@pytest.mark.parametrize("postcode", ["601", "60111", "ABCD", 611])
def test_bad_postcode_drops_only_the_postcode(good_record, postcode):
    good_record["address"]["postcode"] = postcode
    result = run(good_record)
    assert result.record["address"]["postcode"] is None
    assert result.record["address"]["line1"] == "12 Example Street"
    assert codes(result) == ["address.postcode_invalid"]


def test_numeric_postcode_with_four_digits(good_record):
    good_record["address"]["postcode"] = 6011
    assert run(good_record).record["address"]["postcode"] == "6011"


def test_address_fields_trimmed_and_nfc(good_record):
    good_record["address"] = {"line1": " 1 Ma\u0304ori Road ", "line2": "", "city": "Ōtautahi"}
    address = run(good_record).record["address"]
    assert address == {"line1": "1 Māori Road", "line2": None, "suburb": None,
                       "city": "Ōtautahi", "postcode": None}


def test_data_categories_dedup_and_unknown_maps_to_other(good_record):
    good_record["data_categories"] = ["lab_results", "Lab Results", "x-rays", "images",
                                      "tarot", "other"]
    result = run(good_record)
    assert result.record["data_categories"] == ["lab_results", "other", "images"]
    assert codes(result) == ["data_categories.unknown", "data_categories.unknown"]


def test_data_categories_as_delimited_string(good_record):
    good_record["data_categories"] = "lab_results; images|prescriptions"
    assert run(good_record).record["data_categories"] == ["lab_results", "images",
                                                          "prescriptions"]


def test_too_many_categories_is_an_error(good_record):
    good_record["data_categories"] = ["images"] * 33
    assert codes(run(good_record)) == ["field.too_many_items"]


@pytest.mark.parametrize("value, expected", [(0, 0), (12, 12), ("7", 7), (" 7 ", 7), (3.0, 3),
                                             (None, None), ("", None)])
def test_document_count(good_record, value, expected):
    good_record["document_count"] = value
    result = run(good_record)
    assert result.record["document_count"] == expected and result.problems == []


@pytest.mark.parametrize("value", [-1, "abc", 2.5, True, "1e3", 10**12, [], "-3"])
def test_bad_document_count_warns_and_stays_unknown(good_record, value):
    good_record["document_count"] = value
    result = run(good_record)
    assert result.record["document_count"] is None
    assert codes(result) == ["document_count.invalid"]


@pytest.mark.parametrize("value, expected", [("en", "en"), ("MI", "mi"), ("mi-NZ", "mi"),
                                             ("en_NZ", "en"), (None, "en"), ("", "en")])
def test_preferred_language(good_record, value, expected):
    good_record["preferred_language"] = value
    result = run(good_record)
    assert result.record["preferred_language"] == expected and result.problems == []


@pytest.mark.parametrize("value", ["fr", "māori", 1])
def test_unknown_language_warns_and_defaults_to_english(good_record, value):
    good_record["preferred_language"] = value
    result = run(good_record)
    assert result.record["preferred_language"] == "en"
    assert codes(result) == ["preferred_language.unknown"]


def test_agency_id_in_body_is_ignored_with_warning(good_record):
    good_record["agency_id"] = "some-other-agency"
    result = run(good_record)
    assert "agency_id" not in result.record
    assert codes(result) == ["record.agency_id_ignored"]


def test_unknown_fields_warn(good_record):
    good_record["favourite_colour"] = "blue"
    good_record["address"]["country"] = "NZ"
    result = run(good_record)
    assert result.record is not None
    assert [(p.code, p.field) for p in result.problems] == [
        ("field.unknown", "favourite_colour"), ("field.unknown", "address.country")]


def test_unknown_field_warnings_are_capped():
    raw = {"source_record_id": "1", "given_names": "A", "nhi": "ZZZ0016"}
    raw.update({f"extra{i}": "x" for i in range(50)})
    assert codes(run(raw)).count("field.unknown") == 10


# ---- holds

def test_health_prejudice_hold(good_record):
    good_record["hold"] = {"reason": "health_prejudice", "note": "  GP to advise ", }
    assert run(good_record).record["hold"] == {"reason": "health_prejudice",
                                               "note": "GP to advise", "representative": None}


def test_representative_hold(good_record):
    good_record["hold"] = {"reason": "representative", "representative": {
        "name": "Mere Ngata", "mobile": "027 123 4567", "relationship": "mother"}}
    hold = run(good_record).record["hold"]
    assert hold["representative"] == {"name": "Mere Ngata", "email": None,
                                      "mobile": "+64271234567", "relationship": "mother"}


@pytest.mark.parametrize("hold, code", [
    ("health_prejudice", "hold.malformed"),
    (["health_prejudice"], "hold.malformed"),
    (True, "hold.malformed"),
    ({}, "hold.reason_missing"),
    ({"note": "wait"}, "hold.reason_missing"),
    ({"reason": ""}, "hold.reason_missing"),
    ({"reason": "because"}, "hold.reason_unknown"),
    ({"reason": 3}, "field.wrong_type"),
    ({"reason": "other", "note": "x" * 1001}, "field.too_long"),
    ({"reason": "other", "note": "a\x00"}, "text.control_characters"),
    ({"reason": "representative"}, "hold.representative_missing"),
    ({"reason": "representative", "representative": {"name": "Mere"}},
     "hold.representative_unreachable"),
    ({"reason": "representative", "representative": {"name": "Mere", "mobile": "09 523 4567"}},
     "hold.representative_contact_invalid"),
    ({"reason": "other", "representative": {"email": "not-an-email"}},
     "hold.representative_contact_invalid"),
    ({"reason": "other", "representative": "Mere"}, "field.wrong_type"),
])
def test_malformed_hold_rejects_the_record(good_record, hold, code):
    good_record["hold"] = hold
    result = run(good_record)
    assert result.record is None
    assert codes(result) == [code]
    assert all(p.severity == "error" for p in result.problems)


@pytest.mark.parametrize("hold", [None, ""])
def test_absent_hold(good_record, hold):
    good_record["hold"] = hold
    assert run(good_record).record["hold"] is None


def test_hold_reason_spelling_is_tolerated(good_record):
    good_record["hold"] = {"reason": "Health Prejudice"}
    assert run(good_record).record["hold"]["reason"] == "health_prejudice"


# ---- the code table

def test_every_code_has_severity_and_message():
    for code, info in CODES.items():
        assert info.severity in ("error", "warning"), code
        assert info.message.strip(), code


def test_every_code_used_in_the_source_is_in_the_table():
    import re
    from pathlib import Path

    from services.intake.validation import LIMITS

    NOT_CODES = set(LIMITS) | {"hold.representative"}  # field names, not codes
    root = Path(__file__).resolve().parents[2] / "services" / "intake"
    prefixes = {c.split(".")[0] for c in CODES}
    used = set()
    for package in ("validation", "parsing"):
        for path in (root / package).rglob("*.py"):
            for literal in re.findall(r'"([a-z_]+\.[a-z_]+)"', path.read_text()):
                if literal.split(".")[0] in prefixes and literal not in NOT_CODES:
                    used.add(literal)
    assert used and used - set(CODES) == set()
