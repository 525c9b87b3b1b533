"""Receipts group-committed (services/dispatch/receipt_batches.py): receipts arriving together
are applied in one transaction and answered after it; a caller that hung up before its receipt
reached the database gets nothing recorded; a queue older than its bound is answered 503 with
Retry-After, without database work. Real PostgreSQL, Kafka, the local SMS gateway and the app
over real HTTP; the receipts are signed here, as the gateway signs them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import psycopg
import pytest

from services.dispatch.providers.receipts import SIGNATURE_HEADER, sign
from testkit.infra import free_port
from testkit.notices import incident_message, notice_message, person

from .stack import RECEIPT_SECRET, dispatch_settings, running_dispatch

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

URL = "/v1/receipts/sms-primary"


@pytest.fixture
def settings_for(service_env, pg_database, smtp_gw, sms_gw):
    def make(**overrides):
        port = free_port()
        return dispatch_settings(service_env, pg_database("dispatch"), port=port,
                                 smtp_port=smtp_gw.port, sms_url=sms_gw.url,
                                 quiet_hours_enabled=False, **overrides)
    return make


async def _sent_sms(stack, sms_gw, numbers: range) -> list:  # noqa: ANN001
    """SMS recorded `sent` for these people (the gateway's own receipts held back), as the
    gateway stored them (id, reference)."""
    sms_gw.behaviour.hold_receipts = True
    await stack.publish_incident(incident_message(mode="sms_else_email"))
    notices = [notice_message(stack.sealer, n, person(n, email=False)) for n in numbers]
    await stack.publish_notices(notices)
    await stack.wait_until(lambda: [d.status for d in stack.deliveries()] == ["sent"] * len(notices),
                           what="every SMS sent")
    return sorted(sms_gw.messages.values(), key=lambda m: m.reference)


def _signed(sms, status: str = "delivered") -> tuple[bytes, dict]:  # noqa: ANN001
    body = json.dumps({"id": sms.id, "reference": sms.reference, "status": status}).encode()
    return body, {SIGNATURE_HEADER: sign(body, RECEIPT_SECRET, "sms-primary"),
                  "content-type": "application/json"}


def _status(db_url: str, reference: str) -> str:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT status FROM delivery WHERE reference = %s",
                            (reference,)).fetchone()[0]


def _nonce_transactions(db_url: str) -> list[str]:
    """The inserting transaction (xmin) of each receipt nonce taken."""
    with psycopg.connect(db_url) as conn:
        return [x for (x,) in conn.execute("SELECT xmin::text FROM dispatch_receipt_nonce")]


def _nonces(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM dispatch_receipt_nonce").fetchone()[0]


def _waiting_on_a_lock(db_url: str) -> bool:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock'").fetchone()[0] > 0


@asynccontextmanager
async def _first_batch_held(stack, db_url: str, first) -> AsyncIterator[asyncio.Task]:  # noqa: ANN001
    """`first`'s receipt posted while its delivery row is locked from another connection (as a
    long transaction would hold it): yields once its batch waits in the database, with the
    request's task; the lock is released on leaving."""
    conn = psycopg.connect(db_url)
    try:
        conn.execute("SELECT 1 FROM delivery WHERE reference = %s FOR UPDATE", (first.reference,))
        body, headers = _signed(first)
        ahead = asyncio.create_task(stack.http.post(URL, content=body, headers=headers))
        await stack.wait_until(lambda: _waiting_on_a_lock(db_url), what="the first batch waiting")
        yield ahead
    finally:
        await asyncio.to_thread(conn.rollback)
        conn.close()


async def test_receipts_arriving_together_are_applied_in_one_transaction_answered_after_it(
    settings_for, sms_gw
):
    settings = settings_for(receipt_batch_window_s=2.0)  # wide: every receipt below joins it
    async with running_dispatch(settings) as stack:
        smses = await _sent_sms(stack, sms_gw, range(300, 320))
        answers = await asyncio.gather(*(stack.http.post(URL, content=body, headers=headers)
                                         for body, headers in map(_signed, smses)))
        # Read at once: a 2xx means the receipt is durably recorded.
        statuses = [_status(settings.database_url, s.reference) for s in smses]
        transactions = _nonce_transactions(settings.database_url)
    assert [a.status_code for a in answers] == [200] * 20
    assert {a.json()["outcome"] for a in answers} == {"updated"}
    assert statuses == ["delivered"] * 20
    assert len(transactions) == 20
    # One transaction for all of them (two if the box was so slow that the 20 requests did not
    # all arrive within the window); before group commit, 20.
    assert len(set(transactions)) <= 2


async def test_a_receipt_whose_caller_hung_up_before_the_database_work_is_not_recorded(
    settings_for, sms_gw
):
    settings = settings_for()
    db = settings.database_url
    async with running_dispatch(settings) as stack:
        first, second = await _sent_sms(stack, sms_gw, range(330, 332))
        async with _first_batch_held(stack, db, first) as ahead:
            gone_body, gone_headers = _signed(second)
            # Its caller gives up (as a provider's webhook timeout does) while it waits behind
            # the batch in the database.
            with pytest.raises(httpx.ReadTimeout):
                await stack.http.post(URL, content=gone_body, headers=gone_headers, timeout=1.0)
        assert (await ahead).json() == {"outcome": "updated"}
        gone = 'panui_dispatch_receipts_total{outcome="caller-gone",provider="sms-primary"} 1.0'
        await stack.wait_until(lambda: gone in httpx.get(f"{stack.http.base_url}/metrics").text,
                               what="the hung-up receipt dropped")
        skipped_status, nonces = _status(db, second.reference), _nonces(db)
        # Nothing of it was recorded, not even its nonce: the very same request, sent again
        # (a provider's retry), is applied rather than refused as a replay.
        again = await stack.http.post(URL, content=gone_body, headers=gone_headers)
    assert skipped_status == "sent" and nonces == 1
    assert again.status_code == 200 and again.json() == {"outcome": "updated"}


async def test_receipts_queued_longer_than_the_bound_are_answered_503_with_retry_after(
    settings_for, sms_gw
):
    settings = settings_for(receipt_queue_max_s=1.0, receipt_retry_after_s=7)
    db = settings.database_url
    async with running_dispatch(settings) as stack:
        first, queued, late = await _sent_sms(stack, sms_gw, range(340, 343))
        async with _first_batch_held(stack, db, first) as ahead:
            body, headers = _signed(queued)
            waiting = asyncio.create_task(stack.http.post(URL, content=body, headers=headers))
            await asyncio.sleep(1.5)  # past the bound: `queued` has waited longer than 1 s
            body, headers = _signed(late)
            refused = await stack.http.post(URL, content=body, headers=headers)
        first_answer, queued_answer = await ahead, await waiting
        statuses = {s.reference: _status(db, s.reference) for s in (first, queued, late)}
        nonces = _nonces(db)
        # The provider retries later (a fresh signature): applied then.
        retried = [await stack.http.post(URL, content=b, headers=h)
                   for b, h in (_signed(queued), _signed(late))]
    assert first_answer.json() == {"outcome": "updated"}
    for answer in (refused, queued_answer):  # arriving behind an old queue / waited too long
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "receipt.busy"
        assert answer.headers["retry-after"] == "7"
    # Neither refused one was worked on: no status change, no nonce taken.
    assert statuses == {first.reference: "delivered", queued.reference: "sent", late.reference: "sent"}
    assert nonces == 1
    assert [r.json() for r in retried] == [{"outcome": "updated"}] * 2


def _lock_waiter(db_url: str) -> tuple[int, str]:
    """The backend waiting on a row lock, and when its transaction started."""
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT pid, xact_start::text FROM pg_stat_activity WHERE datname ="
                            " current_database() AND wait_event_type = 'Lock' AND query LIKE '%delivery%'").fetchone()


def _transaction_over(db_url: str, pid: int, started: str) -> bool:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT xact_start::text FROM pg_stat_activity WHERE pid = %s",
                           (pid,)).fetchone()
    return row is None or row[0] != started


@pytest.mark.timeout(240)  # before the fix the unanswered request held the server's stop
async def test_receipts_in_hand_and_queued_when_the_receipts_loop_stops_are_answered_503_unapplied(
    settings_for, sms_gw
):
    settings = settings_for(receipt_retry_after_s=7)
    db = settings.database_url
    async with running_dispatch(settings) as stack:
        receipts = stack.app.state.runtime.receipts
        in_hand, queued = await _sent_sms(stack, sms_gw, range(350, 352))
        async with _first_batch_held(stack, db, in_hand) as ahead:
            body, headers = _signed(queued)
            behind = asyncio.create_task(stack.http.post(URL, content=body, headers=headers))
            await stack.wait_until(lambda: 'panui_dispatch_receipts_queued 1.0' in httpx.get(
                f"{stack.http.base_url}/metrics").text, what="the second receipt queued")
            # Dispatch stops while the batch in hand waits in the database past the grace.
            waiter = _lock_waiter(db)
            await receipts.stop(grace_s=0.5)
            done, _ = await asyncio.wait([ahead, behind], timeout=15)
            answered = [t in done for t in (ahead, behind)]
            assert answered == [True, True], "every receipt is answered at stop"
        # The row lock is gone: the abandoned transaction goes on and must not commit now.
        await stack.wait_until(lambda: _transaction_over(db, *waiter), what="its transaction over")
        statuses = [_status(db, s.reference) for s in (in_hand, queued)]
        nonces = _nonces(db)
    for answer in (ahead.result(), behind.result()):
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "receipt.busy"
        assert answer.headers["retry-after"] == "7"
    # Answered 503, so nothing of either was applied: the provider's retry is the one applied.
    assert statuses == ["sent", "sent"] and nonces == 0
