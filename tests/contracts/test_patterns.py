"""Every `pattern` in the contracts means the same in every regex engine that reads them.

JSON Schema patterns are ECMA-262 regular expressions; the services check the same patterns
with pydantic (Rust's regex) and tests with Python's re. Their shorthand classes disagree:
`\\s` matches U+0085 in Rust and Python but not in ECMA, and U+FEFF in ECMA only; `\\d` and `\\w`
are Unicode-wide outside ECMA. A pattern using them lets a client send what the schema allows
and get a 422 (schemathesis found one in `web_address`). Explicit ranges mean one thing."""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
ENGINE_DEPENDENT = re.compile(r"(?<!\\)(?:\\\\)*\\[sSdDwWbB]")


def _patterns(node: object, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield where, value
            else:
                yield from _patterns(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _patterns(value, f"{where}/{i}")


def _all_patterns() -> list[tuple[str, str]]:
    found = []
    for path in sorted([*CONTRACTS.glob("schemas/*.json"), *CONTRACTS.glob("openapi/*.json")]):
        found.extend(_patterns(json.loads(path.read_text()), path.name))
    return found


def test_the_contracts_have_patterns_to_check():
    assert len(_all_patterns()) > 10


@pytest.mark.parametrize(("where", "pattern"), _all_patterns())
def test_no_pattern_uses_an_engine_dependent_class(where, pattern):
    assert not ENGINE_DEPENDENT.search(pattern), f"{where}: {pattern!r} uses \\s, \\d, \\w or \\b"
