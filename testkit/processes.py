"""Processes of the real system, run as production runs them: each service is its own
`python -m services.<name>` with its own environment, each local gateway its own
`python -m services.gateways.<gateway>`; any of them can be killed (SIGKILL), stopped
(SIGTERM, with the time it took measured), and restarted with the same settings and port.

Output goes to one log file per process (appended across restarts), which tests read to check
what a failure looks like to ops — and that no personal value was logged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from testkit.infra import REPO

# Settings that must never leak from the test runner's environment into a process under test.
_INHERITED_PREFIXES = ("PANUI_", "KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")


def clean_environ() -> dict[str, str]:
    """The runner's environment without any Pānui setting (each process gets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}


@dataclass
class ManagedProcess:
    """One OS process: started from `argv` with `env`, output to `log_path`."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    starts: int = 0
    exits: list[tuple[str, float | None, int | None]] = field(default_factory=list)  # (how, seconds, rc)

    def start(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"\n----- start #{self.starts + 1} of {self.name} at {time.time():.3f}\n".encode())
        log.flush()
        try:
            self.process = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, whatever was in flight is abandoned."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
            rc = self.process.wait(30)
            self.exits.append(("SIGKILL", None, rc))

    def terminate(self, grace_s: float = 45.0) -> float:
        """SIGTERM, as Kubernetes stops a pod; SIGKILL after `grace_s` (its
        terminationGracePeriodSeconds). Returns the seconds it took to exit by itself
        (inf when it had to be killed)."""
        if not self.alive:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            rc = self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            rc = self.process.wait(30)
            self.exits.append(("SIGTERM-then-SIGKILL", None, rc))
            return float("inf")
        took = time.monotonic() - started
        self.exits.append(("SIGTERM", took, rc))
        return took

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class HttpProcess(ManagedProcess):
    """A process serving HTTP on `port`; `health_path` answers 200 once it is up."""

    port: int = 0
    health_path: str = "/healthz"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise AssertionError(f"{self.name} exited (rc={self.process.returncode}); "
                                         f"log tail:\n{self.log_text()[-3000:]}")
                try:
                    if (await client.get(self.url + self.health_path)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not come up in {timeout}s; log tail:\n"
                             f"{self.log_text()[-3000:]}")


@dataclass
class ServiceProcess(HttpProcess):
    """intake, dedupe or dispatch: `python -m services.<service>` with PANUI_PORT = port."""

    service: str = ""

    async def readiness(self) -> tuple[int, dict]:
        """(HTTP status of /readyz, its body); (0, {}) when it does not answer."""
        async with httpx.AsyncClient(timeout=10.0) as client:
            try:
                r = await client.get(self.url + "/readyz")
                return r.status_code, r.json()
            except (httpx.TransportError, ValueError):
                return 0, {}

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of a Prometheus metric's samples matching `labels` (0 when absent)."""
        async with httpx.AsyncClient(timeout=10.0) as client:
            text = (await client.get(self.url + "/metrics")).text
        return sum_metric(text, name, labels)


def sum_metric(text: str, name: str, labels: dict[str, str]) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


def service_process(service: str, port: int, env: dict[str, str], log_dir: Path,
                    name: str | None = None) -> ServiceProcess:
    name = name or service
    return ServiceProcess(name=name, argv=[sys.executable, "-m", f"services.{service}"],
                          env={**env, "PANUI_PORT": str(port)}, log_path=log_dir / f"{name}.log",
                          port=port, service=service)


def smtp_gateway_process(port: int, control_port: int, maildir: Path, webhook_url: str,
                         secret: str, log_dir: Path, name: str = "smtp-gateway") -> HttpProcess:
    """The local SMTP gateway; what it accepts lands in `maildir` (its own log, which survives
    the gateway's restarts); the HTTP control API is on `control_port`."""
    argv = [sys.executable, "-m", "services.gateways.smtp_server", "--port", str(port),
            "--control-port", str(control_port), "--maildir", str(maildir),
            "--bounce-webhook-url", webhook_url, "--webhook-secret", secret]
    return HttpProcess(name=name, argv=argv, env=clean_environ(), log_path=log_dir / f"{name}.log",
                       port=control_port, health_path="/_control/stats")


def sms_gateway_process(port: int, secret: str, log_dir: Path, name: str = "sms-gateway") -> HttpProcess:
    """The local SMS gateway; `GET /v1/messages` is its message log (in memory: it does not
    survive the gateway's own restart, so scenarios never restart it)."""
    argv = [sys.executable, "-m", "services.gateways.sms_server", "--port", str(port),
            "--callback-secret", secret]
    return HttpProcess(name=name, argv=argv, env=clean_environ(), log_path=log_dir / f"{name}.log",
                       port=port, health_path="/_control/stats")
