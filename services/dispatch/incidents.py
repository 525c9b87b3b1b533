"""The incidents dispatch knows, in memory: the sender renders every notice with its incident,
so looking it up must not cost a query per notice."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlmodel import Session

from services.common.messages import IncidentMessage
from services.dispatch.content.models import IncidentContent
from services.dispatch.store.incidents import load_incident, load_revision


@dataclass
class IncidentEntry:
    revision: int
    message: IncidentMessage
    _content: IncidentContent | None = None

    @property
    def content(self) -> IncidentContent:
        """The renderer's view, built once per revision."""
        if self._content is None:
            self._content = IncidentContent.from_contract(self.message)
        return self._content

    @property
    def policy(self) -> dict:
        return self.message.channel_policy.model_dump()


class IncidentBook:
    """A cache of dispatch_incident (latest revision wins), shared by the consumers, the sender
    and the API. The table is the truth: the cache learns every revision this process stores,
    and loads lazily the incidents another replica stored."""

    def __init__(self) -> None:
        self._entries: dict[str, IncidentEntry] = {}
        self._revisions: dict[tuple[str, int], IncidentEntry] = {}  # older ones sends pinned
        self._lock = threading.Lock()  # consumers and sender threads remember concurrently

    def remember(self, message: IncidentMessage) -> None:
        with self._lock:
            current = self._entries.get(message.incident_id)
            if current is None or current.revision < message.revision:
                self._entries[message.incident_id] = IncidentEntry(message.revision, message)

    def cached(self, incident_id: str) -> IncidentEntry | None:
        return self._entries.get(incident_id)

    def get(self, session: Session, incident_id: str) -> IncidentEntry | None:
        """The cached entry, else the stored incident (remembered), else None."""
        entry = self._entries.get(incident_id)
        if entry is not None:
            return entry
        message = load_incident(session, incident_id)
        if message is None:
            return None
        self.remember(message)
        return self._entries.get(incident_id)

    def cached_revision(self, incident_id: str, revision: int | None) -> IncidentEntry | None:
        """The entry of that revision if known here (None: the latest)."""
        latest = self._entries.get(incident_id)
        if revision is None or (latest is not None and latest.revision == revision):
            return latest
        return self._revisions.get((incident_id, revision))

    def revision(self, session: Session, incident_id: str, revision: int | None) -> IncidentEntry | None:
        """The incident as it was at `revision` (a retried send renders with the revision its
        first attempt used), loaded once; the latest when `revision` is None or not kept."""
        entry = self.cached_revision(incident_id, revision)
        if entry is not None:
            return entry
        message = load_revision(session, incident_id, revision) if revision is not None else None
        if message is None:
            return self.get(session, incident_id)
        entry = IncidentEntry(message.revision, message)
        with self._lock:
            self._revisions[(incident_id, message.revision)] = entry
        return entry
