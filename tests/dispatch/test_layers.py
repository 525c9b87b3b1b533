"""Dispatch's layers hold: the rules import no database, web or Kafka library, and the SQL
stays in the store."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

DISPATCH = Path(__file__).resolve().parents[2] / "services" / "dispatch"
FORBIDDEN = ("sqlalchemy", "sqlmodel", "fastapi", "starlette", "aiokafka", "httpx")


@pytest.mark.parametrize("module", ["services.dispatch.policy", "services.dispatch.delivery_state"])
def test_rules_import_no_infrastructure(module):
    """Checked in a fresh interpreter, so what the module pulls in transitively counts too."""
    probe = (
        f"import sys, {module}\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r})))"
    )
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", f"{module} imports {found.stdout.strip()}"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_store_and_the_models_build_sql():
    """SQLAlchemy's statement builders appear in store/ (and the table definitions and their
    migrations) only."""
    allowed = {DISPATCH / "models.py"}
    offenders = [
        str(p.relative_to(DISPATCH)) for p in DISPATCH.rglob("*.py")
        if not {"store", "migrations"} & set(p.relative_to(DISPATCH).parts) and p not in allowed
        and any(name == "sqlalchemy" or name.startswith("sqlalchemy.") for name in _imports(p))
    ]
    assert offenders == []
