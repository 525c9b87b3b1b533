"""Background loops that stop cleanly, restart when they crash, and say when they cannot.

Every long-running loop of a service (consumers, the incidents follower, the outbox relay,
dispatch's sender) runs under a `SupervisedLoop`: an exception restarts it after a backoff
(counted in `panui_worker_restarts_total`); too many restarts in a short window and it gives
up — `dead` — and the service's liveness probe fails, so the orchestrator restarts the process.
A loop marks each unit of real work with `working()`; one that stays in a unit for longer than
`wedged_after_s` is `wedged` (liveness fails too). Waiting for work is not a unit of work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from services.common import metrics

log = logging.getLogger(__name__)


async def finish(task: asyncio.Task | None, grace_s: float = 0.0) -> None:
    """Let a task that was asked to stop finish its current unit of work for up to grace_s,
    then cancel it; return once it is done either way (at once if it was: stopping twice)."""
    if task is None:
        return
    if grace_s > 0 and not task.done():
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace_s)
        except TimeoutError:
            task.cancel()
    else:
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def is_running(task: asyncio.Task | None) -> bool:
    return task is not None and not task.done()


@dataclass(frozen=True)
class RestartPolicy:
    """Restart after base_s, doubling up to cap_s; give up after `give_up_after` restarts within
    `window_s` (restarts after a transient error — the broker or database away — never count:
    restarting the process would not bring them back)."""

    base_s: float = 1.0
    cap_s: float = 30.0
    give_up_after: int = 5
    window_s: float = 300.0
    wedged_after_s: float = 600.0


@dataclass(frozen=True)
class LoopHealth:
    name: str
    state: str  # running | restarting | dead | wedged | stopped | not-started
    restarts: int
    busy_for_s: float | None  # how long the unit of work in hand has taken, if any
    last_error: str | None  # the exception type of the last crash, never its text

    @property
    def alive(self) -> bool:
        return self.state not in ("dead", "wedged")

    def as_dict(self) -> dict:
        out: dict = {"state": self.state, "restarts": self.restarts}
        if self.busy_for_s is not None:
            out["busy_for_s"] = round(self.busy_for_s, 1)
        if self.last_error:
            out["last_error"] = self.last_error
        return out


class SupervisedLoop:
    """Runs `body()` in a task and restarts it when it raises (or returns while no stop was
    asked for). `should_stop()` is the owner's stop flag: once it is true, an ending body is a
    clean stop. The owner stops the loop its own way (sets its flag, then `finish(loop.task)`)."""

    def __init__(self, name: str, body: Callable[[], Awaitable[None]], *, service: str,
                 should_stop: Callable[[], bool], policy: RestartPolicy | None = None,
                 transient: Callable[[BaseException], bool] = lambda _exc: False,
                 clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.service = service
        self._body = body
        self._should_stop = should_stop
        self.policy = policy or RestartPolicy()
        self._transient = transient
        self._clock = clock
        self.task: asyncio.Task | None = None
        self.restarts = 0
        self.last_error: str | None = None
        self._counted: deque[float] = deque()  # times of restarts that count towards giving up
        self._state = "not-started"
        self._busy_since: float | None = None

    def start(self) -> None:
        self._state = "running"
        self.task = asyncio.create_task(self._supervise(), name=self.name)

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Marks one unit of real work (a batch, a publish, a claim); see `wedged_after_s`."""
        self._busy_since = self._clock()
        try:
            yield
        finally:
            self._busy_since = None

    @property
    def running(self) -> bool:
        return is_running(self.task)

    def health(self) -> LoopHealth:
        busy = None if self._busy_since is None else self._clock() - self._busy_since
        state = self._state
        if state == "running" and busy is not None and busy > self.policy.wedged_after_s:
            state = "wedged"
        elif state in ("running", "restarting") and not self.running:
            state = "dead"  # the task ended without going through _supervise's exits
        return LoopHealth(self.name, state, self.restarts, busy, self.last_error)

    async def _supervise(self) -> None:
        delay = self.policy.base_s
        while True:
            started = self._clock()
            try:
                await self._body()
                if self._should_stop():
                    self._state = "stopped"
                    return
                error = "returned"  # a loop ends only when asked to: treat as a crash
                transient = False
            except asyncio.CancelledError:
                self._state = "stopped"
                raise
            except Exception as exc:  # noqa: BLE001 - the supervisor is the last line
                if self._should_stop():
                    self._state = "stopped"
                    return
                error, transient = type(exc).__name__, self._transient(exc)
                # The traceback helps; the formatter keeps validation inputs out of it.
                log.error("%s crashed (%s); restarting in %.1fs", self.name, error, delay,
                          exc_info=True, extra={"service": self.service})
            self._busy_since = None
            if self._clock() - started > self.policy.cap_s:
                delay = self.policy.base_s  # it ran well for a while: start the backoff afresh
            self.restarts += 1
            self.last_error = error
            metrics.WORKER_RESTARTS.labels(service=self.service, worker=self.name).inc()
            if not transient and self._give_up():
                self._state = "dead"
                log.critical("%s gave up after %d restarts in %.0fs: the service is not alive",
                             self.name, len(self._counted), self.policy.window_s,
                             extra={"service": self.service})
                return
            self._state = "restarting"
            for _ in range(max(1, round(delay / 0.1))):  # in slices: a stop ends the wait
                if self._should_stop():
                    break
                await asyncio.sleep(min(0.1, delay))
            if self._should_stop():
                self._state = "stopped"
                return
            delay = min(delay * 2, self.policy.cap_s)
            self._state = "running"

    def _give_up(self) -> bool:
        now = self._clock()
        self._counted.append(now)
        while self._counted and now - self._counted[0] > self.policy.window_s:
            self._counted.popleft()
        return len(self._counted) > self.policy.give_up_after
