"""Client CPU of dispatch's SMTP send per email, without Kafka or the database: the provider
(`SmtpEmailProvider`, as the service builds it) sending rendered-size messages to the local
SMTP gateway in its own process, with and without PIPELINING offered, rounds alternating.

    .venv/bin/python -m benchmarks.dispatch.smtp_path [--emails 3000] [--rounds 2] [--concurrency 48]

CPU is this process's (time.process_time): what dispatch pays per email, not the gateway's
(its own CPU is shown beside it). Same code both ways: "off" is the gateway started with
--no-pipelining, so the client falls back to aiosmtplib's one command per round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

from benchmarks import support
from benchmarks.dispatch.run import _cpu_seconds, _wait_http
from services.common.crypto import Sealer, generate_key_spec
from services.common.messages import notice_sealing_context
from services.dispatch.content.models import IncidentContent, Notice
from services.dispatch.content.render import render_email
from services.dispatch.providers.base import EmailMessage
from services.dispatch.providers.smtp import SmtpConfig, SmtpEmailProvider
from testkit.notices import incident_message, notice_message, person


def _rendered(n: int) -> list:
    """n notices rendered as the sender renders them (bundled templates)."""
    sealer = Sealer(generate_key_spec("bench-smtp"))
    content = IncidentContent.from_contract(incident_message("bench-incident"))
    out = []
    for i in range(n):
        notice = notice_message(sealer, i, person(i, mobile=False, address=False),
                                incident_id="bench-incident")
        sealed = sealer.open(notice.sealed, notice_sealing_context(notice.notice_id))
        out.append(render_email(Notice.from_contract(notice, sealed), content))
    return out


async def _send_all(port: int, emails: int, concurrency: int) -> tuple[float, float, int]:
    provider = SmtpEmailProvider(SmtpConfig(host="127.0.0.1", port=port, tls="none",
                                            pool_size=concurrency))
    rendered = _rendered(50)
    queue = list(range(emails))
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while queue:
            i = queue.pop()
            r = rendered[i % len(rendered)]
            result = await provider.send(EmailMessage(f"bench-{i}:email", r.to, "notices@example.nz",
                                                      r.subject, r.text, r.html))
            sent += result.status.value == "sent"

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await provider.close()
    return cpu, wall, sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=48, help="dispatch's smtp_pool_size")
    args = parser.parse_args(argv)
    rows = []
    for r in range(args.rounds):
        for pipelining in ((False, True) if r % 2 == 0 else (True, False)):
            port, ctl = support.free_port(), support.free_port()
            gw = subprocess.Popen(  # noqa: S603 - our own gateway
                [sys.executable, "-m", "services.gateways.smtp_server", "--port", str(port),
                 "--control-port", str(ctl), "--count-only", "--bounce-webhook-url", "",
                 *([] if pipelining else ["--no-pipelining"])],
                cwd=support.REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                _wait_http(f"http://127.0.0.1:{ctl}/_control/stats", timeout=240)
                gw_cpu = _cpu_seconds(gw.pid)
                cpu, wall, sent = asyncio.run(_send_all(port, args.emails, args.concurrency))
                gw_cpu = _cpu_seconds(gw.pid) - gw_cpu
            finally:
                gw.terminate()
                gw.wait(timeout=20)
            rows.append([r + 1, "offered" if pipelining else "off", sent,
                         f"{cpu / max(sent, 1) * 1000:.3f}", f"{gw_cpu / max(sent, 1) * 1000:.3f}",
                         f"{sent / wall:.0f}", f"{os.getloadavg()[0]:.1f}"])
    print(support.table(["round", "pipelining", "sent", "client CPU ms/email",
                         "gateway CPU ms/email", "emails/s", "load"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
