"""Receipts group-committed: the receipt route hands each verified receipt here and answers
only once the batch holding it is committed, so a 2xx still means durably recorded.

Why: a receipt in a transaction of its own costs a worker-thread hop, a nonce clean-up and a
commit each, and under a burst (thousands after a batch of SMS) they queued until the
providers gave up on them (issue 10, the chaos 20k run). Here one loop takes what arrived
within `receipt_batch_window_s` (up to `receipt_batch_max`) and applies it in one transaction;
before that database work it drops receipts whose caller has hung up (the provider tries
again with a fresh signature; answering nobody would only delay the rest), and a receipt that
has waited longer than `receipt_queue_max_s` — or arrives while the oldest one waiting has —
is answered 503 with Retry-After: the provider retries later instead of us working on
requests whose callers have given up. A batch that fails as a whole (a deadlock with another
replica, one bad receipt) is applied again one receipt per transaction, so one receipt cannot
fail the others.

At stop every receipt is answered: the queue 503, and a batch still in the database when the
loop is cancelled 503 too — its transaction (in a worker thread, which cancelling cannot stop)
then rolls back at its commit gate instead of committing after we said "not recorded", unless
it had already reached its commit, which is then awaited and answered as usual.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from services.common.tasks import SupervisedLoop, finish
from services.dispatch import metrics
from services.dispatch.delivery_state import ReceiptOutcome
from services.dispatch.providers.receipts import Receipt

log = logging.getLogger(__name__)

ApplyBatch = Callable[[Sequence[tuple[str, Receipt]], "CommitGate"],
                     Awaitable[list[ReceiptOutcome]]]


class ReceiptsBusy(Exception):
    """The receipt waited (or would wait) longer than the queue's bound: answer 503."""

    def __init__(self, retry_after_s: int):
        super().__init__("receipts are queued too long")
        self.retry_after_s = retry_after_s


class CallerGone(Exception):
    """The caller hung up before its receipt reached the database: nothing was recorded."""


class Abandoned(Exception):
    """The batch's receipts were answered 503 (stop) before its transaction committed: roll back."""


class CommitGate:
    """Between a batch's transaction and the loop answering it. The transaction calls `enter()`
    with its work flushed, just before COMMIT; the loop, stopped, calls `abandon()`. Whichever
    comes first decides: an abandoned transaction raises Abandoned (rolls back), and a batch
    already committing cannot be abandoned (its commit is awaited)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "open"  # open | committing | abandoned

    def enter(self) -> None:
        with self._lock:
            if self._state == "abandoned":
                raise Abandoned("the receipts were answered 503 before this commit")
            self._state = "committing"

    def abandon(self) -> bool:
        """True if the transaction will not commit; False if it is committing already."""
        with self._lock:
            if self._state == "committing":
                return False
            self._state = "abandoned"
            return True


@dataclass
class _Waiting:
    provider: str
    receipt: Receipt
    caller_gone: Callable[[], bool]
    arrived: float
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ReceiptBatches:
    def __init__(self, apply: ApplyBatch, *, service: str, window_s: float, max_batch: int,
                 max_wait_s: float, retry_after_s: int,
                 clock: Callable[[], float] = time.monotonic):
        self._apply = apply
        self._window_s, self._max_batch = window_s, max_batch
        self._max_wait_s, self._retry_after_s = max_wait_s, retry_after_s
        self._clock = clock
        self._queue: deque[_Waiting] = deque()
        self._ready = asyncio.Event()
        self._stopping = False
        self.loop = SupervisedLoop("dispatch-receipts", self._run, service=service,
                                   should_stop=lambda: self._stopping)

    def start(self) -> None:
        self.loop.start()

    async def stop(self, grace_s: float) -> None:
        """Apply what is queued (bounded by grace_s), then refuse the rest 503."""
        self._stopping = True
        self._ready.set()
        await finish(self.loop.task, grace_s)
        while self._queue:
            self._answer_busy(self._queue.popleft())

    async def record(self, provider: str, receipt: Receipt,
                     caller_gone: Callable[[], bool]) -> ReceiptOutcome:
        """The receipt's outcome once its batch is committed. Raises ReceiptsBusy (answer 503)
        or CallerGone (nothing to answer), or what applying it raised."""
        now = self._clock()
        if self._stopping or (self._queue and now - self._queue[0].arrived > self._max_wait_s):
            raise ReceiptsBusy(self._retry_after_s)
        waiting = _Waiting(provider, receipt, caller_gone, now)
        self._queue.append(waiting)
        metrics.RECEIPTS_QUEUED.set(len(self._queue))
        self._ready.set()
        # Shielded: a cancelled request leaves its receipt to be applied (the provider gets no
        # answer and retries; the retry finds it applied).
        return await asyncio.shield(waiting.answer)

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            if self._window_s and not self._stopping:
                await asyncio.sleep(self._window_s)  # let the receipts arriving now join
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            metrics.RECEIPTS_QUEUED.set(len(self._queue))
            if not self._queue:
                self._ready.clear()
            live = self._still_wanted(batch)
            try:
                if live:
                    with self.loop.working():
                        await self._apply_batch(live)
            finally:
                # Cancelled at stop mid-batch: what is still unanswered was not applied.
                for w in live:
                    if not w.answer.done():
                        self._answer_busy(w)
            if self._stopping and not self._queue:
                return

    def _still_wanted(self, batch: list[_Waiting]) -> list[_Waiting]:
        """Drops, before any database work, receipts waited on too long and those whose caller
        hung up."""
        now, live = self._clock(), []
        for w in batch:
            if now - w.arrived > self._max_wait_s:
                self._answer_busy(w)
            elif w.caller_gone():
                metrics.RECEIPTS.labels(provider=w.provider, outcome="caller-gone").inc()
                _settle(w, error=CallerGone())
            else:
                live.append(w)
        return live

    async def _apply_batch(self, batch: list[_Waiting]) -> None:
        gate = CommitGate()
        applying = asyncio.ensure_future(self._apply([(w.provider, w.receipt) for w in batch], gate))
        try:
            outcomes = await asyncio.shield(applying)
        except asyncio.CancelledError:
            if gate.abandon():  # it will roll back: the callers retry (503, in _run)
                applying.add_done_callback(lambda f: f.cancelled() or f.exception())
                raise
            # Committing already: its answer is the commit's (a short wait, no more work).
            try:
                outcomes = await applying
            except Exception:  # noqa: BLE001 - the commit failed: nothing recorded, 503
                raise asyncio.CancelledError from None
            for w, outcome in zip(batch, outcomes, strict=True):
                _settle(w, outcome=outcome)
            raise
        except Exception:  # noqa: BLE001 - each receipt on its own then
            if len(batch) == 1:
                log.exception("dispatch receipts: recording a receipt failed")
                _settle(batch[0], error=RuntimeError("recording the receipt failed"))
                return
            log.warning("dispatch receipts: a batch of %d failed; one per transaction", len(batch))
            for w in batch:
                await self._apply_batch([w])
            return
        metrics.RECEIPT_BATCH_SIZE.observe(len(batch))
        for w, outcome in zip(batch, outcomes, strict=True):
            _settle(w, outcome=outcome)

    def _answer_busy(self, w: _Waiting) -> None:
        metrics.RECEIPTS.labels(provider=w.provider, outcome="busy").inc()
        _settle(w, error=ReceiptsBusy(self._retry_after_s))


def _settle(w: _Waiting, *, outcome: ReceiptOutcome | None = None,
            error: BaseException | None = None) -> None:
    if w.answer.done():
        return
    if error is not None:
        w.answer.set_exception(error)
    else:
        w.answer.set_result(outcome)
