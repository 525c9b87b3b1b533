"""The local gateways themselves: control APIs, storage, CLI start-up (all over loopback)."""

import asyncio
import json
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from services.gateways.sms_server import SmsGateway
from services.gateways.smtp_server import SmtpGateway
from testkit.infra import free_port as _free_port

ROOT = Path(__file__).resolve().parents[2]




def _mail(to="person1@example.nz"):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "notices@example.nz", to, "Test"
    m.set_content("hello")
    return m


async def test_smtp_http_control_api_and_maildir(tmp_path):
    async with SmtpGateway(maildir=tmp_path / "mail", control_port=0) as gw:
        ctl = f"http://127.0.0.1:{gw.control_port}"
        async with httpx.AsyncClient(base_url=ctl) as http:
            assert (
                await http.post(
                    "/_control/recipients",
                    json={"address": "Reject@Example.nz", "action": "reject"},
                )
            ).status_code == 200
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
                await aiosmtplib.send(
                    _mail("reject@example.nz"), hostname="127.0.0.1", port=gw.port
                )
            await aiosmtplib.send(_mail(), hostname="127.0.0.1", port=gw.port)
            await gw.wait_for(1)
            listed = (await http.get("/_control/messages")).json()["messages"]
            assert [m["rcpt_tos"] for m in listed] == [["person1@example.nz"]]
            await http.post("/_control/behaviour", json={"fail_next": 1, "fail_code": 452})
            with pytest.raises(aiosmtplib.SMTPDataError) as exc:
                await aiosmtplib.send(_mail(), hostname="127.0.0.1", port=gw.port)
            assert exc.value.code == 452
            await http.post("/_control/reset")
            assert gw.messages == [] and gw.recipient_actions == {}
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 1


async def test_smtp_slow_down():
    async with SmtpGateway() as gw:
        gw.slow_down(0.3)
        start = time.monotonic()
        await aiosmtplib.send(_mail(), hostname="127.0.0.1", port=gw.port)
        assert time.monotonic() - start >= 0.3


async def test_sms_inspection_and_control_endpoints():
    async with SmsGateway() as gw, httpx.AsyncClient(base_url=gw.url) as http:
        payload = {"to": "+64210000001", "body": "hi PAN-TEST", "reference": "R1:sms"}
        first = await http.post("/v1/messages", json=payload)
        again = await http.post("/v1/messages", json=payload)
        assert first.status_code == again.status_code == 202
        assert first.json()["id"] == again.json()["id"]
        listed = (await http.get("/v1/messages", params={"reference": "R1:sms"})).json()["messages"]
        assert len(listed) == 1 and listed[0]["body"] == "hi PAN-TEST"
        assert (await http.get(f"/v1/messages/{first.json()['id']}")).json()["to"] == "+64210000001"
        assert (await http.get("/v1/messages/nope")).status_code == 404
        await http.post("/_control/behaviour", json={"rate_limit_next": 1, "retry_after": 9})
        limited = await http.post("/v1/messages", json={**payload, "reference": "R2:sms"})
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "9"
        await http.post("/_control/behaviour", json={"fail_next": 2})
        assert (
            await http.post("/v1/messages", json={**payload, "reference": "R3:sms"})
        ).status_code == 500
        assert (
            await http.post("/v1/messages", json={**payload, "reference": "R3:sms"})
        ).status_code == 500
        assert (
            await http.post("/v1/messages", json={**payload, "reference": "R3:sms"})
        ).status_code == 202
        assert (
            await http.post(
                "/v1/messages", json={**payload, "to": "0211234567", "reference": "R4:sms"}
            )
        ).status_code == 422
        await http.post("/_control/reset")
        assert (await http.get("/v1/messages")).json() == {"messages": []}


def _wait_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gateway did not start")


async def test_sms_digests_only_keeps_nothing_personal_and_still_dedupes():
    """The dry-run sidecar's mode: a re-send by reference is answered as before, a reference
    reused for another message is still refused, and neither number nor text is held."""
    async with SmsGateway(keep_content=False) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        payload = {"to": "+64210000001", "body": "hi PAN-TEST", "reference": "R1:sms"}
        first = await http.post("/v1/messages", json=payload)
        again = await http.post("/v1/messages", json=payload)
        assert first.status_code == again.status_code == 202
        assert first.json()["id"] == again.json()["id"]
        other = await http.post("/v1/messages", json={**payload, "body": "another"})
        assert other.status_code == 409
        stored = json.dumps((await http.get("/v1/messages")).json())
        assert "+64210000001" not in stored and "PAN-TEST" not in stored
        assert len(gw.messages) == 1


@pytest.mark.parametrize(
    "command", [["services.gateways.smtp_server"], ["services.gateways.sms_server"],
                ["services.gateways", "smtp", "--count-only"],
                ["services.gateways", "sms", "--digests-only"]],
    ids=["smtp_server", "sms_server", "gateways-smtp", "gateways-sms"])
async def test_cli_starts_and_serves(command):
    smtp = "smtp" in " ".join(command)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", *command, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await asyncio.to_thread(_wait_port, port, proc)
        if smtp:
            await aiosmtplib.send(_mail(), hostname="127.0.0.1", port=port)
        else:
            async with httpx.AsyncClient() as http:
                r = await http.post(
                    f"http://127.0.0.1:{port}/v1/messages",
                    json={"to": "+64210000001", "body": "x", "reference": "cli:sms"},
                )
                assert r.status_code == 202
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------ fault controls


async def test_smtp_hold_delays_the_named_command():
    async with SmtpGateway() as gw:
        gw.hold("RCPT", 0.3)
        start = time.monotonic()
        await aiosmtplib.send(_mail(), hostname="127.0.0.1", port=gw.port)
        assert time.monotonic() - start >= 0.3 and len(gw.messages) == 1


async def test_smtp_hold_on_data_takes_nothing_from_a_client_that_gives_up():
    async with SmtpGateway() as gw:
        gw.hold("DATA", 1.0)
        with pytest.raises(aiosmtplib.SMTPTimeoutError):
            await aiosmtplib.send(_mail(), hostname="127.0.0.1", port=gw.port, timeout=0.3)
        await asyncio.sleep(1.0)
        assert gw.messages == []


async def test_smtp_answer_after_taking_keeps_a_message_whose_client_gave_up(tmp_path):
    """Slow to answer the final dot after storing the message (set through the control API):
    a client that stops waiting has still sent it — the gateway's log holds it."""
    async with SmtpGateway(maildir=tmp_path / "mail", control_port=0) as gw:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.control_port}") as http:
            r = await http.post("/_control/behaviour", json={"answer_after_taking_s": 1.0})
            assert r.status_code == 200 and r.json()["answer_after_taking_s"] == 1.0
        with pytest.raises(aiosmtplib.SMTPTimeoutError):
            await aiosmtplib.send(_mail(), hostname="127.0.0.1", port=gw.port, timeout=0.3)
        assert len(gw.messages) == 1  # stored before the (late) answer
        gw.answer_after_taking(0.0)
        await aiosmtplib.send(_mail(), hostname="127.0.0.1", port=gw.port, timeout=5)
        assert len(gw.messages) == 2
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 2


async def test_smtp_drop_after_accept_takes_the_message_and_never_answers(tmp_path):
    async with SmtpGateway(maildir=tmp_path / "mail") as gw:
        gw.drop_after_accept_next(1)
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await aiosmtplib.send(_mail(), hostname="127.0.0.1", port=gw.port)
        await aiosmtplib.send(_mail(), hostname="127.0.0.1", port=gw.port)  # answered again
        assert len(gw.messages) == 2 and gw.dropped_after_accept == 1
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 2


async def test_smtp_deferral_receipts_then_the_outcome():
    received: list[dict] = []
    from fastapi import FastAPI, Request

    from services.gateways.serving import AsgiServer

    sink = FastAPI()

    @sink.post("/receipts")
    async def receive(request: Request):
        received.append(await request.json())
        return {"ok": True}

    server = AsgiServer(sink)
    port = await server.start()
    try:
        async with SmtpGateway(bounce_webhook_url=f"http://127.0.0.1:{port}/receipts") as gw:
            gw.behaviour.defer_seconds = 0.2
            gw.set_recipient("later@example.nz", "defer-then-bounce")
            gw.set_recipient("never@example.nz", "defer")
            m1, m2 = _mail("later@example.nz"), _mail("never@example.nz")
            m1["X-Panui-Reference"], m2["X-Panui-Reference"] = "n-1:email", "n-2:email"
            m1["Message-ID"], m2["Message-ID"] = "<m1@x>", "<m2@x>"
            for m in (m1, m2):
                await aiosmtplib.send(m, hostname="127.0.0.1", port=gw.port)
            for _ in range(100):
                if len(received) >= 3:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            assert len(gw.bounces) == 1
    finally:
        await server.stop()
    assert sorted((r["reference"], r["status"]) for r in received) == [
        ("n-1:email", "bounced"), ("n-1:email", "deferred"), ("n-2:email", "deferred")]
    assert {r["id"] for r in received if r["reference"] == "n-1:email"} == {"<m1@x>"}


async def test_sms_faults_after_storing_and_the_message_log(tmp_path):
    log = tmp_path / "sms.jsonl"
    async with SmsGateway(message_log=log) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        payload = {"to": "+64210000001", "body": "hi PAN-TEST", "reference": "R1:sms"}
        gw.fail_after_store_next(1, 504)
        assert (await http.post("/v1/messages", json=payload)).status_code == 504
        assert list(gw.by_reference) == ["R1:sms"]  # taken all the same
        again = await http.post("/v1/messages", json=payload)
        assert again.status_code == 202  # and de-duplicated on the retry
        gw.reset_after_store_next(1)
        with pytest.raises(httpx.TransportError):
            await http.post("/v1/messages", json={**payload, "reference": "R2:sms"})
        assert "R2:sms" in gw.by_reference
        clash = await http.post("/v1/messages", json={**payload, "body": "other PAN-TEST"})
        assert clash.status_code == 409
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["reference"], x["to"]) for x in lines] == [
        ("R1:sms", "+64210000001"), ("R2:sms", "+64210000001")]


async def test_sms_status_lookup_tells_the_outcome_with_the_send_key_even_when_receipts_are_dropped():
    """GET /v1/messages/{id}/status: the carrier's outcome (accepted until it is known), behind
    the same API key as sends, no number or text in it; with drop_receipts the outcome is
    still recorded but no callback is ever posted (a receiver counts what reaches it)."""
    from fastapi import FastAPI, Request

    from services.gateways.serving import AsgiServer

    posted: list[bytes] = []
    receiver = FastAPI()

    @receiver.post("/v1/receipts/sms-primary")
    async def take(request: Request):
        posted.append(await request.body())
        return {"outcome": "updated"}

    server = AsgiServer(receiver, "127.0.0.1", 0)
    port = await server.start()
    key = {"authorization": "Bearer k-test"}
    callback = f"http://127.0.0.1:{port}/v1/receipts/sms-primary"
    try:
        async with SmsGateway(api_key="k-test") as gw, \
                httpx.AsyncClient(base_url=gw.url) as http:
            gw.set_outcome("+64210000002", "failed")
            gw.behaviour.hold_receipts = True

            async def send(to: str, reference: str) -> str:
                answer = await http.post("/v1/messages", headers=key, json={
                    "to": to, "body": "hi", "reference": reference, "callback_url": callback})
                assert answer.status_code == 202
                return answer.json()["id"]

            first = await send("+64210000001", "R1:sms")
            await http.post("/_control/behaviour", json={"drop_receipts": True})
            dropped = await send("+64210000002", "R2:sms")
            assert (await http.get(f"/v1/messages/{first}/status")).status_code == 401
            assert (await http.get(f"/v1/messages/{first}/status",
                                   headers={"authorization": "Bearer wrong"})).status_code == 401
            assert (await http.get("/v1/messages/nope/status", headers=key)).status_code == 404
            before = (await http.get(f"/v1/messages/{dropped}/status", headers=key)).json()
            assert before["status"] == "accepted" and before["reference"] == "R2:sms"
            assert set(before) == {"id", "reference", "status", "updated_at"}  # nothing personal
            gw.behaviour.hold_receipts = False
            await gw.wait_for_receipts(2)  # both outcomes decided
            after = (await http.get(f"/v1/messages/{dropped}/status", headers=key)).json()
            assert after["status"] == "failed"
            assert (await http.get(f"/v1/messages/{first}/status", headers=key)).json()[
                "status"] == "delivered"
            # drop_receipts is the gateway's, not per message: the first, sent before it was
            # set, is dropped too once the hold lets its outcome go.
            entries = {r["id"]: r for r in gw.receipts_sent}
            assert entries[dropped] == {"id": dropped, "status": "failed", "http_status": None,
                                        "dropped": True}
            assert entries[first].get("dropped") is True
            assert posted == []  # no callback ever reached the receiver
            await http.post("/_control/behaviour", json={"drop_receipts": False})
            third = await send("+64210000003", "R3:sms")
            await gw.wait_for_receipts(3)
            assert [r["http_status"] for r in gw.receipts_sent if r["id"] == third] == [200]
            assert len(posted) == 1 and json.loads(posted[0])["id"] == third
            assert (await http.get("/_control/stats")).json()["status_lookups"] == 3
    finally:
        await server.stop()
