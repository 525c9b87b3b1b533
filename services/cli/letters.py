"""`panui letters batch|list|download|posted|returned` — the postal mail-out, for the coordinator.

Talks to dispatch's coordinator API (default http://127.0.0.1:8003) with the bearer token in
PANUI_COORDINATOR_TOKEN. `download` writes the batch's PDF and manifest CSV into a folder; they
hold names and addresses, so the files are created readable by their owner only.

Exit codes: 0 done; 1 the service refused (the error's code and message are printed);
2 usage or configuration error; 3 dispatch could not be reached.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

letters_app = typer.Typer(help="Letters for people reached by post (the print-house mail-out).",
                          no_args_is_help=True)

TOKEN_ENV = "PANUI_COORDINATOR_TOKEN"  # noqa: S105 - the variable's name, not a token
EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3
_URL = typer.Option("http://127.0.0.1:8003", "--url", help="Dispatch base URL")
_INCIDENT = typer.Option(..., "--incident", "-i", help="Incident id")
console = Console()


def _client(url: str) -> httpx.Client:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        console.print(f"[red]error:[/red] set {TOKEN_ENV} to a coordinator token")
        raise typer.Exit(EXIT_USAGE)
    return httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"},
                        timeout=httpx.Timeout(600, connect=10))


def _call(url: str, method: str, path: str, **kwargs) -> httpx.Response:
    try:
        with _client(url) as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] dispatch could not be reached ({type(exc).__name__})")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            console.print(f"[red]{error['code']}[/red]: {error['message']}")
        except (ValueError, KeyError, TypeError):
            console.print(f"[red]error:[/red] HTTP {response.status_code}")
        raise typer.Exit(EXIT_REFUSED)
    return response


def _show(batches: list[dict]) -> None:
    table = Table("batch", "letters", "large print", "letter date", "posted", "returned")
    for b in batches:
        table.add_row(b["batch_id"], str(b["letters"]), "yes" if b["large_print"] else "no",
                      b["letter_date"], b["posted_at"] or "not yet", str(b["returned"]))
    console.print(table)


@letters_app.command("batch")
def batch(incident: str = _INCIDENT, limit: int = typer.Option(500, min=1, max=1000),
          large_print: bool = typer.Option(False, "--large-print"), url: str = _URL) -> None:
    """Put the letters waiting to be posted into a new batch."""
    body = {"limit": limit, "large_print": large_print}
    _show([_call(url, "POST", f"/v1/incidents/{incident}/mailouts", json=body).json()])


@letters_app.command("list")
def list_batches(incident: str = _INCIDENT, url: str = _URL) -> None:
    """The incident's batches: letters, posted or not, returned."""
    _show(_call(url, "GET", f"/v1/incidents/{incident}/mailouts").json()["batches"])


@letters_app.command("download")
def download(batch_id: str, incident: str = _INCIDENT,
             out: Path = typer.Option(Path("."), "--out", file_okay=False, help="Folder"),
             url: str = _URL) -> None:
    """Write the batch's PDF and manifest CSV into --out."""
    out.mkdir(parents=True, exist_ok=True)
    base = f"/v1/incidents/{incident}/mailouts/{batch_id}"
    for name, suffix in (("letters.pdf", ".pdf"), ("manifest.csv", "-manifest.csv")):
        content = _call(url, "GET", f"{base}/{name}").content
        path = out / f"{batch_id}{suffix}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        console.print(f"wrote {path} ({len(content)} bytes)")


@letters_app.command("posted")
def posted(batch_id: str, incident: str = _INCIDENT, url: str = _URL) -> None:
    """The print house posted the batch."""
    _show([_call(url, "POST", f"/v1/incidents/{incident}/mailouts/{batch_id}/posted").json()])


@letters_app.command("returned")
def returned(reference: str, incident: str = _INCIDENT, url: str = _URL) -> None:
    """A letter came back undelivered (REFERENCE: the code printed on it, or its notice id)."""
    result = _call(url, "POST", f"/v1/incidents/{incident}/returned-mail",
                   json={"reference": reference}).json()
    console.print(f"returned mail: {result['outcome']}")
