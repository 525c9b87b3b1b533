"""No module uses another module's private names (the rule: tests/architecture/private_names.py),
and the checker is shown to catch each kind of violation in a small synthetic package."""

from pathlib import Path
from textwrap import dedent

from testkit.infra import REPO
from tests.architecture.private_names import violations

FIRST_PARTY = ["services", "testkit", "tests", "benchmarks"]


def test_no_module_uses_another_modules_private_names():
    found = violations(REPO, FIRST_PARTY)
    assert not found, "private names used outside their package:\n" + "\n".join(map(str, found))


def write(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(source))


def test_the_checker_reports_each_kind_of_violation_and_allows_package_private_use(tmp_path):
    write(tmp_path, {
        "alpha/__init__.py": "_registry = {}\n",
        "alpha/_impl.py": "thing = 1\n",
        "alpha/core.py": """\
            from alpha.sub._hidden import x
            _secret = 1
            __version__ = "1"
            def public(): ...
            """,
        "alpha/sibling.py": """\
            from ._impl import thing
            from .core import _secret
            from alpha.core import _secret as again
            from . import _impl
            """,
        "alpha/sub/__init__.py": "",
        "alpha/sub/_hidden.py": "x = 1\n",
        "alpha/sub/deep.py": """\
            from alpha._impl import thing
            from alpha import _registry
            from ..core import _secret
            """,
        "beta/__init__.py": "",
        "beta/user.py": """\
            import json
            import alpha._impl
            from alpha import core
            from alpha._impl import thing
            from alpha.core import __version__, public
            from alpha.core import _secret
            from alpha.core import public as _local_alias

            class Local:
                _own = 1

            core._secret
            json._default_decoder
            Local._own
            """,
    })
    found = [(v.path, v.line, v.target) for v in violations(tmp_path, ["alpha", "beta"])]
    assert found == [
        ("alpha/core.py", 1, "alpha.sub._hidden.x"),  # a subpackage's private module
        ("beta/user.py", 2, "alpha._impl"),  # import of a private module
        ("beta/user.py", 4, "alpha._impl.thing"),  # a public name from a private module
        ("beta/user.py", 6, "alpha.core._secret"),  # a private name
        ("beta/user.py", 12, "alpha.core._secret"),  # attribute access on an imported module
    ]
