"""`make demo`: one portal breach from the first upload to the last email and SMS, on the
embedded default (local Kafka, SQLite, the local gateways) — in a few minutes.

    .venv/bin/python -m benchmarks.incident.demo [--records 6000] [--seed 7]

The coordinator creates the incident and enrols the portal operator, 20 GP practices, two
labs and a hospital; each agency uploads its feed with `panui feed submit` and marks it
complete; the terminal follows resolution, release and delivery live, then shows who was
notified how, one email and one SMS exactly as the gateways received them, and how the result
compares with the generator's truth. Everything it started is stopped at the end (Kafka too, if
it started it); what it made stays in var/demo/ (databases, mail, logs) until the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import io
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from benchmarks.incident import flow, scenario, system
from benchmarks.incident.observe import Observer
from benchmarks.incident.stack import Stack
from testkit.infra import REPO, delete_topics_with_prefix, kafka_bootstrap, sqlite_database

INCIDENT = "inc-portal-breach"
VAR = REPO / "var"
# The coordinator console does not exist yet; when it does, its URL goes here and is printed.
CONSOLE_URL: str | None = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.incident.demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=6_000, help="affected records in all")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600, help="give up after this long")
    args = parser.parse_args(argv)
    console = Console()
    console.print(Panel.fit(
        "[bold]Pānui demo[/bold]: a patient-portal breach touching a portal operator, 20 GP "
        "practices, two labs and a hospital.\nEach agency uploads its affected records; Pānui "
        "works out who is who across agencies and sends each person [bold]one[/bold] notice.",
        border_style="cyan"))
    run_dir = VAR / "demo"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "feeds").mkdir(parents=True)

    incident = scenario.build(scenario.DEMO, args.records, args.seed, VAR / "incidents")
    console.print(f"Generated {incident.records:,} synthetic records of {incident.persons:,} people "
                  f"(NZ generator, seed {args.seed}; test NHIs only) in {_rel(incident.folder)}/")
    prefix = f"demo-{uuid.uuid4().hex[:8]}."
    started_at = time.time()
    with system.LocalKafka(REPO), Stack(run_dir / "log") as stack:
        try:
            with console.status("Starting intake, dedupe, dispatch and the local gateways…"):
                databases = {s: sqlite_database(run_dir / f"{s}.db", s) for s in system.SERVICES}
                endpoints = system.start(stack, system.Options(
                    databases=databases, bootstrap=kafka_bootstrap(), topic_prefix=prefix,
                    maildir=run_dir / "mail", quiet_hours=False, log_level="WARNING"))
            _show_stack(console, endpoints)
            keys = flow.create_incident(endpoints.intake, endpoints.coordinator_token, INCIDENT,
                                        incident.agencies)
            console.print(f"\n[bold]1. The coordinator[/bold] created incident {INCIDENT} and enrolled "
                          f"{len(keys)} agencies (one API key each).")
            console.print("\n[bold]2. Each agency uploads its feed[/bold] and marks it complete:")
            accepted = _upload(console, endpoints.intake, keys, incident, run_dir / "feeds")
            _say_rejected(console, incident.records, accepted, run_dir / "feeds")
            console.print("\n[bold]3. Resolution, release and delivery[/bold] "
                          "(quiet hours are [bold]off[/bold] for this demo, so notices go out now; "
                          "in production a notice due 21:00–08:00 NZ time waits until 08:00):")
            observer = Observer(databases, INCIDENT)
            try:
                final = _follow(console, stack, endpoints, accepted, args.timeout)
                elapsed = time.time() - started_at
                by_channel = observer.notices_by_channel()
                outcome = observer.outcome(incident.truth)
            finally:
                observer.close()
            _summary(console, final, by_channel, outcome, incident, accepted, elapsed)
            _show_messages(console, endpoints)
        finally:
            with console.status("Stopping everything this demo started…"):
                stack.stop()

                asyncio.run(delete_topics_with_prefix(kafka_bootstrap(), prefix))
    console.print(f"Stopped. The demo's databases, mail and logs are in {_rel(run_dir)}/.")
    return 0


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _show_stack(console: Console, e: system.Endpoints) -> None:
    table = Table(show_header=False, box=None, padding=(0, 2))
    for name, url in (("intake", e.intake), ("dedupe", e.dedupe), ("dispatch", e.dispatch),
                      ("email gateway", f"{e.smtp_control}/_control/messages  (mail in {_rel(e.maildir)})"),
                      ("SMS gateway", f"{e.sms}/v1/messages")):
        table.add_row(name, url)
    table.add_row("coordinator console", CONSOLE_URL or "[dim]not built yet — the live view below "
                  "reads the coordinator API it will use[/dim]")
    console.print(table)


def _upload(console: Console, intake: str, keys: dict[str, str], incident: scenario.Incident,
            work: Path) -> int:
    """`panui feed submit` for each agency (the CLI's own code, in this process, so 24 uploads
    don't pay 24 interpreter start-ups); the portal operator's full CLI output is shown, the
    others' summary tables are folded into one line each. Returns the records accepted."""
    from services.cli.main import app

    accepted = 0
    for i, agency in enumerate(sorted(incident.agencies, key=lambda a: -incident.counts[a.agency_id])):
        path = incident.feed_path(agency.agency_id)
        argv = ["feed", "submit", str(path), "--incident", INCIDENT, "--url", intake,
                "--chunk-records", "1000", "--state", str(work / f"{agency.agency_id}.state.json"),
                "--problems", str(work / f"{agency.agency_id}.problems.csv")]
        console.print(f"[dim]$ PANUI_API_KEY=pk_… panui feed submit {_rel(path)} --incident {INCIDENT} "
                      f"--url {intake}   # {agency.name}[/dim]" if i == 0 else
                      f"[dim]$ panui feed submit {path.name} …   # {agency.name}[/dim]")
        os.environ["PANUI_API_KEY"] = keys[agency.agency_id]
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured) if i else contextlib.nullcontext():
            code = _exit_code(lambda argv=argv: app(argv, standalone_mode=False))
        if code not in (0, 1):  # 1: some records rejected, which a real feed has too
            raise SystemExit(f"panui feed submit failed for {agency.agency_id} (exit {code})")
        receipt = flow.complete(intake, keys[agency.agency_id], INCIDENT)
        accepted += receipt["record_count"]
        console.print(f"  {agency.name}: marked complete with {receipt['record_count']:,} records")
    os.environ.pop("PANUI_API_KEY", None)
    return accepted


def _say_rejected(console: Console, generated: int, accepted: int, work: Path) -> None:
    """The generator makes a few records as unusable as real feeds have; say so, so the CLI's
    "rejected" lines above read as intake doing its job rather than the demo failing."""
    rejected = generated - accepted
    console.print(f"\n{accepted:,} of {generated:,} records accepted." + (
        f" The {rejected:,} rejected are ones the generator made unusable on purpose, as real "
        "feeds have (e.g. nothing to identify or reach the person by): intake refuses them with "
        f"a reason per line, in {_rel(work)}/*.problems.csv, and the agency would fix and "
        "re-submit them. Warnings (a landline given as a mobile, a date of birth in the future) "
        "drop just that field." if rejected else ""))


def _exit_code(call) -> int:  # noqa: ANN001
    try:
        result = call()
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - click's Exit and friends carry an exit_code
        return int(getattr(exc, "exit_code", 2))
    return int(result or 0)


def _api(client: httpx.Client, url: str) -> dict:
    response = client.get(url)
    response.raise_for_status()
    return response.json()


def _follow(console: Console, stack: Stack, e: system.Endpoints, accepted: int,
            timeout: float) -> dict:
    """The live view, from the coordinator API, until every notice is at rest."""
    started = time.monotonic()
    headers = {"authorization": f"Bearer {e.coordinator_token}"}
    with httpx.Client(headers=headers, timeout=10) as client, \
            Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            stack.check()
            progress = _api(client, f"{e.dedupe}/v1/incidents/{INCIDENT}/progress")
            deliveries = _api(client, f"{e.dispatch}/v1/incidents/{INCIDENT}/deliveries/summary")
            state = {"progress": progress, "deliveries": deliveries}
            live.update(_live_view(state, accepted, time.monotonic() - started))
            if _at_rest(state):
                return state
            if time.monotonic() - started > timeout:
                raise SystemExit(f"not finished after {timeout:.0f} s; logs in var/demo/log/")
            time.sleep(0.5)


def _unsettled(by_channel: dict[str, dict[str, int]]) -> int:
    return sum(n for channel, statuses in by_channel.items() for status, n in statuses.items()
               if status in ("sending", "temporary-failure", "technical-failure")
               or (status == "queued" and channel != "postal"))


def _at_rest(state: dict) -> bool:
    p, d = state["progress"], state["deliveries"]
    return (p["released_at"] is not None and p["pending_release"] == 0
            and d["notices"] >= p["notified"] and d["awaiting_incident"] == 0
            and sum(sum(s.values()) for s in d["by_channel"].values()) >= d["notices"]
            and _unsettled(d["by_channel"]) == 0)


def _sent(by_channel: dict, channel: str) -> int:
    statuses = by_channel.get(channel, {})
    return statuses.get("sent", 0) + statuses.get("delivered", 0)


def _live_view(state: dict, accepted: int, elapsed: float) -> Group:
    p, d = state["progress"], state["deliveries"]
    records = sum(a["records"] for a in p["agencies"])
    complete = sum(a["complete"] for a in p["agencies"])
    by = d["by_channel"]
    table = Table(title=f"incident {INCIDENT} — {elapsed:.0f} s", title_justify="left")
    table.add_column("stage")
    table.add_column("now", justify="right")
    table.add_column("", style="dim")
    table.add_row("records resolved by dedupe", f"{records:,}", f"of {accepted:,} accepted")
    table.add_row("agencies complete", f"{complete}", f"of {len(p['agencies'])}")
    table.add_row("people (resolved)", f"{p['persons']:,}",
                  "released" if p["released_at"] else "held until every agency is complete")
    table.add_row("notices released", f"{p['notified']:,}", f"{p['pending_release']:,} pending")
    table.add_row("emails sent", f"{_sent(by, 'email'):,}", "")
    table.add_row("SMS sent", f"{_sent(by, 'sms'):,}", "delivered when the receipt comes back")
    table.add_row("for the postal mail-out", f"{by.get('postal', {}).get('queued', 0):,}", "no email or mobile")
    table.add_row("unreachable", f"{by.get('none', {}).get('unreachable', 0):,}", "public notice (s 115)")
    table.add_row("pairs in review", f"{p['in_review']:,}", "kept apart until a person decides")
    table.add_row("held (s 116)", f"{p['on_hold']:,}", "not notified until the hold is lifted")
    return Group(table)


def _summary(console: Console, state: dict, by_channel: dict[str, int], outcome: dict,
             incident: scenario.Incident, accepted: int, elapsed: float) -> None:
    p, d = state["progress"], state["deliveries"]
    # One notice per person as dedupe resolved them; the truth check below says how far that is
    # from one per real person (records the resolver was not sure of stay apart).
    table = Table(title="Summary: one notice per resolved person, by the first channel that "
                  "reaches them", title_justify="left")
    table.add_column("")
    table.add_column("people", justify="right")
    table.add_row("notified by email", f"{by_channel.get('email', 0):,}")
    table.add_row("notified by SMS (no email)", f"{by_channel.get('sms', 0):,}")
    table.add_row("on the postal mail-out list (no email or SMS)", f"{by_channel.get('postal', 0):,}")
    table.add_row("unreachable: on the public notice list (s 115)", f"{by_channel.get('none', 0):,}")
    table.add_row("held under s 116 (not notified)", f"{p['on_hold']:,}")
    table.add_row("pairs of records in review (kept apart meanwhile)", f"{p['in_review']:,}")
    console.print(table)
    console.print(
        f"{accepted:,} records accepted from {len(incident.agencies)} agencies → {p['persons']:,} people "
        f"→ {d['notices']:,} notices, {elapsed:.0f} s from start-up to the last notice.\n"
        f"Checked against the generator's truth ({outcome['persons_with_accepted_records']:,} real "
        f"people): {outcome['exactly_one_count']:,} got exactly one notice; {outcome['two_or_more']:,} "
        f"got two or more (their records were not sure enough to join: precision comes first); "
        f"{outcome['none_not_held']:,} got none without a hold; {outcome['spanning']} notices covered "
        f"more than one real person.")
    if outcome["held_notified"]:
        console.print(
            f"[bold yellow]{outcome['held_notified']:,} of the {outcome['held']:,} real people under a "
            f"s 116 hold got a notice anyway[/bold yellow]: their records were not joined, and the "
            f"part without the held record was released.")


def _show_messages(console: Console, e: system.Endpoints) -> None:
    mail = sorted((e.maildir / "new").iterdir()) if e.maildir and (e.maildir / "new").exists() else []
    if mail:
        raw = mail[0].read_bytes()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        headers = raw.split(b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n", 1)[0].decode("utf-8", "replace")
        text = message.get_body(preferencelist=("plain",))
        body = text.get_content() if text else "(no text part)"
        html = message.get_body(preferencelist=("html",))
        note = f"\n[dim]…plus an HTML alternative ({len(html.get_content()):,} characters). " \
               f"The raw message: {_rel(mail[0])}[/dim]" if html else ""
        console.print(Panel(f"{headers}\n\n{body}", title="One email, as the email gateway received it",
                            title_align="left", border_style="green"))
        console.print(f"[dim]The Subject header decoded: {message['subject']}[/dim]")
        if note:
            console.print(note)
    sms = httpx.get(f"{e.sms}/v1/messages", timeout=10).json()["messages"]
    if sms:  # prefer an SMS that is the notice itself over one announcing an email or a letter
        one = min(sms, key=lambda m: ("posted" in m["body"] or "emailed" in m["body"], m["created_at"]))
        console.print(Panel(f"to: {one['to']}\n\n{one['body']}", title="One SMS, as the SMS gateway received it",
                            title_align="left", border_style="green"))


if __name__ == "__main__":
    sys.exit(main())
