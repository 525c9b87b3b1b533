import asyncio
import io
import tracemalloc

import orjson
import pytest

from services.intake.parsing import (
    FeedParser,
    ParseError,
    aiter_feed,
    detect_format,
    iter_feed,
    validate_feed,
)

BOM = b"\xef\xbb\xbf"


def parse(data: bytes, fmt: str, chunk: int | None = None, **kw):
    if chunk is None:
        return list(iter_feed(io.BytesIO(data), fmt, **kw))
    parser = FeedParser(fmt, **kw)
    out = []
    for i in range(0, len(data), chunk):
        out += parser.feed(data[i:i + chunk])
    return out + parser.close()


def errors(items):
    return [(line, item.code) for line, item in items if isinstance(item, ParseError)]


def records(items):
    return [(line, item) for line, item in items if isinstance(item, dict)]


REC1 = {"source_record_id": "1", "given_names": "Aroha", "nhi": "ZZZ0016"}
REC2 = {"source_record_id": "2", "family_name": "Ngata", "address": {"line1": "1 A St"},
        "data_categories": ["images"], "hold": {"reason": "other", "note": "has \"quotes\" },"}}


# ---- NDJSON

NDJSON = orjson.dumps(REC1) + b"\n\n" + b"not json\n" + orjson.dumps(REC2) + b"\n"


@pytest.mark.parametrize("chunk", [None, 1, 2, 5, 4096])
def test_ndjson(chunk):
    items = parse(NDJSON, "ndjson", chunk)
    assert records(items) == [(1, REC1), (4, REC2)]
    assert errors(items) == [(3, "parse.invalid_json")]


def test_ndjson_bom_crlf_and_no_final_newline():
    data = BOM + orjson.dumps(REC1) + b"\r\n" + orjson.dumps(REC2)
    for chunk in (None, 1):
        assert records(parse(data, "ndjson", chunk)) == [(1, REC1), (2, REC2)]


def test_ndjson_bad_utf8_is_a_per_line_error():
    data = orjson.dumps(REC1) + b'\n{"given_names": "\xff\xfe"}\n' + orjson.dumps(REC2)
    items = parse(data, "ndjson")
    assert errors(items) == [(2, "parse.invalid_utf8")]
    assert [line for line, _ in records(items)] == [1, 3]


def test_ndjson_non_object_line():
    assert errors(parse(b'[1,2]\n"x"\n', "ndjson")) == [(1, "record.not_an_object"),
                                                         (2, "record.not_an_object")]


def test_ndjson_oversize_line_is_skipped_not_buffered():
    data = orjson.dumps(REC1) + b"\n" + b'{"x":"' + b"a" * 5000 + b'"}\n' + orjson.dumps(REC2)
    items = parse(data, "ndjson", 100, max_record_bytes=1000)
    assert errors(items) == [(2, "parse.record_too_large")]
    assert [line for line, _ in records(items)] == [1, 3]


# ---- CSV

CSV = (
    "\ufeffsource_record_id,given_names,family_name,nhi,date_of_birth,mobile,email,"
    "address_line1,address.line2,Address Suburb,address_city,address_postcode,"
    "data_categories,document_count,preferred_language,hold_reason,hold_note,"
    "representative_name,representative_mobile,representative_relationship,agency_id\r\n"
    'GP-1,Ma\u0304ui,"Te ""Big"" Whare",zzz0016,03/04/1985,021 123 4567,m@example.nz,'
    '"12 Example St, Te Aro",,,Wellington,6011,lab_results;images|other,2,mi,,,,,,\r\n'
    "GP-2,Aroha,Ngata,,,,,\"1 Multi\nLine Rd\",,,,,,,,representative,\"note, with comma\","
    "Mere Ngata,027 123 4567,mother,evil-agency\r\n"
    "GP-3,too,few,columns\r\n"
    "\r\n"
    'GP-4,Ana,,ZZZ00AC,,,,,,,,,,,,,,,,,\r\n'
).encode()


@pytest.mark.parametrize("chunk", [None, 1, 3, 7, 64])
def test_csv(chunk):
    items = parse(CSV, "csv", chunk)
    # GP-2 spans physical lines 3-4 (quoted newline), so GP-3 is on line 5 and GP-4 on 7
    assert errors(items) == [(5, "csv.column_count")]
    got = dict(records(items))
    assert sorted(got) == [2, 3, 7]
    assert got[2] == {
        "source_record_id": "GP-1", "given_names": "Ma\u0304ui", "family_name": 'Te "Big" Whare',
        "nhi": "zzz0016", "date_of_birth": "03/04/1985", "mobile": "021 123 4567",
        "email": "m@example.nz", "data_categories": "lab_results;images|other",
        "address": {"line1": "12 Example St, Te Aro", "city": "Wellington", "postcode": "6011"},
        "document_count": "2", "preferred_language": "mi",
    }
    assert got[3]["address"] == {"line1": "1 Multi\nLine Rd"}
    assert got[3]["hold"] == {"reason": "representative", "note": "note, with comma",
                              "representative": {"name": "Mere Ngata", "mobile": "027 123 4567",
                                                 "relationship": "mother"}}
    assert got[7] == {"source_record_id": "GP-4", "given_names": "Ana", "nhi": "ZZZ00AC"}


def test_csv_records_validate_end_to_end():
    results = list(validate_feed(io.BytesIO(CSV), "csv"))
    by_line = {r.line: r for r in results}
    first = by_line[2].record
    assert first["given_names"] == "Māui" and first["nhi"] == "ZZZ0016"
    assert first["date_of_birth"] == "1985-04-03" and first["mobile"] == "+64211234567"
    assert first["data_categories"] == ["lab_results", "images", "other"]
    assert first["document_count"] == 2
    # the multi-line address cell holds a newline: a control character, so an error
    assert by_line[3].record is None
    assert {p.code for p in by_line[3].problems} == {"text.control_characters",
                                                     "record.agency_id_ignored"}
    assert [p.code for p in by_line[5].problems] == ["csv.column_count"]
    assert by_line[7].record["nhi"] == "ZZZ00AC"


def test_csv_bad_utf8_row():
    data = b"source_record_id,given_names,nhi\n1,\xe9clair,ZZZ0016\n2,Ana,ZZZ0016\n"
    items = parse(data, "csv")
    assert errors(items) == [(2, "parse.invalid_utf8")]
    assert records(items) == [(3, {"source_record_id": "2", "given_names": "Ana",
                                   "nhi": "ZZZ0016"})]


def test_csv_quote_inside_unquoted_field_is_literal():
    data = b'source_record_id,address_line1\n1,Flat 5" rear\n2,x\n'
    assert records(parse(data, "csv")) == [
        (2, {"source_record_id": "1", "address": {"line1": 'Flat 5" rear'}}),
        (3, {"source_record_id": "2", "address": {"line1": "x"}}),
    ]


def test_csv_unterminated_quote_at_end():
    data = b'source_record_id,given_names\n1,"Aroha\n2,Ana\n'
    assert errors(parse(data, "csv")) == [(2, "parse.truncated")]


@pytest.mark.parametrize("header", [b"source_record_id,nhi,NHI\n",
                                    b"source_record_id,address_line1,address.line1\n",
                                    b"source_record_id,hold,hold_reason\n"])
def test_csv_conflicting_header_is_fatal(header):
    items = parse(header + b"1,a,b\n", "csv")
    assert len(items) == 1 and items[0][1].code == "csv.header_invalid" and items[0][1].fatal


@pytest.mark.parametrize("first_row", [
    b"GP-000123,ZZZ0016,Aroha,Te Whare,1985-04-03,aroha@example.co.nz\n",  # a person's row
    b"Aroha,Te Whare,ZZZ0016\n",  # identifier-like values, but no source_record_id column
    b"source_record_id,Date of Birth (DD/MM/YYYY)\n",  # a cell no column is called
])
def test_csv_without_a_header_row_is_fatal_and_names_nothing(first_row):
    items = parse(first_row + b"GP-000124,ZZZ0024,Hemi,Tauira,1990-01-01,hemi@example.co.nz\n", "csv")
    assert len(items) == 1
    line, error = items[0]
    assert (line, error.code, error.fatal) == (1, "csv.header_missing", True)
    assert error.to_problem().field is None


def test_csv_header_with_bom_blank_and_unknown_columns_is_a_header():
    items = parse(b"\xef\xbb\xbfSource Record ID,given_names,,Notes\n1,Ana,,x\n", "csv")
    assert items == [(2, {"source_record_id": "1", "given_names": "Ana", "notes": "x"})]


def test_csv_oversize_multiline_record():
    data = (b'source_record_id,given_names\n1,"' + b"a\n" * 2000 + b'"\n2,Ana\n')
    items = parse(data, "csv", 50, max_record_bytes=1000)
    assert errors(items) == [(2, "parse.record_too_large")]
    assert records(items) == [(2003, {"source_record_id": "2", "given_names": "Ana"})]


# ---- JSON array

JSON = b" [\n" + orjson.dumps(REC1) + b",\n 5 ,\n {bad},\n" + orjson.dumps(REC2) + b"\n] \n"


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 13, 4096])
def test_json_array_any_chunking(chunk):
    items = parse(JSON, "json", chunk)
    assert records(items) == [(1, REC1), (4, REC2)]
    assert errors(items) == [(2, "record.not_an_object"), (3, "parse.invalid_json")]


def test_json_array_one_byte_at_a_time_with_bom_and_tricky_strings():
    recs = [{"source_record_id": str(i), "note": 'a"]},{[\\' * i, "nested": {"a": [{"b": {}}]}}
            for i in range(20)]
    data = BOM + orjson.dumps(recs)
    assert [item for _, item in parse(data, "json", 1)] == recs


def test_json_array_empty():
    assert parse(b"[]", "json") == [] and parse(b"  [ ]  ", "json", 1) == []


@pytest.mark.parametrize("data, expected", [
    (b'{"source_record_id": "1"}', [(0, "parse.not_a_json_array")]),
    (b'[{"a": 1}, {"b": 2}', [(2, "parse.truncated")]),
    (b'[{"a": 1}] trailing', [(2, "parse.trailing_data")]),
    (b'[{"a": 1},]', [(2, "parse.invalid_json")]),
    (b'[{"a": [1}, {"b": 2}]', [(1, "parse.json_structure")]),
])
def test_json_array_errors(data, expected):
    for chunk in (None, 1):
        assert errors(parse(data, "json", chunk)) == expected


def test_json_array_bad_utf8_element():
    data = b'[{"a": "\xff"}, {"b": 1}]'
    for chunk in (None, 1):
        items = parse(data, "json", chunk)
        assert errors(items) == [(1, "parse.invalid_utf8")]
        assert records(items) == [(2, {"b": 1})]


def test_json_array_oversize_element():
    data = b'[{"x": "' + b"a" * 5000 + b'"}, {"b": 1}]'
    items = parse(data, "json", 64, max_record_bytes=1000)
    assert errors(items) == [(1, "parse.record_too_large")]
    assert records(items) == [(2, {"b": 1})]


# ---- streaming

@pytest.mark.parametrize("fmt", ["ndjson", "json", "csv"])
def test_memory_stays_flat_in_feed_size(fmt):
    rec = {"source_record_id": "x" * 20, "given_names": "Aroha", "nhi": "ZZZ0016",
           "address": {"line1": "12 Example Street"}}
    n = 20_000  # ~2 MB of feed

    def chunks():
        if fmt == "csv":
            yield b"source_record_id,given_names,nhi,address_line1\n"
            row = b"xxxxxxxxxxxxxxxxxxxx,Aroha,ZZZ0016,12 Example Street\n"
            for _ in range(n):
                yield row
            return
        line = orjson.dumps(rec)
        if fmt == "json":
            yield b"["
        for i in range(n):
            yield (b"," if fmt == "json" and i else b"") + line + (b"\n" if fmt == "ndjson" else b"")
        if fmt == "json":
            yield b"]"

    parser = FeedParser(fmt)
    count = 0
    tracemalloc.start()
    try:
        for chunk in chunks():
            count += len(parser.feed(chunk))
        count += len(parser.close())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    assert peak < 200_000  # a couple of records' worth, not the 2 MB feed


def test_async_iteration():
    async def body():
        for i in range(0, len(NDJSON), 3):
            yield NDJSON[i:i + 3]

    async def collect():
        return [item async for item in aiter_feed(body(), "ndjson")]

    items = asyncio.run(collect())
    assert records(items) == [(1, REC1), (4, REC2)]


def test_feed_after_close_is_an_error():
    parser = FeedParser("ndjson")
    parser.close()
    with pytest.raises(RuntimeError):
        parser.feed(b"{}")


def test_unknown_format():
    with pytest.raises(ValueError):
        FeedParser("xml")


@pytest.mark.parametrize("content_type, filename, expected", [
    ("application/x-ndjson", None, "ndjson"),
    ("application/jsonl; charset=utf-8", None, "ndjson"),
    ("text/csv; charset=UTF-8", "feed.json", "csv"),
    ("application/json", None, "json"),
    ("application/octet-stream", "Feed.CSV", "csv"),
    (None, "records.jsonl", "ndjson"),
    (None, "records.ndjson", "ndjson"),
    ("text/plain", "records.json", "json"),
    (None, None, None),
    ("application/pdf", "x.pdf", None),
])
def test_detect_format(content_type, filename, expected):
    assert detect_format(content_type, filename) == expected
