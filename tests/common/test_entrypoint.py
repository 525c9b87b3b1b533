"""`python -m services.<name> migrate …` as an operator runs it (a real process on a SQLite
file), its errors, and a service refusing to serve a database that was never migrated."""

import importlib
import os
import subprocess
import sys

import pytest

from services.common.crypto import generate_key_spec
from services.common.entrypoint import main
from services.dedupe.settings import DedupeSettings
from services.dispatch.settings import DispatchSettings
from services.intake.settings import IntakeSettings
from testkit.infra import REPO

# The newest revision of intake's migrations (this file checks the command, not the chain).
HEAD = max(p.name[:4] for p in (REPO / "services/intake/migrations/versions").glob("[0-9]*.py"))


def run(service: str, *args: str, database_url: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}", *args], cwd=REPO, capture_output=True,
        text=True, timeout=120, env={**os.environ, "DATABASE_URL": database_url, **env})


def in_process(service: str, *args: str, database_url: str, capsys, monkeypatch) -> tuple:  # noqa: ANN001
    """The same entry point called in this process (faster): (exit code, stdout, stderr)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    models = importlib.import_module(f"services.{service}.models").MODELS
    settings = {"intake": IntakeSettings, "dedupe": DedupeSettings, "dispatch": DispatchSettings}
    try:
        code = main(list(args), app=f"services.{service}.app:create_app",
                    settings=settings[service], models=models)
    except SystemExit as exit_:  # argparse's way out
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


@pytest.mark.slow
def test_migrate_upgrades_reports_and_downgrades(tmp_path):
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    status = run("intake", "migrate", "--status", database_url=url)
    assert status.returncode == 1
    assert "Run `python -m services.intake migrate` first" in status.stderr

    first = run("intake", "migrate", database_url=url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"intake: database at {HEAD} (was base (no schema))"
    again = run("intake", "migrate", database_url=url)
    assert again.stdout.strip() == f"intake: database at {HEAD} (nothing to do)"


def test_migrate_status_downgrade_and_revision(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'intake.db'}"

    def cli(*args: str) -> tuple:
        return in_process("intake", *args, database_url=url, capsys=capsys, monkeypatch=monkeypatch)

    assert cli("migrate") == (0, f"intake: database at {HEAD} (was base (no schema))", "")
    assert cli("migrate", "--status") == (0, f"intake: database at {HEAD}; code at {HEAD}", "")
    assert cli("migrate", "--downgrade", "base") == (
        0, f"intake: database at base (no schema) (was {HEAD})", "")
    code, out, err = cli("migrate", "--status")
    assert (code, out) == (1, f"intake: database at base (no schema); code at {HEAD}")
    assert "Run `python -m services.intake migrate` first" in err
    assert cli("migrate", "--revision", "0001") == (0, "intake: database at 0001 (was base (no schema))", "")


@pytest.mark.parametrize(("args", "message"), [
    (["migrate", "--revision", "nope"], "error: Can't locate revision identified by 'nope'"),
    (["migrate", "--downgrade", "nope"], "error: Can't locate revision identified by 'nope'"),
    (["migrate", "--bogus"], "unrecognized arguments: --bogus"),
    (["migrate", "--revision", "0001", "--downgrade", "base"], "not allowed with argument"),
    (["migrat"], "invalid choice: 'migrat'"),
])
def test_bad_input_is_a_clear_error_and_a_non_zero_exit(tmp_path, capsys, monkeypatch, args, message):
    code, _out, err = in_process("dedupe", *args, database_url=f"sqlite:///{tmp_path / 'dedupe.db'}",
                                 capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2
    assert message in err


def test_an_unreachable_database_is_named_without_its_credentials(capsys, monkeypatch):
    code, out, err = in_process("dispatch", "migrate", capsys=capsys, monkeypatch=monkeypatch,
                                database_url="postgresql://panui:s3cret-pw@127.0.0.1:1/none")
    assert code == 1
    assert err == "error: cannot use dispatch's database (OperationalError); check DATABASE_URL"
    assert "s3cret-pw" not in out + err


@pytest.mark.slow
def test_the_service_refuses_to_serve_a_database_that_was_never_migrated(tmp_path):
    result = run("dedupe", database_url=f"sqlite:///{tmp_path / 'dedupe.db'}",
                 PANUI_PORT="0", PANUI_DATA_KEYS=generate_key_spec("t"))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "not starting: dedupe's database has no schema yet" in output
    assert "Run `python -m services.dedupe migrate` first." in output
