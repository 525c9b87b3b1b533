"""`panui lag` — consumer group lag and status, read from Kafka itself (services/common/lag).

One sample by default: lag per partition, and OK or ERR (a group missing, or lag with no
consumer). WARN, STALL and STOP need a window of samples: `--watch N` samples every N seconds
and judges over the last `--window` samples (`--count` to stop after that many — a probe can
run `panui lag --watch 10 --count 10`).

Exit codes: 0 every group OK; 1 some group is not OK; 2 usage error; 3 Kafka did not answer.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.common.settings import ServiceSettings

if TYPE_CHECKING:
    from services.common.lag import LagMonitor, LagReport

EXIT_NOT_OK, EXIT_UNAVAILABLE = 1, 3
_STYLE = {"OK": "green", "WARN": "yellow", "STALL": "red", "STOP": "red", "ERR": "bold red"}


def render_report(console: Console, report: LagReport) -> None:
    console.print(f"[bold]{report.cluster}[/bold] at {report.at:%Y-%m-%d %H:%M:%S} UTC: "
                  f"{len(report.groups)} consumer groups, worst "
                  f"[{_STYLE[report.status]}]{report.status}[/]")
    for g in report.groups:
        title = f"{g.group}  [{_STYLE[g.status]}]{g.status}[/]  {g.reason}"
        caption = (f"{g.sample.state}, {g.sample.members} members, total lag {g.total_lag}, "
                   f"window {g.complete:.0%} full")
        if not g.partitions:
            console.print(f"{title}\n  no partitions to read (none of its topics exist); {caption}")
            continue
        table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
        for column in ("topic", "partition", "committed", "log end", "lag", "status", "note"):
            table.add_column(column, justify="left" if column in ("topic", "status", "note") else "right")
        for p in g.partitions:
            c = p.current
            table.add_row(c.topic, str(c.partition), "-" if c.committed is None else str(c.committed),
                          str(c.log_end), str(c.lag), f"[{_STYLE[p.status]}]{p.status}[/]",
                          f"no commit: lag from log start {c.log_start}" if c.no_commit else "")
        console.print(table)


def _json(report: LagReport, prefix: str) -> str:
    from services.common.lag.burrow import lag_response

    return lag_response(report, prefix=prefix).model_dump_json()


async def _run(monitor: LagMonitor, watch: float | None, count: int | None, as_json: bool,
               console: Console) -> int:
    from services.common.lag import LagUnavailable

    rounds = count if count is not None else (None if watch else 1)
    code = 0
    done = 0
    try:
        while rounds is None or done < rounds:
            if done and watch:
                await asyncio.sleep(watch)
            done += 1
            try:
                report = await monitor.refresh()
            except LagUnavailable as exc:
                typer.echo(f"error: {exc}", err=True)
                code = EXIT_UNAVAILABLE
                if not watch:
                    break
                continue
            code = 0 if report.ok else EXIT_NOT_OK
            if as_json:
                typer.echo(_json(report, monitor.sampler.prefix))
            else:
                if watch and console.is_terminal:
                    console.clear()
                render_report(console, report)
    finally:
        await monitor.stop()
    return code


def lag_command(
    bootstrap: Annotated[str, typer.Option(
        "--bootstrap", envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers.")
    ] = ServiceSettings.model_fields["kafka_bootstrap_servers"].default,
    prefix: Annotated[str, typer.Option(
        "--prefix", envvar="PANUI_TOPIC_PREFIX", help="The deployment's topic and group prefix.")
    ] = ServiceSettings.model_fields["topic_prefix"].default,
    group: Annotated[list[str] | None, typer.Option(
        "--group", "-g", help="Only this group (repeatable; the name with or without the prefix). "
                              "A group asked for that the broker does not know is ERR.")] = None,
    expected: Annotated[bool, typer.Option(
        "--expected/--no-expected",
        help="Report the services' own groups even when the broker does not know them (ERR).")] = True,
    watch: Annotated[float | None, typer.Option(
        "--watch", min=0.1, metavar="SECONDS", help="Sample again every SECONDS (Ctrl-C stops).")] = None,
    count: Annotated[int | None, typer.Option(
        "--count", min=1, help="Stop after this many samples (with --watch).")] = None,
    window: Annotated[int, typer.Option(
        "--window", min=2, help="Samples a WARN/STALL judgement spans.")
    ] = ServiceSettings.model_fields["lag_window_samples"].default,
    stop_after: Annotated[float, typer.Option(
        "--stop-after", min=0.001, metavar="SECONDS",
        help="A committed offset frozen this long while lag > 0 is STOP.")
    ] = ServiceSettings.model_fields["lag_stop_after_s"].default,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the Burrow-shaped JSON of GET /v1/ops/lag (one line per sample).")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.1, metavar="SECONDS", help="Kafka request timeout.")] = 10.0,
) -> None:
    """Consumer group lag per partition and status (OK, WARN, STALL, STOP, ERR)."""
    from services.common.kafka_client import KafkaSettingsError, options_for
    from services.common.lag import LagMonitor, LagRules, LagSampler, system_groups


    if count is not None and watch is None and count > 1:
        raise typer.BadParameter("--count above 1 needs --watch SECONDS", param_hint="--count")
    try:
        security = options_for(bootstrap)
    except KafkaSettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    sampler = LagSampler(bootstrap, prefix, system_groups(prefix) if expected else {}, groups=group,
                         request_timeout_ms=int(timeout * 1000), security=security)
    monitor = LagMonitor(sampler, LagRules(window=window, stop_after=timedelta(seconds=stop_after)),
                         interval_s=watch or 0)
    console = Console(width=None if sys.stdout.isatty() else 160)
    # aiokafka logs every failed connection attempt; the command says it once, clearly.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        code = asyncio.run(_run(monitor, watch, count, as_json, console))
    except KeyboardInterrupt:
        code = 130
    finally:
        kafka_log.setLevel(level)
    raise typer.Exit(code=code)
