"""The processes of one run — the local gateways and the three services, each its own process
(`python -m …`, as an operator starts them) — started with their environment, watched for
memory and CPU, and stopped again, all of them, whatever happens.

Each process gets its own session (a Ctrl-C at the terminal reaches only the runner, which then
stops them in order) and is told by the kernel to terminate if the runner itself dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.support import process_children, process_tree

_PR_SET_PDEATHSIG = 1
_TICKS = os.sysconf("SC_CLK_TCK")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    health_url: str | None
    stop_signal: int = signal.SIGTERM
    # Per pid of the process tree (uvicorn workers are children): last CPU seconds seen, peak RSS.
    cpu_s: dict[int, float] = field(default_factory=dict)
    peak_kb: dict[int, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def usage(self) -> dict:
        """CPU seconds of the whole tree, and its peak RSS: the sum of each process's own peak
        (VmHWM), exact for one process, an upper bound for several."""
        return {"cpu_s": round(sum(self.cpu_s.values()), 1),
                "peak_rss_mb": round(sum(self.peak_kb.values()) / 1024, 1),
                "processes": len(self.peak_kb)}


class ProcessExited(RuntimeError):
    pass


class Stack:
    def __init__(self, log_dir: Path, base_env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.base_env = {**os.environ, **(base_env or {})}
        self.processes: list[Process] = []
        self._sampler: threading.Thread | None = None
        self._stop_sampling = threading.Event()
        self._lock = threading.Lock()

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              health_url: str | None = None, stop_signal: int = signal.SIGTERM) -> Process:
        """Start argv (see `module`) with the stack's environment plus `env`; its output goes to
        <log_dir>/<name>.log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**self.base_env, **(env or {})}, start_new_session=True,
                preexec_fn=_die_with_parent)  # noqa: PLW1509 - only sets the death signal
        process = Process(name, popen, log, health_url, stop_signal)
        self.processes.append(process)
        return process

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for process in self.processes:
            while process.health_url:
                self.check()
                try:
                    if httpx.get(process.health_url, timeout=2).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ProcessExited(f"{process.name} did not answer {process.health_url} "
                                        f"within {timeout:.0f} s; see {process.log}")
                time.sleep(0.2)

    def check(self) -> None:
        """Raise if any process has exited (a service must not die during a run)."""
        for process in self.processes:
            if process.popen.poll() is not None:
                tail = process.log.read_text(errors="replace")[-2000:]
                raise ProcessExited(f"{process.name} exited with {process.popen.returncode}; "
                                    f"last lines of {process.log}:\n{tail}")

    # --- resources ------------------------------------------------------------------------------

    def sample(self) -> None:
        children = process_children()
        with self._lock:
            for process in self.processes:
                for pid in process_tree(process.pid, children):
                    stat = _cpu_and_peak(pid)
                    if stat:
                        process.cpu_s[pid], peak = stat
                        process.peak_kb[pid] = max(process.peak_kb.get(pid, 0), peak)

    def sample_every(self, seconds: float) -> None:
        def loop() -> None:
            while not self._stop_sampling.wait(seconds):
                self.sample()

        self._sampler = threading.Thread(target=loop, name="stack-sampler", daemon=True)
        self._sampler.start()

    def usage(self) -> dict[str, dict]:
        self.sample()
        with self._lock:
            return {p.name: p.usage() for p in self.processes}

    # --- stopping -------------------------------------------------------------------------------

    def stop(self, grace_s: float = 30) -> None:
        """Each in reverse start order (profilers, then services, then gateways): its stop
        signal, then SIGKILL to its whole process group if it is still there after grace_s."""
        self._stop_sampling.set()
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                _signal_group(process.pid, process.stop_signal)
            try:
                process.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.popen.wait(10)
        self.processes.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def module(name: str, *args: str) -> list[str]:
    """The command line of `python -m name args…` with this interpreter."""
    return [sys.executable, "-m", name, *args]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the process leads its own session: its group is its tree
    except ProcessLookupError:
        pass


def _cpu_and_peak(pid: int) -> tuple[float, int] | None:
    """(user + system CPU seconds, VmHWM in kB) of one live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    peak = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    return (int(fields[11]) + int(fields[12])) / _TICKS, peak
