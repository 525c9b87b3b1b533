"""Tests of the supply chain (the hashed locks, scripts/audit.py) and, as issue 18 lands, of the
security controls SECURITY.md lists."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_audit():
    """scripts/audit.py is a script, not a package: load it as a module once."""
    name = "panui_scripts_audit"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "audit.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]
