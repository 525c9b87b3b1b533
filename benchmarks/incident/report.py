"""The incident benchmark's results: the numbers (results.json), the table (markdown), and that
table put into README.md and docs/benchmarks.md between their markers."""

from __future__ import annotations

import argparse
import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.incident import scenario
from benchmarks.incident.observe import Snapshot

GOALS = {"wall_s": 120, "wall_s_stretch": 60, "exactly_one": 1.0, "spanning": 0}
MARK_START, MARK_END = "<!-- incident-bench:start -->", "<!-- incident-bench:end -->"
PROCESSES = ("intake", "dedupe", "dispatch", "smtp-gateway", "sms-gateway")


def _first(timeline: list[Snapshot], test, after: float = 0.0) -> float | None:  # noqa: ANN001
    return next((s.at for s in timeline if s.at >= after and test(s)), None)


def _rate(n: int, seconds: float | None) -> float | None:
    return round(n / seconds, 1) if seconds and seconds > 0 else None


def results(args: argparse.Namespace, incident: scenario.Incident, run: dict, reference: dict | None,
            load_start: tuple[float, ...], load_end: tuple[float, ...]) -> dict:
    t0, timeline, stamps, outcome = run["t0"], run["timeline"], run["stamps"], run["outcome"]
    uploads, final = run["uploads"], run["final"]
    accepted = sum(u.accepted for u in uploads)
    uploaded = max(u.finished for u in uploads)
    published = _first(timeline, lambda s: s.intake_outbox == 0 and s.accepted >= accepted, uploaded)
    first_applied = _first(timeline, lambda s: s.applied > 0)
    applied = _first(timeline, lambda s: s.applied >= accepted)
    released, last_released = stamps["released_at"], stamps["last_notice_released"]
    first_send, end = stamps["first_send"], stamps["last_delivery"]
    notices = final.notices
    wall = end - t0
    dispatch_s = end - first_send if first_send else None
    stages = {
        "intake": {"per_s": _rate(accepted, published and published - t0),
                   "accepted_per_s": _rate(accepted, uploaded - t0),
                   "published_per_s": _rate(accepted, published and published - t0),
                   "accepted_at_s": round(uploaded - t0, 1),
                   "published_at_s": published and round(published - t0, 1),
                   "rejected": sum(u.rejected for u in uploads)},
        "dedupe": {"per_s": _rate(accepted, applied and first_applied and applied - first_applied),
                   "applied_at_s": applied and round(applied - t0, 1),
                   "behind_intake_s": applied and published and round(applied - published, 1)},
        "release": {"notices": notices, "per_s": _rate(notices, last_released - released),
                    "released_at_s": round(released - t0, 1),
                    "last_notice_at_s": round(last_released - t0, 1)},
        "dispatch": {"notices": final.received, "per_s": _rate(final.received, dispatch_s),
                     "first_send_at_s": first_send and round(first_send - t0, 1),
                     "last_delivered_at_s": round(wall, 1)},
    }
    successes = final.by_channel()
    correctness = {k: outcome[k] for k in (
        "exactly_one", "exactly_one_count", "none", "two_or_more", "spanning", "in_review",
        "unreachable", "held", "held_for_contact", "none_not_held", "two_or_more_in_review", "review_pairs", "held_notified", "notified_by", "not_yet_delivered", "persons_with_accepted_records",
        "notices", "amendments")}
    correctness["gateway_messages"] = run["gateways"]
    correctness["successful_deliveries"] = {"email": successes.get("email", 0), "sms": successes.get("sms", 0)}
    out = {
        "records": incident.records,
        "records_accepted": accepted,
        "agencies": len(incident.agencies),
        "true_persons": incident.persons,
        "records_per_person": incident.records_per_person(),
        "resolved_persons": sum(n for status, n in final.persons.items() if status != "empty"),
        "wall_s": round(wall, 1),
        "stages": stages,
        "latency_s": outcome["latency_s"],
        "correctness": correctness,
        "processes": {k: v for k, v in run["usage"].items() if k in PROCESSES},
        "kafka_reference": None,
        "pipeline_traffic": {t: {"messages": n, "mean_bytes": round(b)} for t, (n, b) in
                             run["traffic"].topics.items()},
        "config": {"workers": args.workers, "upload_clients": args.clients, "chunk_records": 10_000,
                   "seed": args.seed, "database": "PostgreSQL (local, one database per service)",
                   "kafka": "local broker, 3 partitions per topic", "quiet_hours": False,
                   "gateway_rate_limits": False},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_start": [round(x, 2) for x in load_start],
                    "load_avg_end": [round(x, 2) for x in load_end]},
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "goals": GOALS,
        "timeline": [{"t": round(s.at - t0), "accepted": s.accepted, "applied": s.applied,
                      "released": s.notices, "delivered": sum(s.by_channel().values())}
                     for s in timeline[::5]],
    }
    if reference:
        ref_s = reference["produce_s"] + reference["consume_s"]
        out["kafka_reference"] = {**reference, "reference_s": round(ref_s, 2),
                                  "pipeline_multiple": round(wall / ref_s, 1)}
    return out


def partial(args: argparse.Namespace, incident: scenario.Incident, run: dict, failure: str,
            load_start: tuple[float, ...], load_end: tuple[float, ...]) -> dict:
    """What a run that did not finish measured: how far each stage got, and when."""
    t0, timeline, uploads = run["t0"], run["timeline"], run["uploads"]
    last = timeline[-1] if timeline else Snapshot(at=t0)
    accepted = last.accepted
    first_applied = _first(timeline, lambda s: s.applied > 0)
    # The longest time the applied count stood still, and where.
    stalls, since = [], None
    for before, after in zip(timeline, timeline[1:], strict=False):
        if after.applied == before.applied and after.applied < accepted:
            since = since or before
        elif since:
            stalls.append((round(since.at - t0), round(before.at - t0), since.applied))
            since = None
    if since:
        stalls.append((round(since.at - t0), round(last.at - t0), since.applied))
    return {
        "completed": False, "failure": failure, "records": incident.records,
        "agencies": len(incident.agencies), "true_persons": incident.persons,
        "elapsed_s": round(last.at - t0, 1),
        "stages": {
            "intake": {"accepted": accepted,
                       "accepted_at_s": round(max(u.finished for u in uploads) - t0, 1) if uploads else None,
                       "published_at_s": (lambda t: t and round(t - t0, 1))(_first(
                           timeline, lambda s: s.intake_outbox == 0 and s.accepted >= incident.records * 0.99))},
            "dedupe": {"applied": last.applied,
                       "per_s_until_then": _rate(last.applied, first_applied and last.at - first_applied),
                       "stalls_s": [{"from": a, "to": b, "applied": n} for a, b, n in stalls if b - a >= 30]},
            "release": {"notices": last.notices}, "dispatch": {"received": last.received,
                                                               "delivered": sum(last.by_channel().values())},
        },
        "processes": {k: v for k, v in run["usage"].items() if k in PROCESSES},
        "config": {"workers": args.workers, "upload_clients": args.clients, "seed": args.seed},
        "machine": {"cpus": os.cpu_count(), "load_avg_start": [round(x, 2) for x in load_start],
                    "load_avg_end": [round(x, 2) for x in load_end]},
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timeline": [{"t": round(s.at - t0), "accepted": s.accepted, "applied": s.applied,
                      "released": s.notices, "delivered": sum(s.by_channel().values())}
                     for s in timeline[::5]],
    }


def _n(x: float | int | None, unit: str = "") -> str:
    if x is None:
        return "–"
    return f"{x:,.0f}{unit}" if isinstance(x, float) or abs(x) >= 1000 else f"{x}{unit}"


def markdown(r: dict) -> str:
    s, c, lat, ref = r["stages"], r["correctness"], r["latency_s"], r["kafka_reference"]
    persons = c["persons_with_accepted_records"]
    wall_goal = "met" if r["wall_s"] <= GOALS["wall_s"] else f"**not met: {r['wall_s'] / GOALS['wall_s']:.1f}× the goal**"
    rows = [
        ("records / agencies / true people", f"{r['records']:,} / {r['agencies']} / {r['true_persons']:,}", ""),
        ("**wall time**, first upload → last notice delivered", f"**{r['wall_s']:,.0f} s**",
         f"≤ 120 s (stretch 60 s): {wall_goal}"),
        ("intake: accepted / published", f"{_n(s['intake']['accepted_per_s'])} / "
         f"{_n(s['intake']['published_per_s'])} records/s",
         f"all accepted at {s['intake']['accepted_at_s']:,.0f} s, published at {_n(s['intake']['published_at_s'])} s"),
        ("dedupe: applied", f"{_n(s['dedupe']['per_s'])} records/s",
         f"all applied at {_n(s['dedupe']['applied_at_s'])} s"),
        ("release (all agencies complete → notices out)", f"{_n(s['release']['per_s'])} notices/s",
         f"{s['release']['notices']:,} notices, {s['release']['released_at_s']:,.0f} → "
         f"{s['release']['last_notice_at_s']:,.0f} s"),
        ("dispatch: delivered", f"{_n(s['dispatch']['per_s'])} notices/s",
         f"first send at {_n(s['dispatch']['first_send_at_s'])} s"),
        ("latency, record accepted → notice delivered", f"p50 {_n(lat['p50'])} s, p99 {_n(lat['p99'])} s",
         "release waits for the last agency"),
        ("people with exactly one notice", f"{c['exactly_one']:.2%} ({c['exactly_one_count']:,} of {persons:,})",
         "goal 100 %"),
        ("people with none / with two or more", f"{c['none']:,} / {c['two_or_more']:,}",
         f"none: {c['held_for_contact']:,} held for a coordinator's choice of contested contacts; "
         f"two or more: {c['two_or_more_in_review']:,} kept apart by an open review pair, "
         f"{c['two_or_more'] - c['two_or_more_in_review']:,} split by the resolver"),
        ("notices covering more than one person", f"{c['spanning']:,}", "goal 0"),
        ("people with a record in review / unreachable", f"{c['in_review']:,} / {c['unreachable']:,}",
         f"{c['review_pairs']:,} open review pairs, kept apart (reviews never hold a release); "
         "unreachable: public notice list"),
        ("notified by email / SMS / post", " / ".join(f"{c['notified_by'][k]:,}" for k in ("email", "sms", "postal")),
         f"gateways received {c['gateway_messages']['email']:,} emails, {c['gateway_messages']['sms']:,} SMS"),
    ]
    if ref:
        rows += [
            ("Kafka's own tools, same messages", f"produce {ref['produce_per_s']:,} / consume "
             f"{ref['consume_per_s']:,} msg/s", f"{ref['messages']:,} × {ref['record_size']} B"),
            ("pipeline time ÷ Kafka reference", f"**{ref['pipeline_multiple']:,}×**",
             f"reference {ref['reference_s']:.1f} s = produce + consume once"),
        ]
    lines = ["| | measured | |", "|---|---|---|", *(f"| {a} | {b} | {x} |" for a, b, x in rows), "",
             "| process | CPU s | peak RSS MB | processes |", "|---|---|---|---|"]
    lines += [f"| {name} | {u['cpu_s']:,.0f} | {u['peak_rss_mb']:,.0f} | {u['processes']} |"
              for name, u in r["processes"].items()]
    m = r["machine"]
    lines += ["", f"Measured {r['measured_at']} on {m['cpus']} CPUs (load average "
              f"{m['load_avg_start'][0]:.1f} at the start, {m['load_avg_end'][0]:.1f} at the end); "
              f"workers {r['config']['workers']}, {r['config']['upload_clients']} agencies uploading at once."]
    return "\n".join(lines)


def update_docs(table: str, repo: Path) -> list[Path]:
    changed = []
    for path in (repo / "README.md", repo / "docs" / "benchmarks.md"):
        text = path.read_text()
        if MARK_START not in text:
            continue
        new = re.sub(f"{re.escape(MARK_START)}.*?{re.escape(MARK_END)}",
                     lambda _m: f"{MARK_START}\n{table}\n{MARK_END}", text, flags=re.S)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed
