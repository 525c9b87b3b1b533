"""`panui feed submit` — upload an agency's affected-record file to intake in chunks.

The file (CSV with a header row, or NDJSON) is streamed: never loaded whole. Each chunk of
N records is one request, sent with an Idempotency-Key derived from the file's SHA-256 and
the chunk's position, so a re-run after an interruption replays chunks intake already
accepted instead of storing them again. Progress is also kept in a state file beside the
upload, and acknowledged chunks are skipped on resume.

Exit codes: 0 all records accepted (warnings allowed); 1 some records were rejected (see the
problems CSV); 2 usage or configuration error (e.g. PANUI_API_KEY missing); 3 the upload
could not be completed (intake unreachable, errors after retries) — re-run to resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from services.common.csvsafe import SafeWriter
from services.intake.parsing.csv_feed import in_quotes_after

feed_app = typer.Typer(help="Submit affected-record feeds to intake (for agencies).", no_args_is_help=True)

API_KEY_ENV = "PANUI_API_KEY"
EXIT_REJECTED, EXIT_USAGE, EXIT_INCOMPLETE = 1, 2, 3
_CONTENT_TYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson"}
_COUNTS = ("received", "accepted", "unchanged", "rejected", "warnings")
PROBLEM_COLUMNS = ("line", "source_record_id", "field", "severity", "code", "message")


@dataclass
class Chunk:
    index: int
    body: bytes
    records: int
    first_line: int  # the original file's line of the chunk's first record
    header_lines: int  # physical lines of the repeated CSV header at the top of the body


class UploadFailed(Exception):
    pass


def detect_file_format(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".ndjson", ".jsonl"):
        return "ndjson"
    raise typer.BadParameter("cannot tell the format from the file name; pass --format csv|ndjson")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _physical_records(f, fmt: str) -> Iterator[tuple[int, list[bytes]]]:  # noqa: ANN001
    """(first line number, physical lines) per record; a quoted CSV field may span lines."""
    line_no = 0
    pending: list[bytes] = []
    start = 0
    in_quotes = False
    for raw in f:
        line_no += 1
        if fmt == "ndjson":
            yield line_no, [raw]
            continue
        if not pending:
            start = line_no
        pending.append(raw)
        in_quotes = in_quotes_after(raw.rstrip(b"\r\n"), in_quotes)
        if not in_quotes:
            yield start, pending
            pending = []
    if pending:
        yield start, pending


def iter_chunks(path: Path, fmt: str, chunk_records: int) -> Iterator[Chunk]:
    """Chunks of `chunk_records` records; CSV chunks repeat the header row. Blank NDJSON lines
    ride along (so a chunk covers a contiguous range of the original lines)."""
    with path.open("rb") as f:
        records = _physical_records(f, fmt)
        header: list[bytes] = []
        if fmt == "csv":
            first = next(records, None)
            if first is None:
                return
            header = first[1]
            if header and header[-1][-1:] != b"\n":
                header[-1] += b"\n"
        index = 0
        body: list[bytes] = list(header)
        count = 0
        first_line = 0
        for start, lines in records:
            if not body[len(header):]:
                first_line = start
            if lines[-1][-1:] != b"\n":
                lines[-1] += b"\n"
            body.extend(lines)
            if b"".join(lines).strip():
                count += 1
            if count >= chunk_records:
                yield Chunk(index, b"".join(body), count, first_line, len(header))
                index += 1
                body, count = list(header), 0
        if count:
            yield Chunk(index, b"".join(body), count, first_line, len(header))


def original_line(chunk: Chunk, line: int) -> int:
    """Map a line of the chunk's body (as intake reports it) back to the original file."""
    if line <= chunk.header_lines:
        return line  # a problem with the header itself
    return chunk.first_line + (line - chunk.header_lines - 1)


class Uploader:
    def __init__(self, client: httpx.Client, incident: str, max_attempts: int = 8):
        self.client = client
        self.incident = incident
        self.max_attempts = max_attempts

    def _request(self, method: str, url: str, **kwargs) -> httpx.Response:
        delay = 0.5
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.max_attempts:
                    raise UploadFailed(f"intake unreachable: {type(exc).__name__}") from None
                time.sleep(delay + random.random() * delay)
                delay = min(delay * 2, 30)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == self.max_attempts:
                    raise UploadFailed(f"intake answered {response.status_code} after {attempt} attempts")
                retry_after = response.headers.get("retry-after", "")
                wait = float(retry_after) if retry_after.isdigit() else delay + random.random() * delay
                time.sleep(min(wait, 60))
                delay = min(delay * 2, 30)
                continue
            return response
        raise UploadFailed("unreachable")  # pragma: no cover

    def send(self, chunk: Chunk, fmt: str, key: str) -> dict:
        response = self._request(
            "POST", f"/v1/incidents/{self.incident}/feeds", content=chunk.body,
            headers={"content-type": _CONTENT_TYPES[fmt], "idempotency-key": key})
        if response.status_code != 202:
            raise UploadFailed(_error_text(response))
        return response.json()

    def problems(self, feed_id: str) -> Iterator[dict]:
        after = 0
        while True:
            response = self._request(
                "GET", f"/v1/incidents/{self.incident}/feeds/{feed_id}/problems",
                params={"after_line": after, "limit": 5000})
            if response.status_code != 200:
                raise UploadFailed(_error_text(response))
            page = response.json()
            yield from page["problems"]
            if page["next_after_line"] is None:
                return
            after = page["next_after_line"]


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"intake answered {response.status_code} {error['code']}: {error['message']}"
    except Exception:  # noqa: BLE001 - not our error shape
        return f"intake answered {response.status_code}"


def _load_state(path: Path, identity: dict) -> dict:
    if path.exists():
        try:
            state = json.loads(path.read_text())
            if {k: state.get(k) for k in identity} == identity:
                return state
        except (OSError, ValueError):
            pass
    return {**identity, "chunks": {}}


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)  # atomic: an interruption never leaves half a state file


@feed_app.command("submit")
def submit(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="CSV (with a header row) or NDJSON file of affected records"),
    incident: str = typer.Option(..., "--incident", help="Incident id"),
    url: str = typer.Option("http://127.0.0.1:8001", "--url", help="Intake base URL"),
    chunk_records: int = typer.Option(10_000, "--chunk-records", min=1, max=50_000,
                                      help="Records per request"),
    problems_path: Path | None = typer.Option(None, "--problems",
                                              help="Where to write problems (default FILE.problems.csv)"),
    fmt: str | None = typer.Option(None, "--format", help="csv or ndjson (default: from the extension)"),
    state_path: Path | None = typer.Option(None, "--state",
                                           help="Progress file (default FILE.panui-state.json)"),
    stop_after_chunks: int | None = typer.Option(None, "--stop-after-chunks", hidden=True),
) -> None:
    """Upload FILE to an incident in chunks; resumable; writes problems to a CSV.

    The API key is read from the PANUI_API_KEY environment variable. Exit code 0: all records
    accepted; 1: some rejected (fix them using the problems CSV and re-submit); 2: usage or
    configuration error; 3: upload incomplete (re-run the same command to resume).
    """
    console = Console(stderr=True)
    api_key = os.environ.get(API_KEY_ENV, "").strip()
    if not api_key:
        console.print(f"[red]error:[/red] set {API_KEY_ENV} to your agency's API key")
        raise typer.Exit(EXIT_USAGE)
    if fmt is not None and fmt not in _CONTENT_TYPES:
        console.print("[red]error:[/red] --format must be csv or ndjson")
        raise typer.Exit(EXIT_USAGE)
    try:
        fmt = detect_file_format(file, fmt)
    except typer.BadParameter as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None

    sha = file_sha256(file)
    state_path = state_path or file.with_name(file.name + ".panui-state.json")
    problems_path = problems_path or file.with_name(file.stem + ".problems.csv")
    state = _load_state(state_path, {"sha256": sha, "incident": incident, "chunk_records": chunk_records})
    done: dict = state["chunks"]
    totals = dict.fromkeys(_COUNTS, 0)
    chunks_meta: list[tuple[Chunk, dict]] = []

    headers = {"authorization": f"Bearer {api_key}", "user-agent": "panui-cli"}
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(300, connect=10)) as client:
        uploader = Uploader(client, incident)
        try:
            with Progress(TextColumn("[bold]uploading"), BarColumn(), TransferSpeedColumn(),
                          TextColumn("{task.fields[records]} records"), TimeRemainingColumn(),
                          console=console, transient=False) as progress:
                task = progress.add_task("upload", total=file.stat().st_size, records=0)
                sent_records = 0
                for chunk in iter_chunks(file, fmt, chunk_records):
                    if stop_after_chunks is not None and chunk.index >= stop_after_chunks:
                        raise UploadFailed("stopped (test hook)")
                    receipt = done.get(str(chunk.index))
                    if receipt is None:
                        key = f"panui-{sha[:40]}-{chunk_records}-{chunk.index}"
                        receipt = uploader.send(chunk, fmt, key)
                        receipt = {k: receipt[k] for k in ("feed_id", *_COUNTS)}
                        receipt.update(first_line=chunk.first_line, header_lines=chunk.header_lines)
                        done[str(chunk.index)] = receipt
                        _save_state(state_path, state)
                    chunks_meta.append((Chunk(chunk.index, b"", chunk.records, chunk.first_line,
                                              chunk.header_lines), receipt))
                    for k in _COUNTS:
                        totals[k] += receipt[k]
                    sent_records += chunk.records
                    progress.update(task, advance=len(chunk.body) - _header_bytes(chunk),
                                    records=sent_records)
                progress.update(task, completed=file.stat().st_size)

            problem_count = 0
            with problems_path.open("w", newline="", encoding="utf-8") as out:
                writer = SafeWriter(out)
                writer.writerow(PROBLEM_COLUMNS)
                for chunk, receipt in chunks_meta:
                    if not (receipt["rejected"] or receipt["warnings"]):
                        continue
                    for p in uploader.problems(receipt["feed_id"]):
                        problem_count += 1
                        writer.writerow([original_line(chunk, p["line"]), p["source_record_id"] or "",
                                         p["field"] or "", p["severity"], p["code"], p["message"]])
        except UploadFailed as exc:
            console.print(f"[red]upload incomplete:[/red] {exc}")
            console.print(f"{len(done)} chunk(s) acknowledged; re-run the same command to resume.")
            raise typer.Exit(EXIT_INCOMPLETE) from None

    table = Table(title=f"Feed summary — {file.name} → incident {incident}")
    for column in ("chunks", *_COUNTS, "problems"):
        table.add_column(column, justify="right")
    table.add_row(str(len(chunks_meta)), *(str(totals[k]) for k in _COUNTS), str(problem_count))
    Console().print(table)
    if problem_count:
        console.print(f"problems written to {problems_path} (line numbers are the file's own)")
    else:
        problems_path.unlink(missing_ok=True)
    if totals["rejected"]:
        console.print(f"[yellow]{totals['rejected']} record(s) rejected[/yellow]: fix them and re-submit")
        raise typer.Exit(EXIT_REJECTED)


def _header_bytes(chunk: Chunk) -> int:
    if chunk.index == 0 or not chunk.header_lines:
        return 0
    return len(b"".join(chunk.body.splitlines(keepends=True)[: chunk.header_lines]))
