"""`make chaos`: one bounded run of a ~20k-record incident while a seeded schedule kills and
restarts the services, the broker and PostgreSQL; then the reconciliation against ground
truth, printed and written to bench/chaos.json.

    python -m benchmarks.chaos                          # 20 000 records, seed 1
    python -m benchmarks.chaos --records 3000 --seed 7 --faults 6

Loopback only, and never the shared infrastructure: the run starts its own Kafka broker
(scripts/kafka.sh on ports and a data directory of its own) and its own PostgreSQL server
(initdb into a temporary directory), and kills those. The system runs as processes, as in
production (testkit/system.py), fed through intake's public API (testkit/driver.py).

One fault at a time, each followed by its recovery (restart), at seeded intervals while the
feeds arrive and the notices go out. Faults: SIGKILL or SIGTERM of intake, dedupe or
dispatch; the broker stopped or SIGKILLed, then started; PostgreSQL restarted, stopped for a
while, or killed (`immediate`), then started.

The run passes (exit 0) when no person is lost, no SMS or letter is duplicated, and every
duplicate email is in the documented SMTP window (docs/dispatch.md): a reference the SMTP
gateway had accepted and dispatch had not yet recorded when dispatch was SIGKILLed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testkit import infra
from testkit.driver import IncidentDriver
from testkit.groundtruth import ground_truth
from testkit.private_infra import PrivateKafka, PrivatePostgres
from testkit.reconcile import reconcile
from testkit.system import COORDINATOR_TOKEN, System

OUT = infra.REPO / "bench" / "chaos.json"
SERVICES = ("intake", "dedupe", "dispatch")
# (kind, weight); each kind is one fault and its recovery.
FAULTS = (("kill-service", 4), ("term-service", 2), ("kafka-stop", 1), ("kafka-kill", 1),
          ("postgres-restart", 1), ("postgres-down", 1), ("postgres-kill", 1))


class Chaos:
    def __init__(self, system: System, kafka: PrivateKafka, postgres: PrivatePostgres,
                 rng: random.Random):
        self.system, self.kafka, self.postgres, self.rng = system, kafka, postgres, rng
        self.injected: list[dict] = []
        self.email_window: set[str] = set()  # accepted by SMTP, unrecorded at a dispatch kill
        self.started = time.monotonic()

    def _log(self, kind: str, target: str, **detail) -> None:  # noqa: ANN003
        entry = {"t_s": round(time.monotonic() - self.started, 1), "fault": kind, "target": target,
                 **detail}
        self.injected.append(entry)
        print(f"  [{entry['t_s']:7.1f}s] {kind} {target} {detail or ''}", flush=True)

    def _window_now(self) -> set[str]:
        accepted = {ref for _to, ref, _mid in self.system.emails()}
        sending = {r for (r,) in self.system.query(
            "dispatch", "SELECT reference FROM delivery WHERE channel = 'email' "
                        "AND status = 'sending'")}
        return accepted & sending

    async def inject(self, kind: str) -> None:
        s, rng = self.system, self.rng
        if kind in ("kill-service", "term-service"):
            name = rng.choice(SERVICES)
            if kind == "kill-service":
                s.kill(name)
                if name == "dispatch":
                    await asyncio.sleep(1.0)  # the gateway finishes DATA exchanges in hand
                    window = self._window_now()
                    self.email_window |= window
                    self._log(kind, name, smtp_window=len(window))
                else:
                    self._log(kind, name)
            else:
                took = await asyncio.to_thread(s.terminate, name, 45.0)
                if name == "dispatch" and took == float("inf"):  # it had to be SIGKILLed
                    self.email_window |= self._window_now()
                self._log(kind, name, exited_after_s=round(took, 1))
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            await s.restart(name)
        elif kind in ("kafka-stop", "kafka-kill"):
            await asyncio.to_thread(self.kafka.stop if kind == "kafka-stop" else self.kafka.kill)
            down = rng.uniform(5, 20)
            self._log(kind, "broker", down_s=round(down, 1))
            await asyncio.sleep(down)
            await asyncio.to_thread(self.kafka.start)
        elif kind == "postgres-restart":
            await asyncio.to_thread(self.postgres.restart, "fast")
            self._log(kind, "postgres")
        else:
            mode = "fast" if kind == "postgres-down" else "immediate"
            await asyncio.to_thread(self.postgres.stop, mode)
            down = rng.uniform(5, 25)
            self._log(kind, "postgres", mode=mode, down_s=round(down, 1))
            await asyncio.sleep(down)
            await asyncio.to_thread(self.postgres.start)
        s.event(f"chaos: {kind}")

    async def run(self, faults: int, first_after_s: float, gap_s: tuple[float, float],
                  until: asyncio.Future) -> None:
        """`faults` faults, the first after `first_after_s`, then every `gap_s` seconds —
        stopping early once `until` is done (nothing left to disturb)."""
        await asyncio.sleep(first_after_s)
        kinds, weights = zip(*FAULTS, strict=True)
        for _ in range(faults):
            if until.done():
                return
            await self.inject(self.rng.choices(kinds, weights)[0])
            await asyncio.sleep(self.rng.uniform(*gap_s))


def _git(*argv: str) -> str:
    try:
        return subprocess.run(["git", *argv], cwd=infra.REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


async def chaos(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="panui-chaos-"))
    kafka, postgres = PrivateKafka(base), PrivatePostgres()
    print(f"chaos: {args.records} records, seed {args.seed}, up to {args.faults} faults; "
          f"private broker {kafka.bootstrap}, private PostgreSQL; logs in {base}", flush=True)
    await asyncio.gather(asyncio.to_thread(kafka.start), asyncio.to_thread(postgres.start))
    system = System(base / "system", kafka_bootstrap=kafka.bootstrap, pg_admin_url=postgres.admin_url,
                    env={"dedupe": {"PANUI_CONSUMER_BATCH_MAX_RECORDS": "500",
                                    "PANUI_CONSUMER_SESSION_TIMEOUT_MS": "45000"},
                         "dispatch": {"PANUI_CONSUMER_SESSION_TIMEOUT_MS": "45000"}},
                    start_timeout_s=300)  # a loaded machine starts processes slowly
    started = time.monotonic()
    try:
        await system.start()
        truth = ground_truth(args.records, agencies=4, incidents=2, seed=args.seed)
        driver = IncidentDriver(truth, lambda: [system.services["intake"].url], COORDINATOR_TOKEN,
                                chunk_records=500, pace_s=args.pace_s, retry_deadline_s=600)
        await driver.create_incidents()
        work = asyncio.ensure_future(_feed_and_settle(system, driver, args))
        schedule = Chaos(system, kafka, postgres, rng)
        await schedule.run(args.faults, args.first_fault_s, (args.min_gap_s, args.max_gap_s), work)
        for name, proc in system.services.items():  # a fault's recovery may itself have failed
            if not proc.alive:
                await system.restart(name)
        quiet = await work
        result = reconcile(truth, await system.observe(truth.incidents))
        print(result.table())
        window = schedule.email_window
        email_dups = {r: n for r, n in result.duplicate_references.items() if r.endswith(":email")}
        outside = result.emails_outside_window(window)  # a resend under a new reference too
        report = {
            "code": {"commit": _git("rev-parse", "HEAD"), "branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
                     "dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))},
            "seed": args.seed, "records": truth.records, "incidents": len(truth.incidents),
            "agencies": len(truth.agencies), "wall_s": round(time.monotonic() - started, 1),
            "quiescent": quiet.quiet, "settle_waited_s": round(quiet.waited_s, 1),
            "faults_injected": len(schedule.injected),
            "faults": schedule.injected,
            "persons_expected": result.persons_expected, "exactly_once": result.exactly_once,
            "lost": result.lost, "duplicated": result.duplicated,
            "per_channel": {name: {"expected": row.expected, "exactly_once": row.exactly_once,
                                   "lost": row.never, "duplicated": row.twice_plus,
                                   "duplicate_copies": row.duplicate_copies,
                                   "messages": row.messages}
                            for name, row in result.channels.items()},
            "email_smtp_window": len(window),
            "email_duplicates_in_window": len(email_dups.keys() - outside.keys()),
            "email_duplicates_outside_window": len(outside),
            "overmerged": len(result.overmerged), "split": len(result.split),
        }
        report["passed"] = (report["lost"] == 0 and not outside and report["overmerged"] == 0
                            and result.channels["sms"].duplicate_copies == 0
                            and result.channels["postal"].duplicate_copies == 0)
        return report
    finally:
        await system.close(drop=False)  # the private server goes whole
        await asyncio.to_thread(kafka.close)
        await asyncio.to_thread(postgres.close)


async def _feed_and_settle(system: System, driver: IncidentDriver, args: argparse.Namespace):  # noqa: ANN202
    await driver.upload_all(parallel=False)
    await driver.complete_all()
    # Past --timeout, a system still sending (its state changed within --progress-s) gets more
    # time, up to --max-settle-s: the settle time scales with the box's throughput, and the
    # run still ends by reconciling against the truth.
    return await system.wait_quiescent(timeout=args.timeout, settle_s=5.0, progress_s=args.progress_s,
                                       max_s=args.max_settle_s)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", type=int, default=10, help="at most this many faults")
    parser.add_argument("--first-fault-s", type=float, default=10.0)
    parser.add_argument("--min-gap-s", type=float, default=5.0)
    parser.add_argument("--max-gap-s", type=float, default=15.0)
    parser.add_argument("--pace-s", type=float, default=0.5, help="pause between 500-record chunks")
    parser.add_argument("--timeout", type=float, default=900.0, help="for the system to settle")
    parser.add_argument("--progress-s", type=float, default=180.0,
                        help="past --timeout, keep waiting while the state changed this recently")
    parser.add_argument("--max-settle-s", type=float, default=3600.0,
                        help="the longest a settle may take, progressing or not")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    report = asyncio.run(chaos(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfaults injected {report['faults_injected']}; lost {report['lost']}; duplicate SMS "
          f"{report['per_channel']['sms']['duplicate_copies']}; duplicate emails "
          f"{report['email_duplicates_in_window']} in the SMTP window, "
          f"{report['email_duplicates_outside_window']} outside; wrote {args.out}")
    if not report["quiescent"]:  # then "lost" includes everyone still waiting to be sent
        print("NOT QUIESCENT: the system was still working when --timeout ran out; 'lost' counts "
              "persons not notified YET (rerun with a longer --timeout or fewer --records)")
    print("PASSED" if report["passed"] else "FAILED")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
