"""The import boundaries in pyproject.toml ([tool.importlinter]) hold, and each contract is
shown to catch its violation: the same contracts run over a synthetic copy of the package
layout (in tmp_path) into which one forbidden import is planted at a time."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from testkit.infra import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {c["name"]: c for c in CONFIG["contracts"]}


def lint(root: Path) -> tuple[int, dict[str, str], str]:
    """Run lint-imports in `root` with the project's contracts: (exit code, {contract: KEPT or
    BROKEN}, output)."""
    result = subprocess.run([str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                            cwd=root, capture_output=True, text=True, timeout=120)
    statuses = {}
    for line in result.stdout.splitlines():
        name, _, status = line.rpartition(" ")
        if status in ("KEPT", "BROKEN") and name in CONTRACTS:
            statuses[name] = status
    return result.returncode, statuses, result.stdout + result.stderr


def test_the_repository_keeps_every_contract():
    code, statuses, output = lint(REPO)
    assert statuses == dict.fromkeys(CONTRACTS, "KEPT"), output
    assert code == 0, output


def synthetic_layout(root: Path) -> None:
    """Every package the contracts name, empty: the real layout without any of its imports."""
    roots = set(CONFIG["root_packages"])
    named = set(roots)
    for contract in CONTRACTS.values():
        for key in ("modules", "source_modules", "forbidden_modules"):
            named.update(m for m in contract.get(key, []) if m.split(".")[0] in roots)
    for module in named:
        package = root.joinpath(*module.split("."))
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").touch()


PURE = "Rule modules are pure: no database, web framework, Kafka or HTTP client"
PLANTED = [  # (contract it breaks, file, source)
    ("The services never import each other", "services/intake/leak.py", "import services.dedupe\n"),
    ("The local gateways stand in for external providers: no service code",
     "services/gateways/leak.py", "from services import dispatch\n"),
    ("services.common is shared plumbing: no service, gateway or CLI code",
     "services/common/leak.py", "import services.cli\n"),
    ("Production code, the testkit and benchmarks never import the tests",
     "benchmarks/leak.py", "import tests\n"),
    ("Production code never imports the testkit", "services/intake/leak.py", "import testkit\n"),
    (PURE, "services/dispatch/policy/__init__.py", "import httpx\n"),
    (PURE, "services/dedupe/resolver/__init__.py", "from sqlalchemy import select\n"),
    # Indirectly, through a helper module, counts too.
    (PURE, "services/dedupe/release/__init__.py", "from services.common import sqlhelper\n"),
]


@pytest.mark.parametrize(("contract", "path", "source"), PLANTED,
                         ids=[f"{c[:30]}:{p}" for c, p, _ in PLANTED])
def test_each_contract_reports_a_planted_violation(tmp_path, contract, path, source):
    synthetic_layout(tmp_path)
    code, statuses, output = lint(tmp_path)
    assert (code, set(statuses.values())) == (0, {"KEPT"}), output  # the empty layout is clean

    (tmp_path / "services/common/sqlhelper.py").write_text("import sqlalchemy\n")
    (tmp_path / path).write_text(source)
    code, statuses, output = lint(tmp_path)
    assert code == 1, output
    assert statuses == {name: "BROKEN" if name == contract else "KEPT" for name in CONTRACTS}, output
    assert path.removesuffix(".py").removesuffix("/__init__").replace("/", ".") in output


def test_every_rule_module_in_the_pure_list_exists():
    """A module renamed or moved would silently drop out of the contract."""
    for module in CONTRACTS[PURE]["source_modules"]:
        path = REPO.joinpath(*module.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), module
