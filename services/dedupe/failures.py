"""Per-incident failure isolation: an incident whose release or tick fails is retried with
exponential backoff while every other incident carries on (plain code, no I/O).

What failed is surfaced by the caller (a log line naming the incident and the exception's
type, never its message — a database error can quote values — and a metric); the incident's
identity state is dropped, so its retry starts from what the database holds.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class Failure:
    count: int
    retry_at: float  # on the monotonic clock
    kind: str  # the exception's type name: what ops see


class IncidentFailures:
    def __init__(self, first_delay_s: float = 1.0, max_delay_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.clock = clock
        self._failures: dict[str, Failure] = {}

    def failed(self, incident_id: str, exc: BaseException) -> Failure:
        previous = self._failures.get(incident_id)
        count = previous.count + 1 if previous else 1
        delay = min(self.first_delay_s * 2 ** (count - 1), self.max_delay_s)
        failure = self._failures[incident_id] = Failure(count, self.clock() + delay,
                                                        type(exc).__name__)
        return failure

    def succeeded(self, incident_id: str) -> None:
        self._failures.pop(incident_id, None)

    def waiting(self, incident_id: str) -> bool:
        """True while the incident waits for its next try."""
        failure = self._failures.get(incident_id)
        return failure is not None and self.clock() < failure.retry_at

    def failing(self) -> dict[str, Failure]:
        return dict(self._failures)

    def forget(self, incident_ids) -> None:  # noqa: ANN001 - any iterable of ids
        for incident_id in incident_ids:
            self._failures.pop(incident_id, None)
