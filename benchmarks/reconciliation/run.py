"""Agency reconciliation at scale (issue 16): each service's part, and `panui feed status`, for
one agency of an incident with `--records` records per agency (two agencies), synthetic only.

    .venv/bin/python -m benchmarks.reconciliation.run [--records 100000] [--quick] [--page-size 5000]

The three services run for real (PostgreSQL, the local broker, uvicorn over HTTP, in this
process's threads); the incident and its keys are made through intake's API. The rows behind
the reconciliation are then written straight into each service's migrated tables (COPY) in the
shapes the services write them — what a 100k-record incident leaves after its feeds, its
resolution and its deliveries — because pushing 200k records through the whole pipeline takes
far longer than the download being measured. Per agency: 1% rejected only (problem rows), 10%
sent twice (version 2), 1% withdrawn, 0.5% held, 1% in review, 2% pending, the rest notified
(email, 10% email+SMS, 1% unreachable); 20% of A's records share a person with one of B's.

Reported: each part's wall time and pages, paged as the CLI pages it, and the whole CLI
(a subprocess writing status.csv) with its peak RSS. Speed goals live here, never in tests.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import psycopg

from benchmarks import support
from services.common.crypto import generate_key_spec
from testkit.factories import incident_body
from testkit.infra import kafka_bootstrap
from testkit.serving import serve_in_thread
from testkit.staff import SIGNING_KEY

TOKEN = "bench-coordinator-token"  # noqa: S105 - local benchmark only
INCIDENT = "inc-recon-bench"
A, B = "gp-bench-a", "lab-bench-b"
SEALED = "v1." + "x" * 600  # the size of a sealed record; never opened by reconciliation


def _h(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


def _sid(agency: str, i: int) -> str:
    return f"{agency[0]}-{i:08d}"


def _fate(i: int) -> str:
    """What became of record i (same for both agencies)."""
    r = i % 200
    if r < 2:
        return "rejected"
    if r < 4:
        return "withdrawn"
    if r < 5:
        return "held"
    if r < 7:
        return "in_review"
    if r < 11:
        return "pending"
    return "notified"


def seed(urls: dict[str, str], n: int) -> None:
    now = datetime.now(UTC)
    started = time.perf_counter()
    rows: dict[str, list[tuple]] = {t: [] for t in (
        "feed", "feed_problem", "affected_record", "record_state", "person_state",
        "notice_state", "review_state", "dispatch_notice", "dispatch_notice_agency", "delivery")}
    for agency in (A, B):
        rows["feed"].append((f"feed-{agency}", INCIDENT, agency, "ndjson", n, n, 0, n // 100, 0, now))
    person_of: dict[tuple[str, int], str] = {}
    for i in range(n):
        shared = i % 5 == 0  # A's record i and B's record i are the same person
        for agency in (A, B):
            person_of[(agency, i)] = _h("p", i) if shared else _h("p", agency, i)
    line = 0
    for agency in (A, B):
        feed = f"feed-{agency}"
        for i in range(n):
            sid, fate = _sid(agency, i), _fate(i)
            line += 1
            if fate == "rejected":
                rows["feed_problem"].append((feed, line, sid, "nhi", "error", "nhi.checksum",
                                             "The NHI's check character is wrong."))
                continue
            if i % 37 == 0:
                rows["feed_problem"].append((feed, line, sid, "mobile", "warning", "mobile.format",
                                             "The mobile number was ignored."))
            versions = 2 if i % 10 == 0 else 1
            for v in range(1, versions + 1):
                rows["affected_record"].append((INCIDENT, agency, sid, v, _h("f", sid, v), SEALED,
                                                feed, now, now if fate == "withdrawn" else None))
            person = person_of[(agency, i)]
            told = person if fate == "notified" else None
            rows["record_state"].append((INCIDENT, agency, sid, versions, _h("m", sid), SEALED,
                                         '["clinical_notes"]', 2, "en", fate == "held",
                                         fate == "withdrawn", person, told, versions if told else 0,
                                         now))
    persons = {person_of[k]: _fate(k[1]) for k in person_of if _fate(k[1]) != "rejected"}
    for person, fate in persons.items():
        status = {"held": "held", "notified": "notified"}.get(fate, "pending")
        rows["person_state"].append((INCIDENT, person, status, now, now, False,
                                     person if fate == "notified" else None,
                                     1 if fate == "notified" else 0, "[]", "[]"))
        if fate != "notified":
            continue
        notice_id = _h("n", person)
        rows["notice_state"].append((notice_id, INCIDENT, person, 1, "[]", '["clinical_notes"]', now))
    # Agencies of each notified person (both when shared), and the notice dispatch holds.
    agencies_of: dict[str, list[str]] = {}
    for (agency, _i), person in person_of.items():
        agencies_of.setdefault(person, []).append(agency)
    rows["notice_state"] = [(nid, inc, p, v, orjson.dumps(sorted(set(agencies_of[p]))).decode(), c, t)
                            for nid, inc, p, v, _a, c, t in rows["notice_state"]]
    for k, (notice_id, _inc, person, *_rest) in enumerate(rows["notice_state"]):
        agencies = sorted(set(agencies_of[person]))
        payload = orjson.dumps({
            "type": "notice", "notice_id": notice_id, "incident_id": INCIDENT, "person_id": person,
            "version": 1, "created_at": now.isoformat(), "preferred_language": "en",
            "channels": ["email", "sms"] if k % 10 == 0 else ["email"], "has_representative": False,
            "agencies": [{"agency_id": a, "name": f"Agency {a}", "data_categories": ["clinical_notes"],
                          "document_count": 2} for a in agencies],
            "sealed": "v1." + "s" * 700, "reference_code": None,
            "dob_checks": ["d" * 43]})
        reference = f"PAN-{notice_id[:4]}-{notice_id[4:8]}-{notice_id[8:12]}".upper()
        rows["dispatch_notice"].append((notice_id, INCIDENT, person, 1, True, payload, now,
                                        reference, "k1", '["' + "d" * 43 + '"]'))
        rows["dispatch_notice_agency"] += [(INCIDENT, a, notice_id) for a in agencies]
        channels = ["none"] if k % 100 == 0 else (["email", "sms"] if k % 10 == 0 else ["email"])
        for channel in channels:
            status = "unreachable" if channel == "none" else ("delivered" if k % 3 else "sent")
            rows["delivery"].append((notice_id, INCIDENT, person, 1, channel, status, 1,
                                     f"{notice_id}:{channel}", 0, 0.0, False, now, now))
    for i in range(0, n, 200):  # the in-review ones: an open pair with B's record
        for j in (5, 6):
            rows["review_state"].append((_h("r", i + j), INCIDENT, A, _sid(A, i + j), B,
                                         _sid(B, i + j), "pair", "uncertain", "{}", "open", True, now))
    columns = {
        "feed": "feed_id, incident_id, agency_id, format, received, accepted, unchanged, rejected, "
                "warnings, created_at",
        "feed_problem": "feed_id, line, source_record_id, field, severity, code, message",
        "affected_record": "incident_id, agency_id, source_record_id, version, fingerprint, sealed, "
                           "feed_id, received_at, withdrawn_at",
        "record_state": "incident_id, agency_id, source_record_id, record_version, message_id, sealed, "
                        "data_categories, document_count, preferred_language, on_hold, withdrawn, "
                        "person_id, told_lineage, told_version, updated_at",
        "person_state": "incident_id, person_id, status, first_seen_at, changed_at, dirty, "
                        "notice_person_id, notified_version, notified_agency_ids, notified_categories",
        "notice_state": "notice_id, incident_id, person_id, version, agency_ids, data_categories, "
                        "created_at",
        "review_state": "review_id, incident_id, a_agency_id, a_source_record_id, b_agency_id, "
                        "b_source_record_id, kind, reason, evidence, status, applied, updated_at",
        "dispatch_notice": "notice_id, incident_id, person_id, version, planned, payload, created_at, "
                           "reference_code, check_key_id, dob_checks",
        "dispatch_notice_agency": "incident_id, agency_id, notice_id",
        "delivery": "notice_id, incident_id, person_id, notice_version, channel, status, attempts, "
                    "reference, generation, next_attempt_at, may_hold, created_at, updated_at",
    }
    where = {"feed": "intake", "feed_problem": "intake", "affected_record": "intake",
             "record_state": "dedupe", "person_state": "dedupe", "notice_state": "dedupe",
             "review_state": "dedupe", "dispatch_notice": "dispatch",
             "dispatch_notice_agency": "dispatch", "delivery": "dispatch"}
    for table, data in rows.items():
        with psycopg.connect(urls[where[table]]) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY {table} ({columns[table]}) FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
            cur.execute(f"ANALYZE {table}")
    print(f"seeded {sum(map(len, rows.values()))} rows in {time.perf_counter() - started:.0f} s: "
          + ", ".join(f"{t} {len(d)}" for t, d in rows.items()), flush=True)


def _pages(client: httpx.Client, url: str, token: str, key: str, page_size: int) -> tuple[int, int]:
    after, pages, items = "", 0, 0
    while True:
        page = client.get(url, params={"after": after, "limit": page_size},
                          headers={"authorization": f"Bearer {token}"})
        page.raise_for_status()
        body = page.json()
        pages, items = pages + 1, items + len(body[key])
        if body["next_after"] is None:
            return pages, items
        after = body["next_after"]


def measure(urls: dict[str, str], base: dict[str, str], key: str, page_size: int) -> list[list]:
    out = []
    with httpx.Client(timeout=600) as client:
        ticket = client.post(f"{base['intake']}/v1/incidents/{INCIDENT}/status-ticket",
                             headers={"authorization": f"Bearer {key}"})
        ticket.raise_for_status()
        token = ticket.json()["ticket"]
        path = f"/v1/incidents/{INCIDENT}"
        for service, route, credential, items in (
                ("intake", "reconciliation/records", key, "records"),
                ("dedupe", "reconciliation/records", token, "records"),
                ("dispatch", "reconciliation/notices", token, "notices")):
            started = time.perf_counter()
            pages, n = _pages(client, f"{base[service]}{path}/{route}", credential, items, page_size)
            took = time.perf_counter() - started
            out.append([f"{service} GET {route}", pages, n, f"{took:.1f}"])
            print(out[-1], flush=True)
        # Dispatch as the streaming CLI asks it: the notices each page of dedupe's part names.
        lookups, pages, found, after = 0.0, 0, 0, ""
        while True:
            page = client.get(f"{base['dedupe']}{path}/reconciliation/records",
                              params={"after": after, "limit": page_size},
                              headers={"authorization": f"Bearer {token}"}).json()
            ids = [r["notice_id"] for r in page["records"] if r["notice_id"]]
            t = time.perf_counter()
            looked = client.post(f"{base['dispatch']}{path}/reconciliation/notices/lookup",
                                 json={"notice_ids": ids}, headers={"authorization": f"Bearer {token}"})
            looked.raise_for_status()
            lookups += time.perf_counter() - t  # only the lookups' own time counts
            pages, found = pages + 1, found + len(looked.json()["notices"])
            if page["next_after"] is None:
                break
            after = page["next_after"]
        out.append(["dispatch POST reconciliation/notices/lookup", pages, found, f"{lookups:.1f}"])
        print(out[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "status.csv"
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "feed", "status", "--incident", INCIDENT,
             "--out", str(csv_path), "--url", base["intake"], "--dedupe-url", base["dedupe"],
             "--dispatch-url", base["dispatch"], "--page-size", str(page_size)],
            env={**os.environ, "PANUI_API_KEY": key}, cwd=support.REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, support.peak_rss_mb(proc.pid) or 0.0)
            time.sleep(0.2)
        stdout, stderr = proc.communicate()
        took = time.perf_counter() - started
        if proc.returncode:
            raise SystemExit(f"panui feed status failed ({proc.returncode}): {stderr.decode()[-2000:]}")
        lines = csv_path.read_text(encoding="utf-8").count("\n") - 1
        out.append(["panui feed status (whole CLI)", "", lines, f"{took:.1f}", f"{peak:.0f} MB peak RSS"])
        print(out[-1], stderr.decode().strip()[-300:], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reconciliation.run")
    parser.add_argument("--records", type=int, default=100_000, help="records per agency")
    parser.add_argument("--quick", action="store_true", help="10k records per agency")
    parser.add_argument("--page-size", type=int, default=5000)
    args = parser.parse_args(argv)
    n = 10_000 if args.quick else args.records
    from services.dedupe.app import create_app as create_dedupe
    from services.dedupe.settings import DedupeSettings
    from services.dispatch.app import create_app as create_dispatch
    from services.dispatch.settings import DispatchSettings
    from services.intake.app import create_app as create_intake
    from services.intake.settings import IntakeSettings

    prefix = support.topic_prefix("recon")
    dbs = {s: support.create_database("bench_recon", s) for s in ("intake", "dedupe", "dispatch")}
    urls = {s: url for s, (_name, url) in dbs.items()}
    env = {"kafka_bootstrap_servers": kafka_bootstrap(), "topic_prefix": prefix,
           "data_keys": generate_key_spec("bench-recon-1"), "coordinator_tokens": TOKEN,
           "token_signing_key": SIGNING_KEY}
    apps = {"intake": create_intake(IntakeSettings(**env, database_url=urls["intake"])),
            "dedupe": create_dedupe(DedupeSettings(**env, database_url=urls["dedupe"])),
            "dispatch": create_dispatch(DispatchSettings(**env, database_url=urls["dispatch"],
                                                         receipt_callback_base_url=""))}
    ports = {s: support.free_port() for s in apps}
    base = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    try:
        with serve_in_thread(apps["intake"], ports["intake"], "intake"), \
                serve_in_thread(apps["dedupe"], ports["dedupe"], "dedupe"), \
                serve_in_thread(apps["dispatch"], ports["dispatch"], "dispatch"):
            created = httpx.post(f"{base['intake']}/v1/incidents", timeout=60,
                                 headers={"authorization": f"Bearer {TOKEN}"},
                                 json=incident_body(INCIDENT, [(A, "Bench A"), (B, "Bench B")]))
            created.raise_for_status()
            keys = {k["agency_id"]: k["api_key"] for k in created.json()["issued_keys"]}
            seed(urls, n)
            rows = measure(urls, base, keys[A], args.page_size)
            print(f"\nagency reconciliation, {n} records per agency (two agencies), "
                  f"page size {args.page_size}, load {os.getloadavg()[0]:.1f}")
            print(support.table(["part", "pages", "rows", "seconds", ""],
                                [r + [""] * (5 - len(r)) for r in rows]))
    finally:
        for name, _url in dbs.values():
            support.drop_database(name)
        support.delete_topics(prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
