"""Finds imports that reach into another module's private names (read by walking the AST).

The rule, precisely:
- A dotted target — the imported module plus, for `from m import n`, the name — is private
  from its first component that starts with an underscore and is not a dunder (`__version__`
  is public; `_split`, `__cache` and the module `_serve` are private).
- What is private belongs to a package: a private module or a name in a package's
  `__init__` belongs to that package (`services.gateways.serving` → `services.gateways`); a
  private name in a plain module belongs to the module's package
  (`services.intake.parsing.csv_feed._split` → `services.intake.parsing`), so sibling modules
  may share it (package-private, as the underscore convention means in Python).
- An import is allowed only from inside the owning package (the package itself, its modules
  and its subpackages). Relative imports are resolved first and follow the same rule.
- Attribute access on a module bound by an import counts too (`from services.intake import
  feeds` then `feeds._split(...)`); attributes of other objects (`self._x`, `client._pool`) do not.
- Only first-party targets are checked (the top-level packages given); what a third-party
  library keeps private is its own business.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Violation:
    path: str  # relative to the root
    line: int
    importer: str  # the module doing the import
    target: str  # what it reaches for

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} uses private {self.target}"


def is_private(part: str) -> bool:
    return part.startswith("_") and part != "_" and not (part.startswith("__") and part.endswith("__"))


def violations(root: Path, packages: Iterable[str]) -> list[Violation]:
    """Every private-name import in the first-party `packages` (top-level folders of `root`)."""
    packages = set(packages)
    found: list[Violation] = []
    for package in sorted(packages):
        for path in sorted((root / package).rglob("*.py")):
            found.extend(_check_file(root, path, packages))
    return sorted(found)


def _check_file(root: Path, path: Path, first_party: set[str]) -> Iterator[Violation]:
    importer = _module_name(root, path)
    importer_package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: dict[str, str] = {}  # local name -> first-party module it is bound to

    def report(node: ast.AST, target: str) -> Iterator[Violation]:
        if target.split(".")[0] not in first_party:
            return
        owner = _owner(root, target)
        if owner is not None and not _inside(importer_package, owner):
            yield Violation(str(path.relative_to(root)), node.lineno, importer, target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from report(node, alias.name)
                if alias.asname:
                    modules[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    modules[top] = top
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer_package, node.module, node.level)
            for alias in node.names:
                target = f"{base}.{alias.name}" if base else alias.name
                yield from report(node, target)
                if _is_module(root, target):
                    modules[alias.asname or alias.name] = target
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            chain = _dotted(node.value)
            if chain and chain[0] in modules:
                yield from report(node, ".".join([modules[chain[0]], *chain[1:], node.attr]))


def _owner(root: Path, target: str) -> str | None:
    """The package a private target belongs to, or None when nothing in it is private."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if is_private(part):
            prefix = ".".join(parts[:i])
            return prefix if _is_package(root, prefix) else prefix.rpartition(".")[0]
    return None


def _inside(package: str, owner: str) -> bool:
    return package == owner or package.startswith(owner + ".")


def _resolve(package: str, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    base = package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _dotted(node: ast.AST) -> list[str] | None:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else [*inner, node.attr]
    return None


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(root: Path, dotted: str) -> bool:
    return bool(dotted) and (root.joinpath(*dotted.split(".")) / "__init__.py").is_file()


def _is_module(root: Path, dotted: str) -> bool:
    return _is_package(root, dotted) or root.joinpath(*dotted.split(".")).with_suffix(".py").is_file()
