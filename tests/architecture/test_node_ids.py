"""Every collected test has its own node id, and the same one in every collection.

Anything keyed by node id — pytest-xdist's scheduling (`make test-parallel`), ``--lf``, ``-k`` on an
id, a JUnit report — silently merges tests that share one. The schemathesis tests are where that
happened (tests/conftest.py says why); they are collected here in a separate pytest. xdist's workers each collect the suite and refuse
to start unless they all collected the same ids, so an id drawn at random breaks the parallel run.
"""

import subprocess
import sys
from collections import Counter

import pytest

from testkit.infra import REPO

pytestmark = pytest.mark.slow  # a second pytest collecting three apps' schemas

SCHEMA_FUZZ_TESTS = ["tests/intake/api/test_fuzz.py", "tests/security/test_fuzz_all_checks.py"]


def _collected_ids(*paths: str) -> list[str]:
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *paths],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    return [line for line in collected.stdout.splitlines() if "::" in line]


def test_schemathesis_tests_each_have_their_own_node_id():
    ids = _collected_ids(*SCHEMA_FUZZ_TESTS)
    assert len(ids) > 100  # one per API operation (and credential), not one per function
    shared = {node_id: n for node_id, n in Counter(ids).items() if n > 1}
    assert not shared, f"{len(shared)} node ids shared by more than one test: {sorted(shared)[:5]}"


def test_two_collections_of_the_suite_give_the_same_node_ids():
    first, second = _collected_ids("tests"), _collected_ids("tests")
    assert len(first) > 2000
    differing = sorted(set(first) ^ set(second))
    assert first == second, f"{len(differing)} node ids differ between collections: {differing[:5]}"
