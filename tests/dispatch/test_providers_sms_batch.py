"""The SMS gateways' bulk API (POST /v1/messages/batch) and the clients that use it: every
message of a batch is answered, classified and failed over exactly as if it had been sent
alone — the batch shares a request, never an outcome."""

import asyncio
import random
from dataclasses import replace

import httpx
import pytest

from services.dispatch.delivery_state import DeliveryStatus as S
from services.dispatch.delivery_state import reference_for
from services.dispatch.providers.base import SmsMessage
from services.dispatch.providers.failover import FailoverSmsProvider
from services.dispatch.providers.sms_http import BoundedHttpSmsProvider, HttpSmsProvider
from services.gateways.sms_server import SmsGateway
from testkit.infra import free_port


def _sms(n, body="Example Health: notice emailed. Ref PAN-TEST", to=None):
    return SmsMessage(reference_for(f"NOTICE-{n:04d}", "sms"), to or f"+642100000{n:02d}", body)


def _key(r):
    return (r.status, r.ambiguous, r.detail, r.retry_after)


async def _faulty(gw: SmsGateway) -> list[SmsMessage]:
    """Five messages and the gateway faults that give each its own answer."""
    gw.by_reference.clear()
    gw.messages.clear()
    await HttpSmsProvider(gw.url).send(_sms(3, body="an older body PAN-TEST"))
    return [_sms(1), _sms(2, to="021 not e164"), _sms(3), _sms(4), _sms(5)]


async def test_each_message_of_a_batch_gets_the_answer_it_would_get_alone():
    async with SmsGateway() as alone_gw, SmsGateway() as batch_gw:
        alone, batch = HttpSmsProvider(alone_gw.url), HttpSmsProvider(batch_gw.url)
        answers = {}
        for gw, provider, label in ((alone_gw, alone, "alone"), (batch_gw, batch, "batch")):
            messages = await _faulty(gw)
            gw.rate_limit_next(1, retry_after=7)  # message 1: 429
            if label == "alone":
                answers[label] = [await provider.send(messages[0]),
                                  await provider.send(messages[1])]
                gw.fail_after_store_next(1, 502)  # message 3: 409 comes first, then 4: 502
                answers[label] += [await provider.send(m) for m in messages[2:]]
            else:
                gw.fail_after_store_next(1, 502)
                answers[label] = await provider.send_batch(messages)
        assert [_key(r) for r in answers["batch"]] == [_key(r) for r in answers["alone"]]
        kinds = [(r.status, r.ambiguous) for r in answers["batch"]]
        assert kinds == [(S.TEMPORARY_FAILURE, False),  # 429, Retry-After kept
                         (S.PERMANENT_FAILURE, False),  # 422: never accepted anywhere
                         (S.TECHNICAL_FAILURE, True),   # 409: held there under another body
                         (S.TECHNICAL_FAILURE, True),   # 502 after taking it
                         (S.SENT, False)]
        assert answers["batch"][0].retry_after == 7
        assert set(batch_gw.by_reference) == set(alone_gw.by_reference)
        await alone.close()
        await batch.close()


async def test_a_batch_retried_after_a_timeout_or_a_reset_sends_each_sms_once():
    async with SmsGateway() as gw:
        p = HttpSmsProvider(gw.url, timeout=0.2)
        messages = [_sms(n) for n in range(1, 6)]
        gw.slow_down(0.5)  # takes them all, answers too late
        assert all(r.ambiguous and r.detail == "timeout" for r in await p.send_batch(messages))
        gw.slow_down(0)
        gw.reset_after_store_next(1)  # takes them, then drops the connection unanswered
        lost = await p.send_batch(messages)
        assert all(r.ambiguous and r.detail == "connection-lost" for r in lost)
        again = await p.send_batch(messages)
        assert [r.status for r in again] == [S.SENT] * 5
        assert len(gw.messages) == 5 and gw.send_attempts == 15
        assert {r.provider_reference for r in again} == set(gw.messages)
        await p.close()


async def test_an_answer_for_the_whole_request_is_every_messages_answer():
    refused = HttpSmsProvider(f"http://127.0.0.1:{free_port()}")
    assert {_key(r) for r in await refused.send_batch([_sms(1), _sms(2)])} == {
        (S.TECHNICAL_FAILURE, False, "connect-error", None)}
    async with SmsGateway(api_key="right") as gw:
        wrong = HttpSmsProvider(gw.url, api_key="wrong")
        assert {(r.status, r.ambiguous) for r in await wrong.send_batch([_sms(1), _sms(2)])} == {
            (S.TECHNICAL_FAILURE, False)}  # 401: our credentials, nothing taken
        assert gw.messages == {}
        await wrong.close()
    await refused.close()


async def test_the_bounded_client_carries_a_batch_on_one_connection():
    async with SmsGateway() as gw:
        client = httpx.AsyncClient(base_url=gw.url)
        p = BoundedHttpSmsProvider(gw.url, name="a", client=client, connections=1)
        results = await p.send_batch([_sms(n) for n in range(1, 21)])
        assert [r.status for r in results] == [S.SENT] * 20 and len(gw.messages) == 20
        await p.close()


async def test_a_batch_fails_over_message_by_message_as_single_sends_do():
    async with SmsGateway() as a, SmsGateway() as b:
        fo = FailoverSmsProvider(
            [(HttpSmsProvider(a.url, name="a"), 100), (HttpSmsProvider(b.url, name="b"), 0)],
            rng=random.Random(0),
        )
        moves: dict[str, list[str]] = {}

        def repin_for(m):
            async def repin(gateway):
                moves.setdefault(m.reference, []).append(gateway)
                return True
            return repin

        messages = [replace(_sms(n), gateway="a") for n in range(1, 6)]
        messages[4] = replace(messages[4], pinned=True)  # a may hold it already
        a.fail_next(2, 503)  # the first two: refused before a took them (certainly not sent)
        a.fail_after_store_next(1, 502)  # the third: taken, then an intermediary's 502
        results = await fo.send_batch(messages, [repin_for(m) for m in messages])
        assert [(r.status, r.provider, r.ambiguous) for r in results] == [
            (S.SENT, "b", False), (S.SENT, "b", False),  # moved, each move recorded first
            (S.TECHNICAL_FAILURE, "a", True),  # ambiguous: never failed over
            (S.SENT, "a", False), (S.SENT, "a", False)]
        assert moves == {messages[0].reference: ["b"], messages[1].reference: ["b"]}
        assert set(b.by_reference) == {messages[0].reference, messages[1].reference}
        assert set(a.by_reference) == {m.reference for m in messages[2:]}
        await fo.close()


async def test_a_batch_to_a_gateway_that_is_down_keeps_pinned_messages_there():
    async with SmsGateway() as b:
        down = HttpSmsProvider(f"http://127.0.0.1:{free_port()}", name="a")
        fo = FailoverSmsProvider([(down, 1), (HttpSmsProvider(b.url, name="b"), 0)])
        moves: list[str] = []

        async def repin(gateway):
            moves.append(gateway)
            return True

        async def cannot(gateway):
            return False

        messages = [replace(_sms(1), gateway="a", pinned=True), replace(_sms(2), gateway="a"),
                    replace(_sms(3), gateway="a")]
        results = await fo.send_batch(messages, [repin, repin, cannot])
        assert [(r.status, r.provider) for r in results] == [
            (S.TECHNICAL_FAILURE, "a"),  # pinned: only a may send it
            (S.SENT, "b"),  # moved, recorded first
            (S.TECHNICAL_FAILURE, "a")]  # the move could not be recorded: not made
        assert moves == ["b"] and set(b.by_reference) == {messages[1].reference}
        # a is marked down now: a batch whose pin is a goes one by one, moves recorded first.
        later = await fo.send_batch([replace(_sms(4), gateway="a")], [repin])
        assert (later[0].status, later[0].provider, moves) == (S.SENT, "b", ["b", "b"])
        await fo.close()


async def test_a_batch_refused_by_the_primary_fails_over_all_at_once_not_one_by_one():
    """A whole batch refused (say, its connection wait timed out) moves at once: one after
    another, 50 moves and sends under load outran the batch's send deadline, whose cut then
    comes after some have moved. Each move here waits until every message's move has been
    asked for: one by one, the first would wait for ever (the guard below fails it)."""
    async with SmsGateway() as a, SmsGateway() as b:
        fo = FailoverSmsProvider(
            [(HttpSmsProvider(a.url, name="a"), 100), (HttpSmsProvider(b.url, name="b"), 0)],
            rng=random.Random(0))
        messages = [replace(_sms(n), gateway="a") for n in range(1, 6)]
        asked: list[str] = []
        everyone = asyncio.Event()

        def repin_for(m):
            async def repin(gateway):
                asked.append(m.reference)
                if len(asked) == len(messages):
                    everyone.set()
                await asyncio.wait_for(everyone.wait(), 30)  # guard: TimeoutError, not a hang
                return True
            return repin

        a.fail_next(5, 503)  # refused before a took any: certainly not sent
        results = await fo.send_batch(messages, [repin_for(m) for m in messages])
        assert [(r.status, r.provider) for r in results] == [(S.SENT, "b")] * 5
        assert sorted(asked) == sorted(m.reference for m in messages)
        assert set(b.by_reference) == {m.reference for m in messages} and a.messages == {}
        await fo.close()


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_batch_failed_as_a_whole_midway_is_maybe_taken_for_every_message(status):
    """The primary takes the first two messages of a batch, then fails the whole request. No
    message may move to the secondary: any of them may be at the primary, which alone can
    dedupe on the reference. Retried there (pinned), each is sent once across both gateways.
    (A whole-request 500/503 used to mean "certainly not taken": all five moved, and the two
    the primary had taken were texted twice.)"""
    async with SmsGateway() as a, SmsGateway() as b:
        fo = FailoverSmsProvider(
            [(HttpSmsProvider(a.url, name="a"), 100), (HttpSmsProvider(b.url, name="b"), 0)],
            rng=random.Random(0))
        moves: list[str] = []

        async def repin(gateway):
            moves.append(gateway)
            return True

        messages = [replace(_sms(n), gateway="a") for n in range(1, 6)]
        a.fail_batch_next(1, after_taking=2, status=status)
        first = await fo.send_batch(messages, [repin] * 5)
        assert [(r.status, r.provider, r.ambiguous) for r in first] == [
            (S.TECHNICAL_FAILURE, "a", True)] * 5
        assert moves == [] and b.messages == {} and len(a.messages) == 2
        assert fo.healthy("a")  # maybe taken is not "refused": no failover mark either
        # What the sender does with an ambiguous answer: the next try is pinned there.
        again = await fo.send_batch([replace(m, pinned=True) for m in messages], [repin] * 5)
        assert [(r.status, r.provider) for r in again] == [(S.SENT, "a")] * 5
        assert len(a.messages) == 5 and b.messages == {} and moves == []
        await fo.close()


async def test_only_a_whole_request_answer_that_proves_nothing_was_taken_fails_over():
    """A 4xx the bulk API defines as refusing the request before it looks at any message (a
    wrong key here) moves the batch; a 5xx for the whole request never does."""
    answers = HttpSmsProvider.BATCH_ANSWERS
    assert not any(answers[code].ambiguous for code in (400, 401, 403, 413, 422, 429))
    assert all(answers[code].ambiguous for code in (409, 500, 502, 503, 504, "other-5xx",
                                                    "other-4xx", "timeout", "connection-lost"))
    assert not answers["connect-error"].ambiguous and answers["pool-timeout"].unsent
    async with SmsGateway(api_key="right") as a, SmsGateway() as b:
        fo = FailoverSmsProvider(
            [(HttpSmsProvider(a.url, api_key="wrong", name="a"), 100),
             (HttpSmsProvider(b.url, name="b"), 0)], rng=random.Random(0))

        async def repin(gateway):
            return True

        results = await fo.send_batch([replace(_sms(n), gateway="a") for n in (1, 2)],
                                      [repin, repin])
        assert [(r.status, r.provider) for r in results] == [(S.SENT, "b")] * 2
        assert a.messages == {} and not fo.healthy("a")
        await fo.close()


async def test_our_own_connection_wait_timing_out_is_neither_a_refusal_nor_maybe_taken():
    """The one connection to the primary is busy (a slow answer); the next batch's wait for it
    times out. Nothing left us: the gateway is not marked unhealthy, nothing moves to the
    secondary, and the answer is not "maybe taken" (it would pin the messages there). It used
    to be "connect-error": the primary marked down and the batch moved."""
    async with SmsGateway() as a, SmsGateway() as b:
        bounded = BoundedHttpSmsProvider(a.url, name="a", client=httpx.AsyncClient(base_url=a.url),
                                         connections=1, pool_timeout=0.2)
        fo = FailoverSmsProvider([(bounded, 100), (HttpSmsProvider(b.url, name="b"), 0)],
                                 rng=random.Random(0))
        moves: list[str] = []

        async def repin(gateway):
            moves.append(gateway)
            return True

        a.slow_down(2.0)
        busy = asyncio.create_task(fo.send_batch([replace(_sms(1), gateway="a")], [repin]))
        while not a.messages:  # the slow request holds the connection
            await asyncio.sleep(0.01)
        waited = await fo.send_batch([replace(_sms(n), gateway="a") for n in (2, 3)],
                                     [repin, repin])
        single = await fo.send(replace(_sms(4), gateway="a"), repin)
        for r in (*waited, single):
            assert (r.status, r.provider, r.detail) == (S.TECHNICAL_FAILURE, "a", "pool-timeout")
            assert r.unsent and not r.ambiguous
        assert fo.healthy("a") and fo.choose() == "a"
        assert moves == [] and b.messages == {}
        a.slow_down(0)
        assert [r.status for r in await busy] == [S.SENT]
        await fo.close()
