"""scripts/audit.py: the range logic, the snapshot's formats and its pin, the allow-list and the
command's output and exit codes on synthetic OSV records; then the committed, pinned snapshot of
the real database against known-vulnerable pins, the allow-list and the repository's own locks."""

import datetime as dt
import functools
import hashlib
import io
import json
import os
import shutil
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


def write_pin(path: Path, snapshot, archive: str = "var/x.tar.gz", sha256: str = "0" * 64,
              commit: str = COMMIT) -> Path:
    path.write_text(f'[snapshot]\nsource = "test"\ncommit = "{commit}"\ndate = 2099-01-02T03:04:05Z\n'
                    f'records = {len(snapshot.advisories)}\ndigest = "{snapshot.digest}"\narchive = "{archive}"\n'
                    f'sha256 = "{sha256}"\n')
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


def test_a_pin_without_the_archives_sha256_is_refused(tmp_path):
    snapshot = audit.load_snapshot(make_tar(tmp_path / "s.tar.gz"))
    with pytest.raises(audit.SnapshotError, match="sha256"):
        audit.SnapshotPin.read(write_pin(tmp_path / "pin.toml", snapshot, sha256="abc"))


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
    env = {k: v for k, v in os.environ.items() if k != audit.SNAPSHOT_ENV}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit.py"), "--today", "2026-12-01", *args],
                          capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path, env=env)
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
    assert code == 3 and "no advisory snapshot at" in out and "its archive is committed at" in out
    other = make_tar(tmp_path / "o.tar.gz", commit="e" * 40)
    code, out = _run(tmp_path, "--pin", str(pin), "--snapshot", str(other))
    assert code == 2 and "the pin is" in out, out


# --- the committed snapshot of the real database ------------------------------------------------

PIN = audit.SnapshotPin.read(audit.PIN_FILE)
_load_snapshot = functools.cache(audit.load_snapshot)  # the real database once per run, not per test


def real_snapshot():
    return _load_snapshot(PIN.archive_path)


def _lock_file(tmp_path, *pins: str) -> Path:
    lock = tmp_path / "known.lock"
    lock.write_text("".join(f"{pin} \\\n    --hash=sha256:{'c' * 64}\n" for pin in pins))
    return lock


def _allow_file(tmp_path, text: str) -> Path:
    path = tmp_path / "allow.toml"
    path.write_text(text)
    return path


def _main(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    """The command in-process (the default snapshot is the committed archive), as `make audit`."""
    monkeypatch.delenv(audit.SNAPSHOT_ENV, raising=False)
    monkeypatch.setattr(audit, "load_snapshot", _load_snapshot)
    code = audit.main(["--today", "2026-12-01", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_pinned_archive_is_committed_and_is_the_pinned_snapshot():
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", PIN.archive], cwd=ROOT,
                             capture_output=True, text=True, check=False)
    assert tracked.returncode == 0, f"{PIN.archive} must be committed: CI has no other way to get it"
    assert hashlib.sha256(PIN.archive_path.read_bytes()).hexdigest() == PIN.sha256
    audit.check_archive(PIN.archive_path, PIN)
    snapshot = real_snapshot()
    audit.verify(snapshot, PIN)
    assert snapshot.commit == PIN.commit and len(snapshot.advisories) == PIN.records


def test_a_changed_archive_at_the_pinned_path_is_refused_before_it_is_read(tmp_path):
    copy = tmp_path / "archive.tar.gz"
    shutil.copy(PIN.archive_path, copy)
    with copy.open("ab") as f:
        f.write(b"\0")  # still a readable gzip stream with the same records: only the sha256 sees it
    pin = write_pin(tmp_path / "pin.toml", real_snapshot(), archive=str(copy),
                    sha256=PIN.sha256, commit=PIN.commit)
    code, out = _run(tmp_path, "--pin", str(pin))
    assert code == 2 and "not the pinned archive" in out, out


def test_known_vulnerable_pins_fail_the_audit_against_the_real_snapshot(tmp_path, capsys, monkeypatch):
    lock = _lock_file(tmp_path, "requests==2.19.1", "Jinja2==2.10", "PyYAML==6.0.2")
    empty = _allow_file(tmp_path, "")
    code, out = _main(capsys, monkeypatch, "--lock", str(lock), "--allow-list", str(empty))
    assert code == 1, out
    assert "dated 2024-10-10 17:35Z" in out and f"{PIN.records} records, sha256, commit and digest verified" in out
    assert "VULNERABLE: PYSEC-2018-28 (CVE-2018-18074, GHSA-x84v-xcm2-53pg) requests 2.19.1 fixed in 2.20.0" in out
    assert "VULNERABLE: PYSEC-2019-217" in out and "jinja2 2.10 fixed in 2.10.1" in out
    assert not [line for line in out.splitlines() if " pyyaml " in line]  # 6.0.2 has no finding
    assert "FAIL: 4 known-vulnerable pin(s)" in out

    fixed = _lock_file(tmp_path, "requests==2.32.3", "Jinja2==3.1.4", "PyYAML==6.0.2")
    code, out = _main(capsys, monkeypatch, "--lock", str(fixed), "--allow-list", str(empty))
    assert code == 0 and "OK: no known-vulnerable pin (0 allow-listed finding(s))" in out, out


ALLOW_NUMEXPR = """[[allow]]
id = "CVE-2023-39631"
package = "numexpr"
version = "2.14.2"
reason = "reviewed: evaluate() validates its input since 2.8.5 and is never given untrusted text"
expires = 2027-03-01
"""


def test_an_allow_listed_pin_passes_until_its_entry_expires(tmp_path, capsys, monkeypatch):
    lock = _lock_file(tmp_path, "numexpr==2.14.2")
    allow = _allow_file(tmp_path, ALLOW_NUMEXPR)
    code, out = _main(capsys, monkeypatch, "--lock", str(lock), "--allow-list", str(allow))
    assert code == 0, out
    assert "ALLOWED until 2027-03-01: PYSEC-2023-163 (CVE-2023-39631) numexpr 2.14.2" in out

    code, out = _main(capsys, monkeypatch, "--lock", str(lock), "--allow-list", str(allow), "--today", "2027-03-02")
    assert code == 1 and "allow-list entry EXPIRED 2027-03-01: PYSEC-2023-163" in out, out

    code, out = _main(capsys, monkeypatch, "--lock", str(lock), "--allow-list", str(_allow_file(tmp_path, "")))
    assert code == 1 and "VULNERABLE: PYSEC-2023-163" in out, out


def test_the_repositorys_locks_pass_with_the_reviewed_allow_list(capsys, monkeypatch):
    """What `make audit` in .ci/run does: every locked pin, the committed snapshot, the allow-list."""
    code, out = _main(capsys, monkeypatch)
    assert code == 0, out
    assert "in 3 locks: requirements.lock, requirements-dev.lock, requirements-bench.lock" in out
    assert "matches no finding" not in out, "a stale allow-list entry: remove it"
