"""The whole incident's shape for dedupe's own benchmarks: the portal breach's records
(benchmarks/incident/scenario.py: 50 agencies, 3.17 records per person) in the order the
incident run's uploads put them on affected-records.v1 — `clients` agencies uploading at
once, largest feed first, their chunks interleaved, each agency's completion after its last
record — instead of the NZ generator's feeds one after another."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from benchmarks.incident import scenario
from services.common.crypto import Sealer
from testkit.messages import completion, record_message

VAR = Path(__file__).resolve().parents[2] / "var"
PERSONAL = ("nhi", "given_names", "family_name", "date_of_birth", "email", "mobile", "address")


def incident_messages(sealer: Sealer, incident_id: str, records: int, seed: int = 7,
                      clients: int = 4, chunk: int = 1000) -> tuple[list, list[str], int]:
    """(messages in arrival order, agency ids, true persons) for `records` records."""
    built = scenario.build(scenario.BREACH, records, seed, VAR / "incidents")
    feeds = {a.agency_id: built.feed_path(a.agency_id) for a in built.agencies
             if built.counts.get(a.agency_id)}
    order = sorted(feeds, key=lambda a: -built.counts[a])  # largest first, as flow.py
    messages = list(_interleaved(sealer, incident_id, order, feeds, clients, chunk))
    return messages, order, built.persons


def _feed(sealer: Sealer, incident_id: str, agency_id: str, path: Path) -> Iterator:
    count = 0
    with path.open() as lines:
        for line in lines:
            row = json.loads(line)
            count += 1
            yield record_message(sealer, incident_id, agency_id, row["source_record_id"],
                                 categories=tuple(row["data_categories"]),
                                 documents=row.get("document_count", 1), hold=row.get("hold"),
                                 **{k: row.get(k) for k in PERSONAL})
    yield completion(incident_id, agency_id, count)


def _interleaved(sealer: Sealer, incident_id: str, order: list[str], feeds: dict[str, Path],
                 clients: int, chunk: int) -> Iterator:
    """Round robin over `clients` feeds at a time, `chunk` messages from each in turn; a
    finished feed's place goes to the next agency in line."""
    waiting = list(order)
    active = [_feed(sealer, incident_id, a, feeds[a]) for a in waiting[:clients]]
    waiting = waiting[clients:]
    while active:
        for feed in list(active):
            for _ in range(chunk):
                message = next(feed, None)
                if message is None:
                    active.remove(feed)
                    if waiting:
                        agency_id = waiting.pop(0)
                        active.append(_feed(sealer, incident_id, agency_id, feeds[agency_id]))
                    break
                yield message
