"""`panui feed status`: clear errors and exit codes without running services; the download itself
(three live services, two agencies) is tested in tests/integration/test_reconciliation.py."""

from typer.testing import CliRunner

from services.cli.main import app
from testkit.infra import free_port


def test_status_needs_the_agencys_key():
    result = CliRunner().invoke(app, ["feed", "status", "--incident", "inc-1"], env={"PANUI_API_KEY": " "})
    assert result.exit_code == 2 and "PANUI_API_KEY" in result.output


def test_status_refuses_an_output_it_cannot_write(tmp_path):
    for out in (tmp_path, tmp_path / "no-such-folder" / "status.csv"):
        result = CliRunner().invoke(app, ["feed", "status", "--incident", "inc-1", "--out", str(out)],
                                    env={"PANUI_API_KEY": "pk_x.y"})
        assert result.exit_code == 2 and "cannot write" in result.output


def test_status_says_intake_cannot_be_reached(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "status.csv"
    result = CliRunner().invoke(app, ["feed", "status", "--incident", "inc-1", "--url", url,
                                      "--out", str(out)], env={"PANUI_API_KEY": "pk_x.y"})
    assert result.exit_code == 3 and "intake could not be reached" in result.output
    assert not out.exists()
