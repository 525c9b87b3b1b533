"""scripts/audit.py on synthetic OSV records: the range logic, the snapshot's formats and its pin,
the allow-list, and the command's output and exit codes. No real advisory data is needed."""

import datetime as dt
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.security import ROOT, load_audit

audit = load_audit()
TODAY = dt.date(2026, 12, 1)


def record(id="PYSEC-2099-1", package="demo-pkg", events=None, versions=None, ecosystem="PyPI",
           range_type="ECOSYSTEM", **extra):
    entry = {"package": {"name": package, "ecosystem": ecosystem}}
    if events is not None:
        entry["ranges"] = [{"type": range_type, "events": events}]
    if versions is not None:
        entry["versions"] = versions
    return {"id": id, "summary": f"synthetic advisory {id}", "affected": [entry],
            "modified": "2099-01-01T00:00:00Z", **extra}


def advisory(**kwargs):
    return audit.Advisory.from_record(record(**kwargs))


# --- the range logic ------------------------------------------------------------------------------

def test_a_pin_inside_introduced_fixed_is_vulnerable_and_the_fix_is_named():
    a = advisory(events=[{"introduced": "0"}, {"fixed": "2.0"}])
    assert a.affects("demo-pkg", "1.5")
    assert a.fixed_in("demo-pkg", "1.5") == ["2.0"]


@pytest.mark.parametrize("version", ["2.0", "2.0.1", "3"])
def test_a_fixed_pin_is_not_vulnerable(version):
    assert not advisory(events=[{"introduced": "0"}, {"fixed": "2.0"}]).affects("demo-pkg", version)


def test_below_introduced_is_not_vulnerable():
    a = advisory(events=[{"introduced": "1.2"}, {"fixed": "1.4"}])
    assert not a.affects("demo-pkg", "1.1.9")
    assert a.affects("demo-pkg", "1.2")
    assert a.affects("demo-pkg", "1.3.7")


def test_last_affected_is_inclusive_and_what_follows_is_not_affected():
    a = advisory(events=[{"introduced": "1.0"}, {"last_affected": "1.5"}])
    assert a.affects("demo-pkg", "1.5")
    assert not a.affects("demo-pkg", "1.5.1")
    assert a.fixed_in("demo-pkg", "1.5") == []  # no fixed release: the output says so


def test_limit_closes_the_range():
    a = advisory(events=[{"introduced": "0"}, {"limit": "3.0"}])
    assert a.affects("demo-pkg", "2.9") and not a.affects("demo-pkg", "3.0")


def test_events_are_ordered_by_pep440_not_as_written_and_a_range_can_reopen():
    a = advisory(events=[{"introduced": "2.0"}, {"fixed": "1.10"}, {"introduced": "1.0"}, {"fixed": "2.1"}])
    assert a.affects("demo-pkg", "1.9")  # 1.9 < 1.10 in PEP 440, not in string order
    assert not a.affects("demo-pkg", "1.10")
    assert a.affects("demo-pkg", "2.0.5")
    assert not a.affects("demo-pkg", "2.1")


def test_a_prerelease_of_the_fix_is_still_vulnerable():
    a = advisory(events=[{"introduced": "0"}, {"fixed": "2.0"}])
    assert a.affects("demo-pkg", "2.0rc1")
    assert not a.affects("demo-pkg", "2.0.post1")


def test_the_versions_list_alone_marks_exact_versions_pep440_equal():
    a = advisory(versions=["1.0", "1.1"])
    assert a.affects("demo-pkg", "1.0") and a.affects("demo-pkg", "1.0.0") and a.affects("demo-pkg", "1.1")
    assert not a.affects("demo-pkg", "1.2")


def test_withdrawn_advisories_affect_nothing():
    a = advisory(events=[{"introduced": "0"}], versions=["1.0"], withdrawn="2099-02-01T00:00:00Z")
    assert not a.affects("demo-pkg", "1.0")


def test_other_ecosystems_and_git_ranges_are_ignored_names_are_normalised():
    assert not advisory(events=[{"introduced": "0"}], ecosystem="npm").affects("demo-pkg", "1.0")
    assert not advisory(events=[{"introduced": "0"}], range_type="GIT").affects("demo-pkg", "1.0")
    a = advisory(package="Demo_Pkg", events=[{"introduced": "0"}, {"fixed": "2"}])
    assert a.affects("demo-pkg", "1.0")
    assert not a.affects("other-pkg", "1.0")


def test_an_unparseable_boundary_is_skipped_not_crashed_on():
    a = advisory(events=[{"introduced": "0"}, {"fixed": "not a version"}])
    assert a.affects("demo-pkg", "5.0")


def test_yaml_versions_stay_strings():
    """`fixed: 1.10` unquoted is the version 1.10; read as a float it would be 1.1 and 1.9 safe."""
    text = "id: PYSEC-2099-9\naffected:\n- package: {name: demo-pkg, ecosystem: PyPI}\n  ranges:\n" \
           "  - type: ECOSYSTEM\n    events:\n    - introduced: 0\n    - fixed: 1.10\n"
    a = audit.Advisory.from_record(yaml.load(text, Loader=audit._YAML_LOADER))  # noqa: S506
    assert a.affects("demo-pkg", "1.9")
    assert not a.affects("demo-pkg", "1.10")


# --- locks --------------------------------------------------------------------------------------

def test_read_lock_takes_every_pin_with_its_marker_and_skips_hashes_and_comments(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text("# header\nDemo_Pkg==1.5 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via panui\n"
                    "numpy==2.4.6 ; python_full_version < '3.12' \\\n    --hash=sha256:" + "b" * 64 + "\n"
                    "uvicorn[standard]==0.54.0\n")
    pins = audit.read_lock(lock)
    assert [(p.name, p.version, p.marker) for p in pins] == [
        ("demo-pkg", "1.5", ""), ("numpy", "2.4.6", "python_full_version < '3.12'"), ("uvicorn", "0.54.0", "")]


# --- the snapshot: formats, digest, pin ----------------------------------------------------------

RECORDS = {
    "vulns/demo-pkg/PYSEC-2099-1.yaml": record(events=[{"introduced": "0"}, {"fixed": "2.0"}],
                                               aliases=["CVE-2099-0001"]),
    "vulns/demo-pkg/PYSEC-2099-2.yaml": record(id="PYSEC-2099-2", versions=["1.5"], withdrawn="2099-03-01T00:00:00Z"),
    "vulns/other/PYSEC-2099-3.yaml": record(id="PYSEC-2099-3", package="other", versions=["0.1"]),
}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _bytes():
    return {name: yaml.safe_dump(rec).encode() for name, rec in RECORDS.items()}


def make_tar(path: Path, commit: str = COMMIT, records: dict | None = None) -> Path:
    """Like `git archive --format=tar.gz`: a prefix directory and the commit in the pax header."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": commit}) as tar:
        for name, data in (records or _bytes()).items():
            info = tarfile.TarInfo(f"advisory-database/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        readme = b"not a record"
        info = tarfile.TarInfo("advisory-database/.github/workflows/x.yaml")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return path


def write_pin(path: Path, snapshot, archive: str = "var/x.tar.gz") -> Path:
    path.write_text(f'[snapshot]\nsource = "test"\ncommit = "{COMMIT}"\ndate = 2099-01-02T03:04:05Z\n'
                    f'records = {len(snapshot.advisories)}\ndigest = "{snapshot.digest}"\narchive = "{archive}"\n')
    return path


def test_tar_zip_and_directory_of_the_same_records_have_the_same_digest(tmp_path):
    tar = audit.load_snapshot(make_tar(tmp_path / "s.tar.gz"))
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z:
        z.comment = COMMIT.encode()
        for name, data in _bytes().items():
            z.writestr(f"advisory-database-main/{name}", data)
    zipped = audit.load_snapshot(tmp_path / "s.zip")
    for name, data in _bytes().items():
        (tmp_path / "dir" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "dir" / name).write_bytes(data)
    directory = audit.load_snapshot(tmp_path / "dir")
    assert len(tar.advisories) == 3  # the workflow file outside vulns/ is not a record
    assert tar.digest == zipped.digest == directory.digest
    assert tar.commit == zipped.commit == COMMIT and directory.commit is None


def test_osv_json_records_read_too(tmp_path):
    with zipfile.ZipFile(tmp_path / "all.zip", "w") as z:
        for name, rec in RECORDS.items():
            z.writestr(Path(name).with_suffix(".json").name, json.dumps(rec))
    snapshot = audit.load_snapshot(tmp_path / "all.zip")
    assert {a.id for a in snapshot.advisories} == {"PYSEC-2099-1", "PYSEC-2099-2", "PYSEC-2099-3"}


def test_a_changed_record_or_another_commit_is_not_the_pinned_snapshot(tmp_path):
    pinned = audit.load_snapshot(make_tar(tmp_path / "a.tar.gz"))
    pin = audit.SnapshotPin.read(write_pin(tmp_path / "pin.toml", pinned))
    audit.verify(pinned, pin)
    tampered = _bytes()
    tampered["vulns/demo-pkg/PYSEC-2099-1.yaml"] = yaml.safe_dump(record(events=[{"introduced": "9"}])).encode()
    with pytest.raises(audit.SnapshotError, match="not the pinned snapshot"):
        audit.verify(audit.load_snapshot(make_tar(tmp_path / "b.tar.gz", records=tampered)), pin)
    with pytest.raises(audit.SnapshotError, match="commit"):
        audit.verify(audit.load_snapshot(make_tar(tmp_path / "c.tar.gz", commit="f" * 40)), pin)
    with pytest.raises(audit.SnapshotMissing):
        audit.load_snapshot(tmp_path / "absent.tar.gz")


def test_the_repositorys_pin_is_well_formed():
    pin = audit.SnapshotPin.read(audit.PIN_FILE)
    assert len(pin.commit) == 40 and pin.digest.startswith("sha256:") and pin.records > 0
    assert pin.archive.startswith("var/"), "the data is never committed: it lives under var/ (ignored)"


# --- the audit and the allow-list ---------------------------------------------------------------

def _pins(*pairs):
    return [audit.Pin(name, version, "", "test.lock") for name, version in pairs]


def _allow(tmp_path, **entry):
    text = "[[allow]]\n" + "".join(
        f"{k} = {v.isoformat() if isinstance(v, dt.date) else json.dumps(v)}\n" for k, v in entry.items())
    (tmp_path / "allow.toml").write_text(text)
    return audit.read_allow_list(tmp_path / "allow.toml")


def test_audit_finds_the_vulnerable_pin_only(tmp_path):
    snapshot = audit.load_snapshot(make_tar(tmp_path / "s.tar.gz"))
    findings = audit.audit(_pins(("demo-pkg", "1.5"), ("demo-pkg", "2.0"), ("other", "0.2")), snapshot, [], TODAY)
    assert [(f.advisory.id, f.name, f.version, f.fixed_in, f.blocking) for f in findings] == [
        ("PYSEC-2099-1", "demo-pkg", "1.5", ["2.0"], True)]  # PYSEC-2099-2 lists 1.5 but is withdrawn


def test_an_allow_list_entry_covers_its_exact_pin_until_it_expires(tmp_path):
    snapshot = audit.load_snapshot(make_tar(tmp_path / "s.tar.gz"))
    entry = dict(id="CVE-2099-0001", package="Demo_Pkg", version="1.5", reason="reviewed: unused code path",
                 expires=dt.date(2026, 12, 31))
    (finding,) = audit.audit(_pins(("demo-pkg", "1.5")), snapshot, _allow(tmp_path, **entry), TODAY)
    assert finding.allowance and not finding.blocking  # matched through the alias
    (finding,) = audit.audit(_pins(("demo-pkg", "1.5")), snapshot, _allow(tmp_path, **entry), dt.date(2027, 1, 1))
    assert finding.expired and finding.blocking
    (finding,) = audit.audit(_pins(("demo-pkg", "1.6")), snapshot, _allow(tmp_path, **entry), TODAY)
    assert finding.allowance is None and finding.blocking  # a bump needs its own review


@pytest.mark.parametrize("missing", ["reason", "expires", "version"])
def test_an_allow_list_entry_without_its_justification_is_refused(tmp_path, missing):
    entry = dict(id="PYSEC-2099-1", package="demo-pkg", version="1.5", reason="r", expires=dt.date(2027, 1, 1))
    del entry[missing]
    with pytest.raises(audit.AllowListError, match=missing):
        _allow(tmp_path, **entry)


def test_the_repositorys_allow_list_is_well_formed():
    for allowance in audit.read_allow_list(audit.ALLOW_LIST):
        assert len(allowance.reason) > 20, f"{allowance.id}: say why it is acceptable"


# --- the command --------------------------------------------------------------------------------

def _run(tmp_path, *args):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit.py"), "--today", "2026-12-01", *args],
                          capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    return done.returncode, done.stdout + done.stderr


def test_the_command_prints_the_snapshot_date_and_fails_on_a_vulnerable_pin(tmp_path):
    archive = make_tar(tmp_path / "s.tar.gz")
    pin = write_pin(tmp_path / "pin.toml", audit.load_snapshot(archive))
    lock = tmp_path / "r.lock"
    lock.write_text("demo-pkg==1.5 \\\n    --hash=sha256:" + "a" * 64 + "\nother==0.2\n")
    empty = tmp_path / "none.toml"
    empty.write_text("")
    code, out = _run(tmp_path, "--pin", str(pin), "--snapshot", str(archive), "--lock", str(lock),
                     "--allow-list", str(empty))
    assert code == 1, out
    assert "dated 2099-01-02 03:04Z" in out and "3 records, digest verified" in out
    assert "VULNERABLE: PYSEC-2099-1 (CVE-2099-0001) demo-pkg 1.5 fixed in 2.0 [r.lock]" in out

    lock.write_text("demo-pkg==2.0\nother==0.2\n")
    code, out = _run(tmp_path, "--pin", str(pin), "--snapshot", str(archive), "--lock", str(lock),
                     "--allow-list", str(empty))
    assert code == 0 and "OK: no known-vulnerable pin" in out, out


def test_the_command_says_why_it_cannot_audit(tmp_path):
    archive = make_tar(tmp_path / "s.tar.gz")
    pin = write_pin(tmp_path / "pin.toml", audit.load_snapshot(archive))
    code, out = _run(tmp_path, "--pin", str(pin), "--snapshot", str(tmp_path / "absent.tar.gz"))
    assert code == 3 and "no advisory snapshot at" in out and "No package registry publishes" in out
    other = make_tar(tmp_path / "o.tar.gz", commit="e" * 40)
    code, out = _run(tmp_path, "--pin", str(pin), "--snapshot", str(other))
    assert code == 2 and "the pin is" in out, out
