"""Dispatch throughput: notices/s delivered to the local gateways, and the service's memory.

    .venv/bin/python -m benchmarks.dispatch.run [--notices 126000] [--quick] [--mix email|sms|both]

What it does: creates a fresh PostgreSQL database and a fresh topic prefix on the local broker,
publishes one incident and N notices (sealed, synthetic people) BEFORE dispatch starts, then
starts the real dispatch service (`python -m services.dispatch`, its own process) and the local
SMTP and SMS gateways (their own processes), and times how long dispatch takes to get every
notice accepted by a gateway (deliveries in 'sent' or 'delivered'). Peak and sampled RSS of the
dispatch process show whether memory stays flat (backpressure: the consumer pauses instead of
buffering). Needs `make infra-up`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from aiokafka import AIOKafkaProducer

from benchmarks import support
from services.common.crypto import Sealer, generate_key_spec
from services.common.messages import NoticeMessage
from testkit.notices import incident_message, notice_message, person

REPO = support.REPO
PY = sys.executable
INCIDENT_ID = "bench-incident"


def _notice(sealer: Sealer, n: int, mix: str) -> NoticeMessage:
    """Notice n of the run: 'mixed' gives three in four an email and the rest a mobile."""
    email = mix in ("email", "both") or (mix == "mixed" and bool(n % 4))
    mobile = mix in ("sms", "both") or (mix == "mixed" and not n % 4)
    return notice_message(sealer, n, person(n, email=email, mobile=mobile, address=False),
                          incident_id=INCIDENT_ID)


async def _publish(bootstrap: str, prefix: str, keys: str, n: int, mix: str) -> float:
    from services.common.kafka import ensure_topics
    from services.common.settings import ServiceSettings
    from services.common.topics import ALL_TOPICS

    await ensure_topics(
        ServiceSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix), ALL_TOPICS
    )
    sealer = Sealer(keys)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=512 * 1024, compression_type=None)
    await producer.start()
    started = time.perf_counter()
    try:
        mode = {"email": "email_else_sms", "sms": "sms_else_email", "both": "both",
                "mixed": "email_else_sms"}[mix]
        await producer.send_and_wait(f"{prefix}incidents.v1", incident_message(INCIDENT_ID, mode=mode).to_bytes(),
                                     key=INCIDENT_ID.encode())
        topic = f"{prefix}notices.v1"
        for i in range(n):
            notice = _notice(sealer, i, mix)
            await producer.send(topic, notice.to_bytes(), key=notice.person_id.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


def _accepted(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT notice_id) FILTER (WHERE status IN ('sent','delivered')),"
            " count(*) FILTER (WHERE status IN ('queued','sending','temporary-failure',"
            "'technical-failure')) FROM delivery"
        ).fetchone()
    return int(row[0]), int(row[1])


def _window(metrics_text: str, channel: str) -> dict[str, float]:
    """From dispatch's panui_dispatch_unrecorded_seconds histogram: how long gateways' answers
    waited for their durable record (mean, and the bucket bounds holding p50/p99/max)."""
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    prefix = "panui_dispatch_unrecorded_seconds"
    label = f'channel="{channel}"'
    for line in metrics_text.splitlines():
        if not line.startswith(prefix) or label not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith(prefix + "_bucket"):
            le = name.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(value)))
        elif name.startswith(prefix + "_sum"):
            total = float(value)
        elif name.startswith(prefix + "_count"):
            count = float(value)
    if not count:
        return {}
    buckets.sort()

    def quantile(q: float) -> float:
        return next(le for le, n in buckets if n >= q * count)

    return {"count": count, "mean": total / count, "p50": quantile(0.5), "p99": quantile(0.99),
            "max": quantile(1.0)}


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notices", type=int, default=126_000)
    parser.add_argument("--quick", action="store_true", help="5,000 notices")
    parser.add_argument("--mix", choices=["email", "sms", "both", "mixed"], default="mixed",
                        help="mixed: 3 in 4 by email, 1 in 4 by SMS (default)")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--workers", type=int, default=1, help="dispatch's PANUI_WORKERS")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--no-pipelining", action="store_true",
                        help="the SMTP gateway does not offer PIPELINING (one command per round trip)")
    parser.add_argument("--profile", metavar="FILE", help="run dispatch under cProfile")
    parser.add_argument("--flame", metavar="SVG",
                        help="attach py-spy (if installed) to dispatch once ready: a flame graph")
    args = parser.parse_args(argv)
    n = 5_000 if args.quick else args.notices

    bootstrap = support.kafka_bootstrap()
    prefix = support.topic_prefix("dispatch")
    db_name, db_url = support.create_database("bench_dispatch", "dispatch")
    keys = generate_key_spec("bench-notices-1")  # the notices KEK: all dispatch holds
    log_dir = REPO / "var" / "log"
    log_dir.mkdir(parents=True, exist_ok=True)

    print(f"publishing {n:,} notices ({args.mix}) to {prefix}notices.v1 ...", flush=True)
    publish_s = asyncio.run(_publish(bootstrap, prefix, keys, n, args.mix))
    print(f"published in {publish_s:.1f}s", flush=True)

    smtp_port, smtp_ctl, sms_port, dispatch_port = (support.free_port() for _ in range(4))
    secret = uuid.uuid4().hex
    procs: list[subprocess.Popen] = []

    def spawn(name: str, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(log_dir / f"bench-{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,  # noqa: S603
                                env={**os.environ, **(env or {})})
        procs.append(proc)
        return proc

    try:
        spawn("smtp", [PY, "-m", "services.gateways.smtp_server", "--port", str(smtp_port),
                       "--control-port", str(smtp_ctl), "--count-only",
                       "--bounce-webhook-url", "",
                       *(["--no-pipelining"] if args.no_pipelining else [])])
        spawn("sms", [PY, "-m", "services.gateways.sms_server", "--port", str(sms_port),
                      "--callback-secret", secret])
        _wait_http(f"http://127.0.0.1:{smtp_ctl}/_control/stats", timeout=240)  # load 40+
        _wait_http(f"http://127.0.0.1:{sms_port}/_control/stats", timeout=240)
        env = {
            "PANUI_DATABASE_URL": db_url, "PANUI_TOPIC_PREFIX": prefix,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PANUI_NOTICES_KEYS": keys,
            "PANUI_PORT": str(dispatch_port), "PANUI_LOG_LEVEL": "WARNING",
            "PANUI_SMTP_PORT": str(smtp_port),
            "PANUI_SMS_PRIMARY_URL": f"http://127.0.0.1:{sms_port}",
            "PANUI_RECEIPT_SECRET": secret,
            "PANUI_RECEIPT_CALLBACK_BASE_URL": f"http://127.0.0.1:{dispatch_port}",
            "PANUI_QUIET_HOURS_ENABLED": "false",
            "PANUI_SENDER_CONCURRENCY": str(args.concurrency),
            "PANUI_CONSUMER_BATCH_MAX_RECORDS": "1000",
            "PANUI_WORKERS": str(args.workers),
        }
        started = time.perf_counter()
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        dispatch = spawn("dispatch", [PY, *profile, "-m", "services.dispatch"], env)
        _wait_http(f"http://127.0.0.1:{dispatch_port}/healthz", timeout=600)  # start-up at load 50: > 240 s
        ready_s = time.perf_counter() - started
        ready_cpu_s = support.cpu_seconds(dispatch.pid)  # start-up (imports, migrations): not per notice
        spy = None
        if args.flame:
            spy = subprocess.Popen(  # noqa: S603 - our own tool on our own child
                # --gil: only the thread running Python, i.e. CPU, not waits on the database;
                # a .txt name gives collapsed stacks (flamegraph.pl's input) instead of an SVG.
                [str(Path(PY).parent / "py-spy"), "record", "--nonblocking", "--gil", "-r", "200",
                 "-o", args.flame, "-p", str(dispatch.pid),
                 *(["-f", "raw"] if args.flame.endswith(".txt") else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak, samples, accepted, pending = 0.0, [], 0, 0
        first_at: float | None = None
        next_sample = 0.25
        while accepted < n:
            if dispatch.poll() is not None:
                raise SystemExit("dispatch exited; see var/log/bench-dispatch.log")
            if time.perf_counter() - started > args.timeout:
                print(f"time limit reached with {accepted:,}/{n:,} accepted: partial result")
                break
            time.sleep(1.0)
            rss = support.rss_mb(dispatch.pid)
            peak = max(peak, rss)
            try:
                accepted, pending = _accepted(db_url)
            except psycopg.Error:
                continue  # tables not created yet
            if accepted and first_at is None:
                first_at = time.perf_counter()
            if accepted >= next_sample * n:
                samples.append((accepted, rss, pending))
                next_sample += 0.25
        cpu_s = support.cpu_seconds(dispatch.pid)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes the SVG on SIGINT
            spy.wait(timeout=120)
        # The gateways share the cores: their CPU per notice is part of the stage's cost.
        gateways_cpu_s = sum(support.cpu_seconds(p.pid) for p in procs if p is not dispatch)
        elapsed = time.perf_counter() - (first_at or started)
        total = time.perf_counter() - started
        # At load 50 a busy dispatch (receipts) once took > 60 s to answer /metrics and the run's
        # numbers were lost: the timings above stand without these.
        print(f"accepted {accepted:,} in {elapsed:.1f}s first to last ({accepted / max(elapsed, 1e-9):.1f}"
              f" notices/s), dispatch CPU {cpu_s:.0f}s, gateways CPU {gateways_cpu_s:.0f}s", flush=True)
        try:
            metrics_text = httpx.get(f"http://127.0.0.1:{dispatch_port}/metrics", timeout=300).text
        except httpx.HTTPError:
            metrics_text = ""
        windows = {c: _window(metrics_text, c) for c in ("email", "sms")}
        sms_stats = httpx.get(f"http://127.0.0.1:{sms_port}/_control/stats", timeout=300).json()
        smtp_stats = httpx.get(f"http://127.0.0.1:{smtp_ctl}/_control/stats", timeout=300).json()
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        support.drop_database(db_name)
        support.delete_topics(prefix)

    rate = accepted / elapsed
    print()
    print(f"dispatch benchmark: {n:,} notices, mix={args.mix}, {args.workers} worker(s), "
          f"SMTP pipelining {'off' if args.no_pipelining else 'offered'}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("-" * 60)
    print(f"{'accepted by gateways':<34}{accepted:>12,}")
    print(f"{'  email (SMTP gateway)':<34}{smtp_stats['accepted']:>12,}")
    print(f"{'  SMS (HTTP gateway)':<34}{sms_stats['messages']:>12,}")
    print(f"{'SMS send attempts (dedupe check)':<34}{sms_stats['send_attempts']:>12,}")
    print(f"{'service start to ready':<34}{ready_s:>11.1f}s")
    print(f"{'first to last accepted':<34}{elapsed:>11.1f}s")
    print(f"{'start to last accepted':<34}{total:>11.1f}s")
    print(f"{'throughput (notices/s)':<34}{rate:>12,.0f}   goal >= 2,000")
    print(f"{'dispatch CPU per notice':<34}{cpu_s / max(accepted, 1) * 1000:>10.2f}ms"
          f"   (contention-independent; {cpu_s:.0f}s CPU in all)")
    sending_cpu_s = cpu_s - ready_cpu_s
    print(f"{'  from ready (start-up left out)':<34}{sending_cpu_s / max(accepted, 1) * 1000:>10.2f}ms"
          f"   ({ready_cpu_s:.1f}s CPU to start up)")
    print(f"{'gateways CPU per notice':<34}{gateways_cpu_s / max(accepted, 1) * 1000:>10.2f}ms"
          f"   (SMTP + SMS gateway processes; {gateways_cpu_s:.0f}s CPU in all)")
    print(f"{'dispatch peak RSS':<34}{peak:>10.0f}MB")
    for channel, w in windows.items():
        if w:
            print(f"{'answer unrecorded (' + channel + ')':<34}{w['mean'] * 1000:>10.1f}ms mean;"
                  f" p50 <= {w['p50'] * 1000:.0f} ms, p99 <= {w['p99'] * 1000:.0f} ms,"
                  f" max <= {w['max'] * 1000:.0f} ms")
    print("RSS while sending (accepted / RSS MB / pending deliveries):")
    for count, rss, pend in samples:
        print(f"  {count:>10,} {rss:>8.0f} {pend:>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
