"""`make bench`: the whole incident at the scale of the breach, through the production shape.

    .venv/bin/python -m benchmarks.incident.run                  # 400,000 records, ~50 agencies
    .venv/bin/python -m benchmarks.incident.run --quick          # 20,000 records
    options: --records N --seed S --clients C --workers intake=2,dedupe=1,dispatch=1
             --profile (py-spy on each service) --no-reference --update-docs --keep

A seeded portal-breach incident (scenario.BREACH on the NZ generator, ground truth kept) goes
through real Kafka, PostgreSQL (a fresh database per service per run on the local server), the
three services as separate processes (PANUI_WORKERS each) and the local gateways without rate
limits. The agencies upload through intake's API in the CLI's chunks, C agencies at a time, and
mark themselves complete. Measured: wall time from the first upload to the last notice
delivered; each stage's rate; record-accepted-to-notice-delivered latency; correctness of the
notices against the truth through the whole system; CPU and peak memory per process; and, in
the same run, Kafka's own producer and consumer tools on the same number and size of messages.
Writes bench/results.json (bench/results-quick.json for --quick) and a table beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import httpx

from benchmarks import support
from benchmarks.incident import flow, kafka_reference, report, scenario, system
from benchmarks.incident.observe import Observer, Snapshot
from benchmarks.incident.stack import ProcessExited, Stack
from services.dedupe.settings import DedupeSettings

INCIDENT = "inc-bench"
VAR = support.REPO / "var"
# Recommended for the 2-core box (see docs/benchmarks.md): intake parses and seals in Python,
# so a second worker helps; dedupe resolves one incident on one partition, so one worker does
# all of it; dispatch's sender is one asyncio loop per worker.
WORKERS = {"intake": 2, "dedupe": 1, "dispatch": 1}
# Dedupe mirrors its review queue at most this often (PANUI_REVIEW_SYNC_INTERVAL_S; not set here).
REVIEW_SYNC_S = DedupeSettings.model_fields["review_sync_interval_s"].default


def _workers(text: str) -> dict[str, int]:
    out = dict(WORKERS)
    for part in filter(None, text.split(",")):
        name, _, n = part.partition("=")
        if name not in out or not n.isdigit():
            raise argparse.ArgumentTypeError(f"not service=count: {part!r}")
        out[name] = int(n)
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.incident.run",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--quick", action="store_true", help="20,000 records")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--clients", type=int, default=4, help="agencies uploading at once")
    parser.add_argument("--workers", type=_workers, default=dict(WORKERS),
                        help="e.g. intake=2,dedupe=1,dispatch=1 (PANUI_WORKERS per service)")
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    parser.add_argument("--stall", type=float, default=900,
                        help="give up when no stage has moved for this many seconds")
    parser.add_argument("--out", type=Path, help="default bench/results.json (--quick: results-quick.json)")
    parser.add_argument("--profile", nargs="?", const="flamegraph", choices=["flamegraph", "raw", "speedscope"],
                        help="py-spy profiles of each service into var/bench/profile/: flame graphs "
                             "(SVG), raw collapsed stacks or speedscope JSON (py-spy: the 'profile' extra of pyproject.toml, not in the locks)")
    parser.add_argument("--no-reference", action="store_true", help="skip Kafka's perf tools")
    parser.add_argument("--update-docs", action="store_true",
                        help="put the table into README.md and docs/benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep the databases and topics")
    parser.add_argument("--log-dir", type=Path, default=VAR / "bench" / "log",
                        help="the processes' logs (emptied first)")
    args = parser.parse_args(argv)
    if args.quick:
        args.records = 20_000
    args.out = args.out or support.REPO / "bench" / ("results-quick.json" if args.quick else "results.json")
    return args


def main(argv: list[str] | None = None) -> int:
    # SIGTERM stops a run like Ctrl-C does: what it measured is still written (-unfinished.json).
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _main(parse(argv))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(args: argparse.Namespace) -> int:
    load_start = os.getloadavg()
    print(f"generating the incident ({args.records:,} records, seed {args.seed})…", flush=True)
    incident = scenario.build(scenario.BREACH, args.records, args.seed, VAR / "incidents")
    print(f"  {incident.records:,} records of {incident.persons:,} people from "
          f"{len(incident.agencies)} agencies in {incident.folder}", flush=True)
    prefix = support.topic_prefix("incident")
    bootstrap = support.kafka_bootstrap()
    databases, names = {}, []
    try:
        for service in system.SERVICES:
            name, url = support.create_database(f"bench_{service}", service)
            names.append(name)
            databases[service] = url
        try:
            run = _run(args, incident, databases, prefix, bootstrap)
        except RunFailed as failed:
            partial = report.partial(args, incident, failed.run, str(failed), load_start, os.getloadavg())
            out = args.out.with_name(args.out.stem + "-unfinished.json")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(partial, indent=1) + "\n")
            print(f"\nthe run did not finish: {failed}\nwhat it measured until then: {out}",
                  file=sys.stderr)
            return 1
        reference = None
        if not args.no_reference:
            print("Kafka's own tools on the same messages…", flush=True)
            reference = kafka_reference.measure(bootstrap, f"{prefix}kafka-reference",
                                                run["traffic"].messages, run["traffic"].mean_size)
    finally:
        if not args.keep:
            for name in names:
                support.drop_database(name)
            support.delete_topics(prefix)
    results = report.results(args, incident, run, reference, load_start, os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    table = report.markdown(results)
    args.out.with_suffix(".md").write_text(table + "\n")
    print("\n" + table)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")
    if args.update_docs:
        for path in report.update_docs(table, support.REPO):
            print(f"updated {path}")
    return 0


class RunFailed(RuntimeError):
    """The incident did not finish; `run` holds what was measured until then."""

    def __init__(self, message: str, run: dict) -> None:
        super().__init__(message)
        self.run = run


def _run(args: argparse.Namespace, incident: scenario.Incident, databases: dict[str, str],
         prefix: str, bootstrap: str) -> dict:
    log_dir = args.log_dir
    shutil.rmtree(log_dir, ignore_errors=True)
    with Stack(log_dir) as stack:
        endpoints = system.start(stack, system.Options(
            databases=databases, bootstrap=bootstrap, topic_prefix=prefix, workers=args.workers,
            maildir=None, quiet_hours=False))
        if args.profile:
            _profile(stack, args.profile)
        keys = flow.create_incident(endpoints.intake, endpoints.coordinator_token, INCIDENT,
                                    incident.agencies)
        observer = Observer(databases, INCIDENT)
        stack.sample_every(1.0)
        feeds = {a.agency_id: incident.feed_path(a.agency_id) for a in incident.agencies}
        uploads: list[flow.Uploaded] = []
        failure: list[BaseException] = []
        stop = threading.Event()

        def upload() -> None:
            try:
                uploads.extend(flow.upload_all(endpoints.intake, keys, INCIDENT, feeds, args.clients,
                                               stop=stop))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                failure.append(exc)

        print(f"uploading with {args.clients} agencies at a time; workers {args.workers}", flush=True)
        t0 = time.time()
        uploader = threading.Thread(target=upload, name="uploads")
        uploader.start()
        timeline: list[Snapshot] = []
        moved_at, last_counts = time.time(), None
        try:
            while True:
                time.sleep(1.0)
                stack.check()
                if failure:
                    raise RuntimeError("an upload failed") from failure[0]
                snap = observer.snapshot(time.time())
                timeline.append(snap)
                if len(timeline) % 10 == 0:
                    _progress(snap, t0)
                expected = sum(u.accepted for u in uploads) if not uploader.is_alive() else None
                if expected is not None and snap.done(expected):
                    break
                counts = (snap.accepted, snap.applied, snap.notices, snap.received, snap.deliveries)
                if counts != last_counts:
                    moved_at, last_counts = snap.at, counts
                if snap.at - moved_at > args.stall:
                    _progress(snap, t0)
                    raise TimeoutError(f"nothing moved for {args.stall:.0f} s (see the lines above "
                                       f"and {log_dir}/)")
                if time.time() - t0 > args.timeout:
                    raise TimeoutError(f"not done after {args.timeout:.0f} s")
        except (TimeoutError, ProcessExited, KeyboardInterrupt) as exc:
            stopped = isinstance(exc, KeyboardInterrupt)
            stop.set()
            uploader.join()
            observer.close()
            raise RunFailed("stopped (Ctrl-C or SIGTERM)" if stopped else str(exc), {"t0": t0, "uploads": uploads, "timeline": timeline,
                                       "usage": stack.usage()}) from exc
        try:
            stamps = observer.timestamps()  # now, before late receipts move updated_at
            # The SMS gateway's last receipts; and the review pairs are read one sync interval
            # after the resolver's last change (the release), so the queue is the final one.
            last_change = stamps["last_notice_released"] or time.time()
            time.sleep(max(2.0, last_change + REVIEW_SYNC_S + 3 - time.time()))
            usage = stack.usage()
            gateways = {
                "email": httpx.get(f"{endpoints.smtp_control}/_control/stats").json()["accepted"],
                "sms": httpx.get(f"{endpoints.sms}/_control/stats").json()["messages"]}
            print("following every record through the system…", flush=True)
            outcome = observer.outcome(incident.truth)
            by_channel = observer.notices_by_channel()
            final = observer.snapshot(time.time())
        finally:
            uploader.join()
            observer.close()
    traffic = kafka_reference.pipeline_traffic(bootstrap, prefix)
    return {"t0": t0, "uploads": uploads, "timeline": timeline, "stamps": stamps, "usage": usage,
            "gateways": gateways, "outcome": outcome, "by_channel": by_channel, "final": final,
            "traffic": traffic}


def _progress(s: Snapshot, t0: float) -> None:
    sent = sum(s.by_channel().values())
    print(f"  {s.at - t0:6.0f} s  accepted {s.accepted:,}  outbox {s.intake_outbox:,}  "
          f"applied {s.applied:,}  persons {sum(s.persons.values()):,}  released {s.notices:,}  "
          f"dispatch {s.received:,}  delivered {sent:,}", flush=True)


def _profile(stack: Stack, fmt: str) -> None:
    """py-spy attached to each service (and its workers); it writes the SVG on SIGINT."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy (pyproject's 'profile' extra, not in the hashed locks): .venv/bin/pip install py-spy==0.4.3")
    out = VAR / "bench" / "profile"
    out.mkdir(parents=True, exist_ok=True)
    suffix = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}[fmt]
    for process in list(stack.processes):
        if process.name in system.SERVICES:
            stack.start(f"py-spy-{process.name}", [
                py_spy, "record", "--pid", str(process.pid), "--subprocesses", "--rate", "40",
                "--nonblocking", "--format", fmt, "-o", str(out / f"{process.name}.{suffix}")],
                stop_signal=signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
