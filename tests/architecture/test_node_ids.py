"""Every collected test has its own node id.

Anything keyed by node id — pytest-xdist's scheduling (`make test-parallel`), ``--lf``, ``-k`` on an
id, a JUnit report — silently merges tests that share one. The schemathesis tests are where that
happened (tests/conftest.py says why); they are collected here in a separate pytest.
"""

import subprocess
import sys
from collections import Counter

import pytest

from testkit.infra import REPO

pytestmark = pytest.mark.slow  # a second pytest collecting three apps' schemas

SCHEMA_FUZZ_TESTS = ["tests/intake/api/test_fuzz.py", "tests/security/test_fuzz_all_checks.py"]


def test_schemathesis_tests_each_have_their_own_node_id():
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *SCHEMA_FUZZ_TESTS],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    assert len(ids) > 100  # one per API operation (and credential), not one per function
    shared = {node_id: n for node_id, n in Counter(ids).items() if n > 1}
    assert not shared, f"{len(shared)} node ids shared by more than one test: {sorted(shared)[:5]}"
