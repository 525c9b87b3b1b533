"""Every CSV the project writes is formula-safe: one helper, used by every writer."""

import csv
import io

import pytest

from services.cli.resolve import write_assignments
from services.common.csvsafe import SafeWriter, csv_safe

DANGEROUS = ["=1+1", "+64 21", "-2+3", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")']


@pytest.mark.parametrize("value, expected", [
    *((v, "'" + v) for v in DANGEROUS),
    ("Aroha", "Aroha"), (None, ""), ("12 Main St", "12 Main St"), ("", ""),
    (-3.5, "-3.5"), (-2, "-2"), (True, "True"),
])
def test_cells_are_neutralised_numbers_kept(value, expected):
    assert csv_safe(value) == expected


def test_safe_writer_neutralises_every_cell():
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.writerows([DANGEROUS, ["ok", None, 1]])
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["'" + v for v in DANGEROUS]
    assert rows[1] == ["ok", "", "1"]


def test_cli_resolve_exports_are_formula_safe(tmp_path):
    path = tmp_path / "assignments.csv"
    write_assignments(path, [("=agency", "+srid", "@person")])
    rows = list(csv.reader(path.open(newline="")))
    assert rows[1] == ["'=agency", "'+srid", "'@person"]


def test_no_csv_writer_outside_the_helper():
    """A new CSV export must use SafeWriter: no bare csv.writer in services/."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "services"
    bare = [str(p.relative_to(root)) for p in root.rglob("*.py")
            if p.name != "csvsafe.py" and ("csv.writer(" in p.read_text() or "DictWriter(" in p.read_text())]
    assert bare == []
