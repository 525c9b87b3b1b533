"""Property tests: validation never raises, and never echoes personal data in messages."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.parsing import FeedParser
from services.intake.validation import CODES, validate_record

from .conftest import TODAY

FIELDS = ["source_record_id", "nhi", "given_names", "family_name", "date_of_birth", "email",
          "mobile", "address", "data_categories", "document_count", "preferred_language",
          "hold", "agency_id"]
PERSONAL = ["nhi", "given_names", "family_name", "date_of_birth", "email", "mobile"]

json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)
# Plausible-looking values exercise deeper paths than pure noise does.
plausible = {
    "nhi": st.sampled_from(["ZZZ0016", "zzz00ac", "ZZZ0017", "ZHW58CN"]) | st.text(max_size=10),
    "mobile": st.sampled_from(["021 123 4567", "+64211234567", "0800 123 456"]) | st.text(max_size=15),
    "email": st.emails().map(str) | st.text(max_size=30),
    "date_of_birth": st.dates().map(lambda d: d.strftime("%d/%m/%Y")) | st.text(max_size=12),
    "address": st.fixed_dictionaries({}, optional={k: json_leaf for k in
                                                    ("line1", "line2", "suburb", "city", "postcode")}),
    "hold": st.fixed_dictionaries({}, optional={
        "reason": st.sampled_from(["health_prejudice", "representative", "other", "x"]),
        "note": json_leaf,
        "representative": st.fixed_dictionaries({}, optional={
            "name": json_leaf, "email": json_leaf, "mobile": json_leaf, "relationship": json_leaf}),
    }),
}
record = st.fixed_dictionaries({}, optional={
    f: (plausible.get(f, json_value) | json_value) for f in FIELDS
}) | st.dictionaries(st.text(max_size=20) | st.sampled_from(FIELDS), json_value, max_size=8)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(raw=record | json_value, line=st.integers(min_value=0, max_value=10**9))
def test_validate_record_never_raises_and_reports_consistently(raw, line):
    result = validate_record(raw, line, today=TODAY)
    codes = [p.code for p in result.problems]
    assert "record.internal_error" not in codes
    has_error = any(p.severity == "error" for p in result.problems)
    assert (result.record is None) == has_error
    for p in result.problems:
        assert p.line == line
        assert CODES[p.code].severity == p.severity
        assert CODES[p.code].message == p.message


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(raw=record)
def test_messages_never_contain_personal_values(raw):
    result = validate_record(raw, 1, today=TODAY)
    values = []
    for key in PERSONAL:
        value = raw.get(key)
        if isinstance(value, str) and len(value.strip()) >= 3:
            values.append(value.strip())
    for p in result.problems:
        for value in values:
            assert value not in p.message


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), fmt=st.sampled_from(["ndjson", "csv", "json"]),
       chunk=st.integers(min_value=1, max_value=64))
def test_parsers_never_raise_on_arbitrary_bytes(data, fmt, chunk):
    parser = FeedParser(fmt)
    for i in range(0, len(data), chunk):
        parser.feed(data[i:i + chunk])
    parser.close()


finite_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(recs=st.lists(st.dictionaries(st.text(max_size=8), finite_json, max_size=4), max_size=6),
       chunk=st.integers(min_value=1, max_value=40))
def test_json_array_chunking_is_invisible(recs, chunk):
    import orjson
    data = orjson.dumps(recs, option=orjson.OPT_INDENT_2)
    whole = FeedParser("json")
    expected = whole.feed(data) + whole.close()
    parser = FeedParser("json")
    got = []
    for i in range(0, len(data), chunk):
        got += parser.feed(data[i:i + chunk])
    got += parser.close()
    assert got == expected == [(i + 1, r) for i, r in enumerate(recs)]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(raw=record)
def test_intake_rules_and_the_contract_agree(raw):
    """The contract check (validation/contract.py) is a backstop: intake's own rules already
    produce what the contract models accept, so it never has to reject a record itself."""
    result = validate_record(raw, 1, today=TODAY)
    assert "record.contract_invalid" not in [p.code for p in result.problems]
