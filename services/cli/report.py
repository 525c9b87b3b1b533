"""`panui report --incident ID [--format table|json|csv|pdf] [--out FILE]` — the Privacy
Commissioner's report: counts per incident and per agency, no personal data.

Calls each service's `GET /v1/incidents/{id}/report` (intake, dedupe, dispatch; bearer token in
PANUI_COORDINATOR_TOKEN) and combines their rows (services/common/report.py): the services never
call each other for it. CSV is formula-safe; the PDF (services/common/report_pdf.py) is the one to
send, and needs --out.

Exit codes: 0 done; 1 a service refused (its error is printed); 2 usage or configuration
error; 3 a service could not be reached.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import httpx
import typer
from rich.console import Console
from rich.table import Table

from services.common.clock import utcnow
from services.common.report import Report, ServiceReport, combine, report_csv
from services.common.report_pdf import render_report_pdf

TOKEN_ENV = "PANUI_COORDINATOR_TOKEN"  # noqa: S105 - the variable's name, not a token
EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3
console = Console()


def _fetch(service: str, url: str, incident_id: str, token: str) -> ServiceReport:
    try:
        response = httpx.get(f"{url.rstrip('/')}/v1/incidents/{incident_id}/report",
                             headers={"authorization": f"Bearer {token}"}, timeout=120)
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] {service} could not be reached ({type(exc).__name__})")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            console.print(f"[red]{service}: {error['code']}[/red]: {error['message']}")
        except (ValueError, KeyError, TypeError):
            console.print(f"[red]error:[/red] {service} answered HTTP {response.status_code}")
        raise typer.Exit(EXIT_REFUSED)
    return ServiceReport.model_validate(response.json())


def _table(report: Report) -> None:
    counts = Table("agency", "measure", "value", "service", title=f"Incident {report.incident_id}")
    for c in report.counts:
        counts.add_row(c.agency_id or "(all)", c.measure, str(c.value), c.service or "")
    console.print(counts)
    milestones = Table("when", "agency", "milestone", "service", title="Milestones")
    for m in report.milestones:
        milestones.add_row(m.at.isoformat(timespec="seconds"), m.agency_id or "", m.milestone,
                           m.service or "")
    console.print(milestones)


def report_command(
    incident: str = typer.Option(..., "--incident", "-i", help="Incident id"),
    output: Literal["table", "json", "csv", "pdf"] = typer.Option("table", "--format", "-f"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file"),
    intake_url: str = typer.Option("http://127.0.0.1:8001", "--intake-url"),
    dedupe_url: str = typer.Option("http://127.0.0.1:8002", "--dedupe-url"),
    dispatch_url: str = typer.Option("http://127.0.0.1:8003", "--dispatch-url"),
) -> None:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        console.print(f"[red]error:[/red] set {TOKEN_ENV} to a coordinator token")
        raise typer.Exit(EXIT_USAGE)
    if output == "pdf" and out is None:
        console.print("[red]error:[/red] --format pdf needs --out FILE (a PDF is not for a terminal)")
        raise typer.Exit(EXIT_USAGE)
    parts = [_fetch(s, u, incident, token) for s, u in
             (("intake", intake_url), ("dedupe", dedupe_url), ("dispatch", dispatch_url))]
    report = combine(parts, utcnow())
    if output == "table" and out is None:
        _table(report)
        return
    if output == "pdf":
        out.write_bytes(render_report_pdf(report))
        console.print(f"wrote {out}")
        return
    text = report_csv(report) if output == "csv" else report.model_dump_json(indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")
