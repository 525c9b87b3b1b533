"""What the coordinator and the agencies do in a run, through intake's API only: create the
incident, enrol each agency (one API key each), upload each agency's feed in the CLI's
resumable chunks (services/cli/feeds.py: the same chunking, idempotency keys and retries as
`panui feed submit`), and mark each contribution complete."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.incident.scenario import Agency
from services.cli.feeds import Uploader, iter_chunks

CONTENT = {
    "sender_name": "Pānui Breach Coordination Office",
    "breach_description": ("An unauthorised party accessed documents stored in a patient portal "
                           "used by general practices, laboratories and a hospital."),
    "suspected_holder_statement": "We have identified a group we suspect holds the information.",
    "steps_taken": ("The portal was taken offline, every account was reset, and the police and "
                    "the Privacy Commissioner were told."),
    "mitigation_advice": ["Be wary of messages or calls that mention your health information.",
                          "No one from your practice will ask for a password or payment."],
    "privacy_commissioner_notified": True,
    "contact": {"organisation": "Portal Breach Line", "phone": "0800 000 000",
                "web_address": "breach.example.nz", "hours": "8am-8pm every day"},
}


def create_incident(intake: str, token: str, incident_id: str, agencies: list[Agency]) -> dict[str, str]:
    """Create the incident (default release policy: notices go out once every expected agency is
    complete) and enrol every agency as expected; the API key of each agency."""
    auth = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=intake, headers=auth, timeout=60) as client:
        created = client.post("/v1/incidents", json={
            "incident_id": incident_id, "title": "Patient portal breach", "content": CONTENT})
        created.raise_for_status()
        keys = {}
        for agency in agencies:
            issued = client.post(f"/v1/incidents/{incident_id}/agencies",
                                 json={"agency_id": agency.agency_id, "name": agency.name})
            issued.raise_for_status()
            keys[agency.agency_id] = issued.json()["api_key"]
    return keys


def complete(intake: str, api_key: str, incident_id: str) -> dict:
    response = httpx.post(f"{intake}/v1/incidents/{incident_id}/completion", timeout=60,
                          headers={"authorization": f"Bearer {api_key}"})
    response.raise_for_status()
    return response.json()


@dataclass
class Uploaded:
    agency_id: str
    accepted: int
    rejected: int
    started: float  # time.time()
    finished: float  # the last chunk's 202
    completed: float  # the completion's answer


def submit_feed(intake: str, api_key: str, incident_id: str, path: Path,
                chunk_records: int = 10_000, stop: threading.Event | None = None) -> tuple[int, int]:
    """Upload one feed file as `panui feed submit` does (chunks, idempotency keys, retries):
    (accepted, rejected). Once `stop` is set, no further chunk is sent."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    accepted = rejected = 0
    headers = {"authorization": f"Bearer {api_key}", "user-agent": "panui-bench"}
    with httpx.Client(base_url=intake, headers=headers, timeout=httpx.Timeout(600, connect=10)) as client:
        uploader = Uploader(client, incident_id)
        for chunk in iter_chunks(path, "ndjson", chunk_records):
            if stop is not None and stop.is_set():
                raise Stopped(path.name)
            receipt = uploader.send(chunk, "ndjson", f"panui-{sha[:40]}-{chunk_records}-{chunk.index}")
            accepted += receipt["accepted"]
            rejected += receipt["rejected"]
    return accepted, rejected


class Stopped(RuntimeError):
    """The run was stopped while this feed was uploading."""


def upload_order(feeds: dict[str, Path]) -> list[str]:
    """The agencies in the order they upload: largest feed first."""
    return sorted(feeds, key=lambda a: -feeds[a].stat().st_size)


def upload_all(intake: str, keys: dict[str, str], incident_id: str, feeds: dict[str, Path],
               clients: int, on_done: Callable[[Uploaded], None] | None = None,
               stop: threading.Event | None = None) -> list[Uploaded]:
    """Every agency uploads its feed and then marks itself complete; `clients` agencies at a
    time, largest feed first (each agency's own chunks go one after another, as the CLI's do).
    Setting `stop` ends the uploads after the chunks in flight (a stopped run must not wait for
    the rest: the pool's threads are joined at exit)."""
    order = upload_order(feeds)
    lock = threading.Lock()
    done: list[Uploaded] = []

    def one(agency_id: str) -> None:
        started = time.time()
        if stop is not None and stop.is_set():
            raise Stopped(agency_id)
        accepted, rejected = submit_feed(intake, keys[agency_id], incident_id, feeds[agency_id],
                                         stop=stop)
        finished = time.time()
        complete(intake, keys[agency_id], incident_id)
        result = Uploaded(agency_id, accepted, rejected, started, finished, time.time())
        with lock:
            done.append(result)
            if on_done:
                on_done(result)

    with ThreadPoolExecutor(clients, thread_name_prefix="agency") as pool:
        for future in [pool.submit(one, a) for a in order]:
            future.result()  # an upload that failed fails the run
    return done
