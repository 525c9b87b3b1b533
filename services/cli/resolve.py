"""`panui resolve`: offline identity resolution of an affected-records file.

Ops use it to preview a dedupe before release. Each NDJSON line is one affected record
(contract affected-record.v1) plus the `agency_id` that holds it. Lines are validated as
intake would: warnings drop a field and keep the record; a line intake would reject is
reported with its line number, the run goes on, and the exit code is 1 at the end.
Messages name lines, fields and problem codes, never personal values.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from services.common.csvsafe import SafeWriter

AGENCY_ID_MAX = 128


@dataclass
class ReadReport:
    lines: int = 0
    accepted: int = 0
    bad_lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _problem_text(problem: Any) -> str:
    where = f" ({problem.field})" if problem.field else ""
    return f"line {problem.line}: {problem.code}{where}: {problem.message}"


def read_records(path: Path, report: ReadReport) -> Iterator[Any]:
    """Yield a MatchRecord for each good line; note bad lines and warnings in `report`."""
    from services.dedupe.resolver import MatchRecord
    from services.intake.validation import Problem, validate_record

    seen: set[tuple[str, str]] = set()
    with path.open("rb") as handle:
        for line_no, raw_line in enumerate(handle, start=1):
            if not raw_line.strip():
                continue
            report.lines += 1
            try:
                raw = orjson.loads(raw_line)
            except orjson.JSONDecodeError:
                code = "parse.invalid_json"
                try:
                    raw_line.decode("utf-8")
                except UnicodeDecodeError:
                    code = "parse.invalid_utf8"
                report.bad_lines.append(_problem_text(Problem.of(code, line_no)))
                continue
            if not isinstance(raw, dict):
                report.bad_lines.append(_problem_text(Problem.of("record.not_an_object", line_no)))
                continue
            agency_id = raw.pop("agency_id", None)
            if not isinstance(agency_id, str) or not agency_id.strip() or len(agency_id) > AGENCY_ID_MAX:
                report.bad_lines.append(
                    f"line {line_no}: agency_id (agency_id): agency_id is missing, not text, "
                    f"or longer than {AGENCY_ID_MAX} characters"
                )
                continue
            result = validate_record(raw, line_no)
            for problem in result.problems:
                if problem.severity == "warning":
                    report.warnings.append(_problem_text(problem))
            if result.record is None:
                errors = [p for p in result.problems if p.severity == "error"]
                report.bad_lines.append("; ".join(_problem_text(p) for p in errors)
                                        or f"line {line_no}: record rejected")
                continue
            record = MatchRecord.from_clean(agency_id.strip(), result.record)
            if record.key in seen:
                report.bad_lines.append(
                    f"line {line_no}: record.duplicate (source_record_id): the same agency_id and "
                    "source_record_id appeared on an earlier line; this line was not used"
                )
                continue
            seen.add(record.key)
            report.accepted += 1
            yield record


def write_assignments(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = SafeWriter(handle, lineterminator="\n")
        writer.writerow(["agency_id", "source_record_id", "person_id"])
        writer.writerows(rows)


REVIEW_HEADER = [
    "a_agency_id", "a_source_record_id", "a_person_id", "b_agency_id", "b_source_record_id",
    "b_person_id", "why", "weight", "match_threshold", "review_threshold", "reason", "comparisons",
]


def write_review(path: Path, items: list[Any]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = SafeWriter(handle, lineterminator="\n")
        writer.writerow(REVIEW_HEADER)
        for item in items:
            ev = item.evidence
            comparisons = "; ".join(f"{p.field}={p.level}({p.weight:+g})" for p in ev.parts)
            writer.writerow([*item.a, item.a_person_id, *item.b, item.b_person_id, item.why,
                             ev.weight, ev.match_threshold, ev.review_threshold, ev.reason,
                             comparisons])


def resolve_command(
    input_path: Annotated[Path, typer.Argument(
        metavar="INPUT.ndjson", exists=True, dir_okay=False, readable=True,
        help="Affected records, one JSON object per line, each with an agency_id.")],
    out: Annotated[Path, typer.Option(
        "--out", dir_okay=False, help="Where to write agency_id,source_record_id,person_id.")],
    review: Annotated[Path | None, typer.Option(
        "--review", dir_okay=False, help="Where to write uncertain pairs for human review.")] = None,
) -> None:
    """Assign every affected record to a person, offline. Same input, same output."""
    from services.dedupe.resolver import Resolver

    report = ReadReport()
    resolver = Resolver()
    resolver.add_many(read_records(input_path, report))
    write_assignments(out, resolver.assignments())
    items = resolver.review_items()
    if review is not None:
        write_review(review, items)

    err = typer.echo
    for message in report.warnings:
        err(f"warning: {message}", err=True)
    for message in report.bad_lines:
        err(f"error: {message}", err=True)
    persons = len(resolver.persons())
    err(f"{report.accepted} of {report.lines} records resolved to {persons} persons; "
        f"{len(items)} pairs for review; {len(report.bad_lines)} bad lines; "
        f"{len(report.warnings)} warnings", err=True)
    if report.bad_lines:
        raise typer.Exit(code=1)


if __name__ == "__main__":  # pragma: no cover - `python -m services.cli.resolve ...`
    app = typer.Typer(add_completion=False)
    app.command()(resolve_command)
    sys.exit(app())
