"""`panui feed status --incident ID [--out status.csv]` — an agency's reconciliation: what became
of each of its records, keyed by its own source_record_id (services/common/reconciliation.py).

With the agency's API key (PANUI_API_KEY) it asks intake for a status ticket (dedupe and dispatch
hold no agency keys), then pages through intake's, dedupe's and dispatch's part and joins them
into one formula-safe CSV row per record. Nothing personal is in it but the agency's own ids.

Exit codes: 0 written; 1 a service refused (its error is printed); 2 usage or configuration
error; 3 a service could not be reached.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import typer
from rich.console import Console

from services.cli.feeds import API_KEY_ENV, EXIT_INCOMPLETE, EXIT_REJECTED, EXIT_USAGE, feed_app
from services.common.reconciliation import (
    DedupeRecordStatus,
    DispatchNoticeStatus,
    IntakeRecordStatus,
    combine,
    status_csv,
)


def _refusal(service: str, response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{service} answered {response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{service} answered HTTP {response.status_code}"


class StatusFailed(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _status_get(client: httpx.Client, service: str, url: str, token: str, params: dict) -> dict:
    try:
        response = client.get(url, params=params, headers={"authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise StatusFailed(f"{service} could not be reached ({type(exc).__name__})",
                           EXIT_INCOMPLETE) from None
    if response.status_code >= 400:
        raise StatusFailed(_refusal(service, response), EXIT_REJECTED)
    return response.json()


def _pages(client: httpx.Client, service: str, url: str, token: str, key: str,
           page_size: int) -> Iterator[dict]:
    after = ""
    while True:
        page = _status_get(client, service, url, token, {"after": after, "limit": page_size})
        yield from page[key]
        if page["next_after"] is None:
            return
        after = page["next_after"]


@feed_app.command("status")
def status(
    incident: str = typer.Option(..., "--incident", help="Incident id"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the CSV here (default: stdout)"),
    url: str = typer.Option("http://127.0.0.1:8001", "--url", help="Intake base URL"),
    dedupe_url: str = typer.Option("http://127.0.0.1:8002", "--dedupe-url"),
    dispatch_url: str = typer.Option("http://127.0.0.1:8003", "--dispatch-url"),
    page_size: int = typer.Option(5000, "--page-size", min=1, max=10_000, hidden=True),
) -> None:
    """What became of each of your records, keyed by your source_record_id, as CSV.

    One row per record: rejected, withdrawn, received, pending, in_review, held, notified or
    unreachable; the notice reference, channels and delivery status; with how many other
    agencies' records it was merged (never which). The API key is read from PANUI_API_KEY.
    Exit code 0: written; 1: a service refused (its error is printed); 2: usage or
    configuration error; 3: a service could not be reached.
    """
    console = Console(stderr=True)
    api_key = os.environ.get(API_KEY_ENV, "").strip()
    if not api_key:
        console.print(f"[red]error:[/red] set {API_KEY_ENV} to your agency's API key")
        raise typer.Exit(EXIT_USAGE)
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        console.print(f"[red]error:[/red] cannot write {out}: not a file in an existing folder")
        raise typer.Exit(EXIT_USAGE)
    path = f"/v1/incidents/{incident}"
    try:
        with httpx.Client(timeout=httpx.Timeout(120, connect=10),
                          headers={"user-agent": "panui-cli"}) as client:
            base = url.rstrip("/")
            try:
                ticket = client.post(f"{base}{path}/status-ticket",
                                     headers={"authorization": f"Bearer {api_key}"})
            except httpx.HTTPError as exc:
                raise StatusFailed(f"intake could not be reached ({type(exc).__name__})",
                                   EXIT_INCOMPLETE) from None
            if ticket.status_code != 201:
                raise StatusFailed(_refusal("intake", ticket), EXIT_REJECTED)
            token = ticket.json()["ticket"]
            intake = [IntakeRecordStatus.model_validate(r) for r in _pages(
                client, "intake", f"{base}{path}/reconciliation/records", api_key, "records", page_size)]
            dedupe = [DedupeRecordStatus.model_validate(r) for r in _pages(
                client, "dedupe", f"{dedupe_url.rstrip('/')}{path}/reconciliation/records", token,
                "records", page_size)]
            notices = [DispatchNoticeStatus.model_validate(n) for n in _pages(
                client, "dispatch", f"{dispatch_url.rstrip('/')}{path}/reconciliation/notices", token,
                "notices", page_size)]
    except StatusFailed as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(exc.code) from None
    rows = combine(intake, dedupe, notices)
    text = status_csv(rows)
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8", newline="")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    console.print(f"wrote {out}: {len(rows)} record(s) — "
                  + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
