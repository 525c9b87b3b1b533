"""Dedupe's rules and identity state are plain Python: importing them (and everything they
import) loads no database, HTTP or Kafka library."""

import subprocess
import sys

import pytest

FORBIDDEN = ("sqlalchemy", "sqlmodel", "fastapi", "starlette", "aiokafka")


@pytest.mark.parametrize("module", ["release", "lineage", "reviews", "notices", "identity"])
def test_pure_module_imports_no_io_library(module):
    # A fresh interpreter: this process has all of them loaded already.
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, services.dedupe.{module}; "
         f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(FORBIDDEN)!r})))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"services.dedupe.{module} imports {loaded}"
