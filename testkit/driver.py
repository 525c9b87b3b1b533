"""Runs a ground-truth breach through intake's public API as the coordinator and agencies
would: create each incident with its agencies, upload every agency's feed in chunks (each with
an Idempotency-Key, retried until acknowledged — so a request lost to a killed intake is sent
again and stored once), then mark each agency complete.

Uploads go to whichever intake URLs are given (several replicas: round robin, the next one on
failure). A 202 is what counts: the receipts are kept, and `unacknowledged` lists chunks that
were never acknowledged before the deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from services.common.batching import chunks
from testkit.factories import INCIDENT_CONTENT
from testkit.groundtruth import GroundTruth

RETRYABLE = {429, 500, 502, 503, 504}


@dataclass
class IncidentDriver:
    truth: GroundTruth
    intake_urls: Callable[[], list[str]]  # asked again at each attempt (replicas come and go)
    coordinator_token: str
    chunk_records: int = 500
    retry_deadline_s: float = 180.0
    release_policy: dict = field(default_factory=lambda: {"settle_window_seconds": 0})
    pace_s: float = 0.0  # pause after each chunk: a stream that lasts, for faults to land in
    keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (incident, agency) -> key
    receipts: dict[str, dict] = field(default_factory=dict)  # idempotency key -> receipt
    attempts: int = 0
    failed_attempts: int = 0
    _next: int = 0

    def _url(self) -> str:
        urls = self.intake_urls()
        self._next += 1
        return urls[self._next % len(urls)]

    async def _request(self, method: str, path: str, *, token: str, what: str,
                       **kwargs) -> httpx.Response:
        """Send until a non-retryable answer; transport errors and 5xx are retried."""
        deadline = time.monotonic() + self.retry_deadline_s
        delay = 0.1
        headers = {"authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        while True:
            self.attempts += 1
            try:
                async with httpx.AsyncClient(base_url=self._url(), timeout=60) as client:
                    response = await client.request(method, path, headers=headers, **kwargs)
                if response.status_code not in RETRYABLE:
                    return response
            except httpx.TransportError:
                pass
            self.failed_attempts += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not acknowledged within {self.retry_deadline_s}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def create_incidents(self, channel_policy: dict | None = None) -> None:
        mode = {"mode": self.truth.mode}
        for incident in self.truth.incidents:
            body = {
                "incident_id": incident, "title": "Fault-suite breach", "content": INCIDENT_CONTENT,
                "release_policy": self.release_policy,
                "channel_policy": channel_policy or mode,
                "expected_agencies": [{"agency_id": a, "name": f"Agency {a}"} for a in self.truth.agencies],
            }
            r = await self._request("POST", "/v1/incidents", token=self.coordinator_token,
                                    what=f"create {incident}", json=body)
            if r.status_code == 409:  # made by an attempt whose answer was lost, keys and all
                for agency in self.truth.agencies:
                    k = await self._request("POST", f"/v1/agencies/{agency}/keys",
                                            token=self.coordinator_token, what=f"key {agency}")
                    assert k.status_code == 201, k.text
                    self.keys[(incident, agency)] = k.json()["api_key"]
                continue
            assert r.status_code == 201, r.text
            for issued in r.json()["issued_keys"]:
                self.keys[(incident, issued["agency_id"])] = issued["api_key"]

    async def upload(self, incident: str, agency: str, records: list[dict] | None = None,
                     tag: str = "") -> list[dict]:
        """One agency's feed in chunks, in order; returns the receipts."""
        records = self.truth.feeds[(incident, agency)] if records is None else records
        out = []
        for n, chunk in enumerate(chunks(records, self.chunk_records)):
            key = f"{incident}.{agency}.{tag}{n}"
            body = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in chunk)
            r = await self._request(
                "POST", f"/v1/incidents/{incident}/feeds", token=self.keys[(incident, agency)],
                what=f"feed {key}", content=body,
                headers={"content-type": "application/x-ndjson", "idempotency-key": key})
            assert r.status_code == 202, r.text
            self.receipts[key] = r.json()
            out.append(r.json())
            if self.pace_s:
                await asyncio.sleep(self.pace_s)
        return out

    async def upload_all(self, parallel: bool = True) -> None:
        """Every feed, agencies in parallel (each agency's chunks in order), or one by one."""
        if parallel:
            await asyncio.gather(*(self.upload(i, a) for i, a in self.truth.feeds))
        else:
            for incident, agency in self.truth.feeds:
                await self.upload(incident, agency)

    async def complete(self, incident: str, agency: str) -> dict:
        r = await self._request("POST", f"/v1/incidents/{incident}/completion",
                                token=self.keys[(incident, agency)], what=f"complete {agency}")
        assert r.status_code == 200, r.text
        return r.json()

    async def complete_all(self) -> list[dict]:
        return [await self.complete(i, a) for i, a in self.truth.feeds]

    async def withdraw(self, incident: str, agency: str, source_record_id: str) -> dict:
        r = await self._request("DELETE", f"/v1/incidents/{incident}/records/{source_record_id}",
                                token=self.keys[(incident, agency)], what=f"withdraw {source_record_id}")
        assert r.status_code == 200, r.text
        return r.json()

    async def run(self) -> None:
        """Create, upload everything, complete."""
        await self.create_incidents()
        await self.upload_all()
        await self.complete_all()

    def accepted(self) -> int:
        return sum(r["accepted"] for r in self.receipts.values())
