"""`panui feed status --incident ID [--out status.csv]` — an agency's reconciliation: what became
of each of its records, keyed by its own source_record_id (services/common/reconciliation.py).

With the agency's API key (PANUI_API_KEY) it asks intake for a status ticket (dedupe and dispatch
hold no agency keys), then pages through intake's and dedupe's parts side by side (both by
source_record_id), looks up at dispatch the notices each stretch names, and writes one
formula-safe CSV row per record as it goes (`merge_pages`): memory stays about one page per
service. With --out the CSV is written next to it and renamed into place once complete, so a
failed download never leaves a partial file. Nothing personal is in it but the agency's own ids.

Exit codes: 0 written; 1 a service refused (its error is printed); 2 usage or configuration
error; 3 a service could not be reached.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import typer
from rich.console import Console

from services.cli.feeds import API_KEY_ENV, EXIT_INCOMPLETE, EXIT_REJECTED, EXIT_USAGE, feed_app
from services.common.reconciliation import (
    DedupeRecordStatus,
    DispatchNoticeList,
    DispatchNoticeStatus,
    IntakeRecordStatus,
    OutOfOrder,
    merge_pages,
    write_status_csv,
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


def _status_call(client: httpx.Client, service: str, url: str, token: str, params: dict | None = None,
                 body: dict | None = None) -> dict:
    headers = {"authorization": f"Bearer {token}"}
    try:
        response = (client.get(url, params=params, headers=headers) if body is None
                    else client.post(url, json=body, headers=headers))
    except httpx.HTTPError as exc:
        raise StatusFailed(f"{service} could not be reached ({type(exc).__name__})",
                           EXIT_INCOMPLETE) from None
    if response.status_code >= 400:
        raise StatusFailed(_refusal(service, response), EXIT_REJECTED)
    return response.json()


def _pages(client: httpx.Client, service: str, url: str, token: str, model: type,
           page_size: int) -> Iterator[list]:
    """One service's records, a page at a time, fetched only when the merge asks for the next."""
    after = ""
    while True:
        page = _status_call(client, service, url, token, {"after": after, "limit": page_size})
        yield [model.model_validate(r) for r in page["records"]]
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
            lookup = f"{dispatch_url.rstrip('/')}{path}/reconciliation/notices/lookup"

            def notices_of(notice_ids: list[str]) -> list[DispatchNoticeStatus]:
                return DispatchNoticeList.model_validate(_status_call(
                    client, "dispatch", lookup, token, body={"notice_ids": notice_ids})).notices

            rows = merge_pages(
                _pages(client, "intake", f"{base}{path}/reconciliation/records", api_key,
                       IntakeRecordStatus, page_size),
                _pages(client, "dedupe", f"{dedupe_url.rstrip('/')}{path}/reconciliation/records",
                       token, DedupeRecordStatus, page_size),
                notices_of)
            counts = _write(rows, out)
    except StatusFailed as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(exc.code) from None
    except OutOfOrder as exc:
        # Paging by source_record_id assumes byte (code point) order: a C or C.UTF-8 database.
        console.print(f"[red]error:[/red] {exc} (code point order): is a service's database "
                      "collation other than C or C.UTF-8?")
        raise typer.Exit(EXIT_REJECTED) from None
    if out is not None:
        console.print(f"wrote {out}: {sum(counts.values())} record(s) — "
                      + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))


def _write(rows: Iterator, out: Path | None) -> dict[str, int]:
    """Rows to stdout as they come, or to a file beside `out` renamed into place when complete."""
    if out is None:
        return write_status_csv(rows, sys.stdout)
    fd, partial = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            counts = write_status_csv(rows, handle)
        os.replace(partial, out)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return counts
