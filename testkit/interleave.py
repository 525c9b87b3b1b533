"""Forcing an interleaving of two transactions on real PostgreSQL, without sleeps: hold one
open at a chosen point (`Pause`), start the other, and wait until it is either finished or
waiting on a lock in the same database (`blocked_or_done`)."""

import threading
import time

from sqlalchemy import text
from sqlalchemy.engine import Engine

# A session of this database waiting on a heavyweight lock (a row, a transaction, an advisory
# lock): pg_locks' own database column is empty for transaction ids, pg_stat_activity's is not.
WAITING = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
               "AND datname = current_database()")


class Pause:
    """Wraps a function so the first call, once it has run, waits until `go()`: the
    transaction calling it stays open meanwhile."""

    def __init__(self, fn):  # noqa: ANN001
        self.fn = fn
        self.reached = threading.Event()
        self._go = threading.Event()
        self._used = False

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        result = self.fn(*args, **kwargs)
        if not self._used:
            self._used = True
            self.reached.set()
            assert self._go.wait(60), "never released"
        return result

    def go(self) -> None:
        self._go.set()


def blocked_or_done(engine: Engine, thread: threading.Thread, timeout: float = 60) -> bool:
    """True once `thread` waits on a lock in `engine`'s database; False if it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            return False
        with engine.connect() as conn:
            if conn.execute(WAITING).scalar():
                return True
        thread.join(0.05)  # poll the condition; nothing is asserted on time
    raise AssertionError(f"neither blocked nor finished in {timeout} s")


class Run(threading.Thread):
    """A thread keeping its function's result or exception."""

    def __init__(self, fn, *args):  # noqa: ANN001, ANN002
        super().__init__(daemon=True)
        self.fn, self.args, self.result, self.error = fn, args, None, None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def outcome(self, timeout: float = 60):  # noqa: ANN201
        self.join(timeout)
        assert not self.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.result
