"""A Kafka broker and a PostgreSQL server of a test's own, for the scenarios that stop, kill or
restart them. The shared broker (9092) and server (55432) that every other test uses are
never touched: each private instance has its own ports and data directory, made fresh.

- `PrivateKafka` runs scripts/kafka.sh (the same script `make infra-up` uses) with
  PANUI_KAFKA_PORT, PANUI_KAFKA_CONTROLLER_PORT and PANUI_KAFKA_DIR of its own.
- `PrivatePostgres` runs initdb and pg_ctl from /usr/lib/postgresql/<version>/bin into a
  temporary directory (as the `postgres` user when run as root, as PostgreSQL requires).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import psycopg

from testkit.infra import REPO, free_port
from testkit.processes import clean_environ
from testkit.tls import TestCA


class PrivateKafka:
    """With `sasl_ssl`, the broker's only client listener is SASL_SSL (SCRAM-SHA-512/256): a CA
    and a broker certificate are made here (testkit/tls.py), and `users` (name -> password;
    "admin" is added, the broker's own login) are created when its storage is formatted."""

    def __init__(self, base_dir: Path, heap: str = "256m", *, sasl_ssl: bool = False,
                 users: Iterable[str] = ()):
        self.dir = base_dir / "kafka"
        self.port = free_port()
        self.controller_port = free_port()
        self.heap = heap
        self.events: list[tuple[float, str]] = []
        self.sasl_ssl = sasl_ssl
        self.users: dict[str, str] = {}
        self.ca: TestCA | None = None
        if sasl_ssl:
            self.users = {name: secrets.token_hex(16) for name in ("admin", *users)}
            self.ca = TestCA(self.dir / "tls")
            self.ca.issue("broker", server=True)  # tls/broker.keystore.pem, as kafka.sh wants

    def client_env(self, user: str = "admin", password: str | None = None,
                   mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """The PANUI_KAFKA_* settings a service logs in with as `user`."""
        assert self.ca is not None, "not a SASL_SSL broker"
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "PANUI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PANUI_KAFKA_SASL_MECHANISM": mechanism,
                "PANUI_KAFKA_SASL_USERNAME": user,
                "PANUI_KAFKA_SASL_PASSWORD": self.users[user] if password is None else password,
                "PANUI_KAFKA_SSL_CAFILE": str(self.ca.cert)}

    def client_settings(self, user: str = "admin", **kw: str) -> dict[str, str]:
        """client_env as ServiceSettings keyword arguments."""
        return {k.removeprefix("PANUI_").lower(): v for k, v in self.client_env(user, **kw).items()}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {**clean_environ(), "PANUI_KAFKA_PORT": str(self.port),
               "PANUI_KAFKA_CONTROLLER_PORT": str(self.controller_port),
               "PANUI_KAFKA_DIR": str(self.dir), "PANUI_KAFKA_HEAP": self.heap,
               "PANUI_PYTHON": str(REPO / ".venv/bin/python")}
        if self.sasl_ssl:
            env |= {"PANUI_KAFKA_TLS_DIR": str(self.dir / "tls"),
                    "PANUI_KAFKA_SCRAM_USERS": ",".join(f"{u}:{p}" for u, p in self.users.items())}
        return env

    def _script(self, command: str, timeout: float = 180) -> None:
        result = subprocess.run([str(REPO / "scripts/kafka.sh"), command], env=self._env(),
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"kafka.sh {command} failed: {result.stderr[-2000:]}")

    def start(self) -> None:
        self._script("up")
        self.events.append((time.time(), "kafka-up"))

    def stop(self) -> None:
        """A clean broker shutdown (SIGTERM, as kafka.sh down does)."""
        self._script("down")
        self.events.append((time.time(), "kafka-stopped"))

    def kill(self) -> None:
        """SIGKILL the broker: no controlled shutdown, as a crashed node."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        (self.dir / f"kafka-{self.port}.pid").unlink(missing_ok=True)
        self.events.append((time.time(), "kafka-killed"))

    def pid(self) -> int | None:
        pidfile = self.dir / f"kafka-{self.port}.pid"
        return int(pidfile.read_text()) if pidfile.exists() else None

    def close(self) -> None:
        try:
            if self.pid() is not None:
                self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise RuntimeError("PostgreSQL's server binaries are not installed (scripts/postgres.sh up "
                           "installs them)")
    return versions[-1].parent


class PrivatePostgres:
    """A throwaway PostgreSQL server: trust authentication on loopback only, fsync off (the
    scenarios kill processes, never the machine, so no committed data is lost)."""

    USER = "postgres"

    def __init__(self) -> None:
        # Its own temporary directory: the postgres user must be able to reach it, which a
        # test's tmp_path (under a root-only /tmp/pytest-of-root) is not.
        self.dir = Path(tempfile.mkdtemp(prefix="panui-private-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.bin = _pg_bin()
        self.events: list[tuple[float, str]] = []

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            argv = ("runuser", "-u", "postgres", "--", *argv)
        # cwd: a directory the postgres user may enter (the worktree may not be).
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                                cwd=self.dir)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[-1] if len(argv) < 6 else ' '.join(argv[:6])} failed: "
                               f"{result.stdout[-1000:]} {result.stderr[-2000:]}")
        return result

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._as_owner(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.USER,
                       "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        if not self.data.exists():
            self.init()
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB")
        self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
                       "-w", "-t", "60", "-o", options, "start")
        self.events.append((time.time(), "postgres-up"))

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: `fast` disconnects every client and shuts down cleanly; `immediate`
        aborts like a crash (recovery runs at the next start)."""
        self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        self.events.append((time.time(), f"postgres-stopped-{mode}"))

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, as a crashed server; crash recovery runs at
        the next start."""
        pid = self.pid()
        if pid is None:
            return
        for victim in [pid, *_children(pid)]:  # children first listed, before they are orphaned
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        self.events.append((time.time(), "postgres-killed"))

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def running(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def close(self) -> None:
        try:
            if self.pid() is not None:
                try:
                    self.stop("immediate")
                except RuntimeError:
                    self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    """The ids of `pid`'s child processes (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
