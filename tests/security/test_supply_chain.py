"""The hashed locks against pyproject.toml and each other, and the Makefile installing only from
them. The one place that says a lock is stale: re-run `make lock` when these fail."""

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.security import ROOT

# Which pyproject sections each lock holds (scripts/lock.sh).
LOCKS = {
    "requirements.lock": (),
    "requirements-dev.lock": ("dev", "tools"),
    "requirements-bench.lock": ("dev", "tools", "bench"),
}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)(?:\s*;\s*(?P<marker>[^\\\n]+?))?\s*\\\n"
    r"(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64}[ \t]*\\?\n?)+)"
    r"(?P<via>(?:[ \t]+#.*\n?)*)", re.M)


def _lock(name: str) -> dict[tuple[str, str], dict]:
    """(canonical name, marker) -> version, hashes and what it is there for (uv's `via` lines)."""
    text = (ROOT / name).read_text()
    entries = {}
    for m in _ENTRY.finditer(text):
        via = {line.strip().lstrip("#").strip().removeprefix("via").strip()
               for line in m["via"].splitlines()} - {""}
        entries[(canonicalize_name(m["name"]), (m["marker"] or "").strip())] = {
            "version": m["version"], "hashes": set(re.findall(r"sha256:([0-9a-f]{64})", m["hashes"])),
            "via": via}
    pins = re.findall(r"^[A-Za-z0-9][A-Za-z0-9._-]*==", text, re.M)
    assert len(entries) == len(pins), f"{name}: every pin carries at least one sha256 hash"
    return entries


def _direct(sections: tuple[str, ...]) -> dict[str, str]:
    requirements = list(PROJECT["project"]["dependencies"])
    for section in sections:
        requirements += PROJECT["project"]["optional-dependencies"][section]
    pinned = {}
    for text in requirements:
        requirement = Requirement(text)
        (spec,) = requirement.specifier  # pyproject pins exactly: one `==`
        assert spec.operator == "==", f"pyproject.toml must pin exactly: {text}"
        pinned[canonicalize_name(requirement.name)] = spec.version
    return pinned


@pytest.mark.parametrize("lock", LOCKS)
def test_the_lock_pins_exactly_pyprojects_versions(lock):
    entries = _lock(lock)
    versions = {name: e["version"] for (name, _marker), e in entries.items()}
    for name, version in _direct(LOCKS[lock]).items():
        assert versions.get(name) == version, (
            f"{lock} has {name} {versions.get(name)}, pyproject.toml {version}: run `make lock`")


@pytest.mark.parametrize("lock", LOCKS)
def test_nothing_in_the_lock_is_there_for_a_section_it_does_not_hold(lock):
    """A package pyproject asks for directly must be asked for by a section this lock holds:
    dev tools never reach the image's lock, bench libraries never reach the venv's."""
    direct = _direct(LOCKS[lock])
    for (name, _marker), entry in _lock(lock).items():
        if "panui (pyproject.toml)" in entry["via"]:
            assert name in direct, f"{lock}: {name} is there for a section it does not hold: `make lock`"
        assert entry["via"], f"{lock}: {name} has no reason to be there"


def test_a_package_in_two_locks_is_the_same_release_with_the_same_hashes():
    """Each lock is resolved under the one before it: what they share, they share exactly (the
    markers may differ: tzdata is Windows-only for dev but always there for bench's pandas)."""
    def releases(lock: str) -> dict[str, dict[str, set[str]]]:
        out: dict[str, dict[str, set[str]]] = {}
        for (name, _marker), entry in _lock(lock).items():
            out.setdefault(name, {})[entry["version"]] = entry["hashes"]
        return out

    ordered = [releases(lock) for lock in LOCKS]
    for earlier, later, names in ((ordered[0], ordered[1], "requirements.lock < requirements-dev.lock"),
                                  (ordered[1], ordered[2], "requirements-dev.lock < requirements-bench.lock")):
        for name, versions in earlier.items():
            assert name in later, f"{names}: {name} missing from the later lock"
            for version, hashes in versions.items():
                assert later[name].get(version) == hashes, f"{names}: {name} {version} differs"


def test_every_lock_states_the_make_lock_cut_off_date_and_the_pinned_uv():
    date = re.search(r"^LOCK_DATE := (\S+)$", (ROOT / "Makefile").read_text(), re.M)[1]
    uv = _direct(("tools",))["uv"]
    for lock in LOCKS:
        header = "".join(line + "\n" for line in (ROOT / lock).read_text().splitlines() if line.startswith("#")
                         and not line.startswith("    "))
        assert f"uv {uv}, --exclude-newer {date}" in header, f"{lock}: not made by `make lock` at {date}"


def test_the_locked_setuptools_is_the_build_backend_pyproject_asks_for():
    """`make venv` builds the editable package without build isolation, with the locked setuptools."""
    (requires,) = PROJECT["build-system"]["requires"]
    requirement = Requirement(requires)
    locked = {name: e["version"] for (name, _m), e in _lock("requirements-dev.lock").items()}
    assert requirement.name in locked
    assert Version(locked[requirement.name]) in requirement.specifier


def _recipe(makefile: str, target: str) -> tuple[str, list[str]]:
    match = re.search(rf"^{re.escape(target)}:([^\n]*)\n((?:\t[^\n]*\n)+)", makefile, re.M)
    assert match, target
    return match[1], [line.strip() for line in match[2].splitlines()]


def test_make_installs_only_from_the_hashed_locks():
    makefile = (ROOT / "Makefile").read_text()
    prerequisites, recipe = _recipe(makefile, "$(STAMP)")
    assert {"requirements-dev.lock", "pyproject.toml"} <= set(prerequisites.split())
    installs = [line for line in recipe if " install " in line]
    assert installs[0].split()[-2:] == ["-r", "requirements-dev.lock"]
    assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(installs[0].split())
    assert installs[1].endswith("-e .") and {"--no-deps", "--no-build-isolation"} <= set(installs[1].split())
    prerequisites, recipe = _recipe(makefile, "$(BENCH_STAMP)")
    assert "requirements-bench.lock" in prerequisites.split()
    every_install = [line for line in makefile.splitlines() if re.search(r"pip install|uv pip install", line)]
    for line in every_install:
        words = set(line.split())
        assert "--no-deps" in words and ("--require-hashes" in words or line.rstrip().endswith("-e .")), (
            f"an install that resolves or skips the hashes: {line.strip()}")


def test_ci_installs_from_the_locks_audits_them_then_runs_the_readmes_test_command():
    """.ci/run: `make venv`, then `make audit` (any failure fails CI: no soft "not audited" path),
    then the command the README gives for the whole suite."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## The two commands\n+```sh\n(.*?)```", readme, re.S)[1]
    (readme_test,) = [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("make test")]
    script = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    steps = [c.removeprefix("exec ").split(" PYTEST_ARGS=")[0] for c in commands if c.startswith(("make", "exec make"))]
    assert steps == ["make venv", "make audit", readme_test], steps
    assert not [c for c in commands if "||" in c or "audit" in c and c != "make audit"], (
        "the audit's exit status must reach CI unchanged")
    makefile = (ROOT / "Makefile").read_text()
    _, recipe = _recipe(makefile, "audit")
    assert recipe == ["$(PY) scripts/audit.py $(AUDIT_ARGS)"]
