"""`panui letters`: clear errors and exit codes without a running dispatch (the mail-out itself
is tested end to end in tests/dispatch/test_mailout.py)."""

from typer.testing import CliRunner

from services.cli.main import app
from testkit.infra import free_port


def test_letters_needs_a_coordinator_token(monkeypatch):
    monkeypatch.delenv("PANUI_COORDINATOR_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["letters", "list", "-i", "inc-1"])
    assert result.exit_code == 2 and "PANUI_COORDINATOR_TOKEN" in result.output


def test_letters_says_when_dispatch_cannot_be_reached(monkeypatch):
    monkeypatch.setenv("PANUI_COORDINATOR_TOKEN", "t")
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["letters", "batch", "-i", "inc-1", "--url", url])
    assert result.exit_code == 3 and "could not be reached" in result.output


def test_letters_refuses_a_batch_over_the_limit(monkeypatch):
    monkeypatch.setenv("PANUI_COORDINATOR_TOKEN", "t")
    result = CliRunner().invoke(app, ["letters", "batch", "-i", "inc-1", "--limit", "5000"])
    assert result.exit_code == 2
