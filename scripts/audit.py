"""Audit every pin of the hashed locks against a pinned, dated snapshot of the PyPA advisory
database (github.com/pypa/advisory-database, OSV records in YAML; OSV JSON such as an OSV
`PyPI/all.zip` reads too). Offline: nothing here touches the network, so the verdict depends only on
the locks, the snapshot pinned in scripts/advisory-snapshot.toml (committed under third_party/,
verified by the archive's sha256, its commit and a digest over its records) and the reviewed
exceptions in scripts/audit-allowlist.toml.

    python scripts/audit.py [--snapshot PATH] [--lock FILE ...] [--allow-list FILE]

Exit 0: no known-vulnerable pin (or only allow-listed ones); 1: a known-vulnerable pin, or an
expired or malformed allow-list entry; 2: the snapshot is unreadable or not the pinned one; 3: no
snapshot where one was looked for (a checkout without third_party/?). Every non-zero exit fails CI.
No Pānui code is imported: this runs before, and independently of, the project's own tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
PIN_FILE = ROOT / "scripts" / "advisory-snapshot.toml"
ALLOW_LIST = ROOT / "scripts" / "audit-allowlist.toml"
LOCKS = ("requirements.lock", "requirements-dev.lock", "requirements-bench.lock")
SNAPSHOT_ENV = "PANUI_ADVISORY_SNAPSHOT"
RECORD_SUFFIXES = (".yaml", ".yml", ".json")
# Every scalar as the string written (a version `1.10` must not become the float 1.1), and libyaml's
# parser where the wheel has it: a few seconds for the whole database instead of a quarter minute.
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
_YAML_LOADER = getattr(yaml, "CBaseLoader", yaml.BaseLoader)


class SnapshotError(Exception):
    """The snapshot cannot be used: unreadable, or not the pinned one."""


class SnapshotMissing(SnapshotError):
    """There is no snapshot where one was looked for."""


class AllowListError(Exception):
    """The allow-list is malformed (an entry without its reason, expiry or exact pin)."""


# --- locks -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pin:
    name: str  # canonical (PEP 503)
    version: str
    marker: str  # "" when the pin applies everywhere
    lock: str


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?\s*$")


def read_lock(path: Path) -> list[Pin]:
    """Every `name==version [; marker]` line of a pip requirements lock (hash lines skipped)."""
    pins = []
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name, version, marker = match.groups()
            pins.append(Pin(canonicalize_name(name), version, (marker or "").strip(), path.name))
    return pins


# --- OSV records and the range logic ------------------------------------------------------------

def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _in_range(version: Version, events: list[dict]) -> bool:
    """OSV range evaluation (ECOSYSTEM/SEMVER events), with PEP 440 ordering: walk the events in
    version order; `introduced` at or below the version opens the range, `fixed` or `limit` at or
    below it closes it, `last_affected` strictly below it closes it."""
    keyed = []
    for event in events:
        (kind, raw), = ((k, v) for k, v in event.items() if k in EVENT_KINDS)
        at = Version("0") if kind == "introduced" and str(raw) == "0" else _version(str(raw))
        if at is None:
            continue  # an unparseable boundary cannot be compared; the versions list may still list it
        keyed.append((at, kind))
    keyed.sort(key=lambda pair: pair[0])
    affected = False
    for at, kind in keyed:
        if kind == "introduced" and version >= at:
            affected = True
        elif kind in ("fixed", "limit") and version >= at:
            affected = False
        elif kind == "last_affected" and version > at:
            affected = False
    return affected


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    withdrawn: bool
    affected: tuple[dict, ...]
    modified: str

    @classmethod
    def from_record(cls, record: dict) -> Advisory:
        text = str(record.get("summary") or record.get("details") or "").strip()
        return cls(id=str(record["id"]), aliases=tuple(str(a) for a in record.get("aliases") or ()),
                   summary=text.split("\n")[0][:100],
                   withdrawn=bool(record.get("withdrawn")), affected=tuple(record.get("affected") or ()),
                   modified=str(record.get("modified") or ""))

    def _entries_for(self, name: str) -> Iterator[dict]:
        for entry in self.affected:
            package = entry.get("package") or {}
            if package.get("ecosystem") == "PyPI" and canonicalize_name(str(package.get("name", ""))) == name:
                yield entry

    def packages(self) -> set[str]:
        return {canonicalize_name(str((e.get("package") or {}).get("name", ""))) for e in self.affected
                if (e.get("package") or {}).get("ecosystem") == "PyPI"}

    def affects(self, name: str, version: str) -> bool:
        """Is `name==version` affected? A withdrawn advisory affects nothing."""
        if self.withdrawn:
            return False
        parsed = _version(version)
        for entry in self._entries_for(name):
            listed = entry.get("versions") or ()
            if version in (str(v) for v in listed):
                return True
            if parsed is None:
                continue
            if any(_version(str(v)) == parsed for v in listed):
                return True
            for rng in entry.get("ranges") or ():
                if rng.get("type") in ("ECOSYSTEM", "SEMVER") and _in_range(parsed, rng.get("events") or []):
                    return True
        return False

    def fixed_in(self, name: str, version: str) -> list[str]:
        """The `fixed` versions above the pin, lowest first: where an upgrade would leave this."""
        parsed = _version(version)
        fixes = set()
        for entry in self._entries_for(name):
            for rng in entry.get("ranges") or ():
                for event in rng.get("events") or ():
                    fixed = _version(str(event.get("fixed", "")))
                    if "fixed" in event and fixed is not None and (parsed is None or fixed > parsed):
                        fixes.add(str(event["fixed"]))
        return sorted(fixes, key=Version)


# --- the snapshot -------------------------------------------------------------------------------

@dataclass
class Snapshot:
    source: str  # where it was read from
    advisories: list[Advisory]
    digest: str  # sha256 over the sorted sha256 of every record: independent of archive format
    commit: str | None  # the git commit the archive says it holds, where it says so
    newest_modified: str
    skipped: int = 0  # records that did not parse

    def index(self) -> dict[str, list[Advisory]]:
        by_package: dict[str, list[Advisory]] = {}
        for advisory in self.advisories:
            for name in advisory.packages():
                by_package.setdefault(name, []).append(advisory)
        return by_package


def _records_in(path: Path) -> tuple[Iterator[tuple[str, bytes]], str | None]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in RECORD_SUFFIXES)
        return ((str(p.relative_to(path)), p.read_bytes()) for p in files), None
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        commit = archive.comment.decode(errors="replace").strip() or None  # `git archive` writes it
        names = sorted(n for n in archive.namelist() if n.endswith(RECORD_SUFFIXES))
        return ((n, archive.read(n)) for n in names), commit
    if tarfile.is_tarfile(path):
        archive = tarfile.open(path)
        commit = archive.pax_headers.get("comment")  # `git archive` writes the commit id here
        members = sorted((m for m in archive.getmembers() if m.isfile() and m.name.endswith(RECORD_SUFFIXES)),
                         key=lambda m: m.name)
        return ((m.name, archive.extractfile(m).read()) for m in members), commit
    raise SnapshotError(f"{path} is neither a directory, a zip nor a tar archive")


def load_snapshot(path: Path) -> Snapshot:
    if not path.exists():
        raise SnapshotMissing(f"no advisory snapshot at {path}")
    records, commit = _records_in(path)
    advisories, hashes, skipped, newest = [], [], 0, ""
    for name, data in records:
        if "/vulns/" not in f"/{name}" and not name.endswith(".json"):
            continue  # the database's records live under vulns/; skip its CI and triage files
        try:
            record = json.loads(data) if name.endswith(".json") else yaml.load(data, Loader=_YAML_LOADER)  # noqa: S506
            advisory = Advisory.from_record(record)
        except (ValueError, KeyError, TypeError, yaml.YAMLError):
            skipped += 1
            continue
        hashes.append(hashlib.sha256(data).hexdigest())
        advisories.append(advisory)
        newest = max(newest, advisory.modified)
    if not advisories:
        raise SnapshotError(f"{path} holds no OSV records")
    digest = "sha256:" + hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()
    return Snapshot(str(path), advisories, digest, commit, newest, skipped)


@dataclass(frozen=True)
class SnapshotPin:
    """scripts/advisory-snapshot.toml: which snapshot the audit trusts."""
    source: str
    commit: str
    date: dt.datetime
    digest: str
    records: int
    archive: str  # the committed archive `make audit` reads by default, relative to the repository
    sha256: str  # of that archive file, checked before it is opened

    @classmethod
    def read(cls, path: Path) -> SnapshotPin:
        data = tomllib.loads(path.read_text())["snapshot"]
        date = data["date"]
        if not isinstance(date, dt.datetime) or date.tzinfo is None:
            raise SnapshotError(f"{path}: date must be an offset date-time, e.g. 2024-10-10T17:35:05Z")
        if not re.fullmatch(r"[0-9a-f]{64}", str(data["sha256"])):
            raise SnapshotError(f"{path}: sha256 must be the archive's 64 hex digits")
        return cls(data["source"], data["commit"], date, data["digest"], int(data["records"]),
                   data["archive"], data["sha256"])

    @property
    def archive_path(self) -> Path:
        return ROOT / self.archive


def check_archive(path: Path, pin: SnapshotPin) -> None:
    """The committed archive is byte for byte the pinned one (before tarfile parses anything)."""
    if not path.is_file():
        raise SnapshotMissing(f"no advisory snapshot at {path}")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != pin.sha256:
        raise SnapshotError(f"{path} has sha256 {actual}, the pin says {pin.sha256}: not the pinned archive")


def verify(snapshot: Snapshot, pin: SnapshotPin) -> None:
    if snapshot.commit and snapshot.commit != pin.commit:
        raise SnapshotError(f"{snapshot.source} is commit {snapshot.commit}, the pin is {pin.commit}")
    if snapshot.digest != pin.digest or len(snapshot.advisories) != pin.records:
        raise SnapshotError(
            f"{snapshot.source} holds {len(snapshot.advisories)} records with digest {snapshot.digest}; "
            f"the pin says {pin.records} with {pin.digest}: not the pinned snapshot")


# --- allow-list ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Allowance:
    id: str
    package: str
    version: str
    reason: str
    expires: dt.date


def read_allow_list(path: Path) -> list[Allowance]:
    if not path.exists():
        return []
    allowances = []
    for i, entry in enumerate(tomllib.loads(path.read_text()).get("allow", []), start=1):
        missing = [k for k in ("id", "package", "version", "reason", "expires") if not entry.get(k)]
        if missing:
            raise AllowListError(f"{path.name} entry {i}: missing {', '.join(missing)}")
        if not isinstance(entry["expires"], dt.date) or isinstance(entry["expires"], dt.datetime):
            raise AllowListError(f"{path.name} entry {i}: expires must be a date (YYYY-MM-DD)")
        allowances.append(Allowance(str(entry["id"]), canonicalize_name(entry["package"]),
                                    str(entry["version"]), str(entry["reason"]).strip(), entry["expires"]))
    return allowances


# --- the audit ----------------------------------------------------------------------------------

@dataclass
class Finding:
    advisory: Advisory
    name: str
    version: str
    locks: list[str] = field(default_factory=list)
    fixed_in: list[str] = field(default_factory=list)
    allowance: Allowance | None = None
    expired: bool = False

    @property
    def blocking(self) -> bool:
        return self.allowance is None or self.expired


def audit(pins: Iterable[Pin], snapshot: Snapshot, allowances: list[Allowance],
          today: dt.date) -> list[Finding]:
    by_package = snapshot.index()
    findings: dict[tuple[str, str, str], Finding] = {}
    for pin in pins:
        for advisory in by_package.get(pin.name, ()):
            if not advisory.affects(pin.name, pin.version):
                continue
            key = (advisory.id, pin.name, pin.version)
            if key not in findings:
                fixes = advisory.fixed_in(pin.name, pin.version)
                findings[key] = Finding(advisory, pin.name, pin.version, fixed_in=fixes)
            findings[key].locks.append(pin.lock)
    for finding in findings.values():
        ids = {finding.advisory.id, *finding.advisory.aliases}
        for allowance in allowances:
            exact = allowance.package == finding.name and allowance.version == finding.version
            if allowance.id in ids and exact:
                finding.allowance, finding.expired = allowance, allowance.expires < today
    return sorted(findings.values(), key=lambda f: (f.name, f.version, f.advisory.id))


def _default_snapshot(pin: SnapshotPin) -> Path:
    return Path(os.environ.get(SNAPSHOT_ENV) or pin.archive_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshot", type=Path, help=f"archive or directory (default: ${SNAPSHOT_ENV}, "
                        "else the pin's archive path)")
    parser.add_argument("--lock", action="append", type=Path, help="a lock to audit (default: all three)")
    parser.add_argument("--allow-list", type=Path, default=ALLOW_LIST)
    parser.add_argument("--pin", type=Path, default=PIN_FILE, help="the snapshot pin (commit, date, digest)")
    parser.add_argument("--today", type=dt.date.fromisoformat, default=dt.datetime.now(dt.UTC).date(),
                        help="the date allow-list expiries are checked against (YYYY-MM-DD)")
    args = parser.parse_args(argv)

    pin = SnapshotPin.read(args.pin)
    path = args.snapshot or _default_snapshot(pin)
    try:
        if path.resolve() == pin.archive_path.resolve():
            check_archive(path, pin)
        snapshot = load_snapshot(path)
        verify(snapshot, pin)
    except SnapshotError as e:
        print(f"audit: cannot audit: {e}.", file=sys.stderr)
        print(f"audit: the pinned snapshot is {pin.source} at commit {pin.commit} ({pin.date:%Y-%m-%d}),"
              f" {pin.records} records, {pin.digest}; its archive is committed at {pin.archive}"
              f" (sha256 {pin.sha256}): restore it from git, or name another archive of the same commit"
              f" with --snapshot / ${SNAPSHOT_ENV}. See third_party/advisory-database/README.md.",
              file=sys.stderr)
        return 3 if isinstance(e, SnapshotMissing) else 2
    try:
        allowances = read_allow_list(args.allow_list)
    except (AllowListError, tomllib.TOMLDecodeError) as e:
        print(f"audit: {e}", file=sys.stderr)
        return 1

    locks = args.lock or [ROOT / name for name in LOCKS]
    pins = [p for lock in locks for p in read_lock(lock)]
    age = (dt.datetime.combine(args.today, dt.time(), dt.UTC) - pin.date).days
    print(f"Advisory snapshot: {pin.source} at {pin.commit[:12]}, dated {pin.date:%Y-%m-%d %H:%M}Z "
          f"({age} days old; newest record modified {snapshot.newest_modified or 'unknown'})")
    checked = "sha256, commit and digest" if Path(snapshot.source).resolve() == pin.archive_path.resolve() \
        else "digest"
    print(f"  read from {snapshot.source}: {len(snapshot.advisories)} records, {checked} verified"
          + (f", {snapshot.skipped} unparseable skipped" if snapshot.skipped else ""))
    print("  advisories published after that date are NOT checked.")
    distinct = {(p.name, p.version) for p in pins}
    names = ", ".join(lock.name for lock in locks)
    print(f"Audited {len(distinct)} distinct pins in {len(locks)} locks: {names}")

    findings = audit(pins, snapshot, allowances, args.today)
    for f in findings:
        status = ("ALLOWED until " + f.allowance.expires.isoformat() if f.allowance and not f.expired
                  else f"allow-list entry EXPIRED {f.allowance.expires}" if f.allowance else "VULNERABLE")
        aliases = f" ({', '.join(f.advisory.aliases)})" if f.advisory.aliases else ""
        fixed = ", ".join(f.fixed_in) or "no fixed release"
        print(f"  {status}: {f.advisory.id}{aliases} {f.name} {f.version} fixed in {fixed}"
              f" [{', '.join(sorted(set(f.locks)))}] {f.advisory.summary}")
    used = {(f.allowance.id, f.allowance.package, f.allowance.version) for f in findings if f.allowance}
    for a in allowances:
        if (a.id, a.package, a.version) not in used:
            print(f"  note: allow-list entry {a.id} for {a.package} {a.version} matches no finding:"
                  " remove it")
    blocking = [f for f in findings if f.blocking]
    if blocking:
        print(f"FAIL: {len(blocking)} known-vulnerable pin(s). Bump them (pyproject.toml, then `make lock`)"
              f" or, after review, allow-list them with a reason and an expiry in {args.allow_list.name}.")
        return 1
    print(f"OK: no known-vulnerable pin ({len(findings)} allow-listed finding(s)).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
