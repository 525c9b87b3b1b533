"""Stream time: the clock dedupe's release decisions are judged by (plain code, no I/O).

Deadlines and settle windows are judged by the time of the messages, not by dedupe's own
clock, so a consumer that lags (started late, behind a backlog, replaying) decides what a
consumer keeping up would have decided: records accepted before a hold deadline are all in
the release, however late they are applied.

* A partition's stream time is the newest message time applied from it (each message's own
  time: a record's `received_at`, a withdrawal's `withdrawn_at`, a completion's
  `completed_at` — set by intake, unchanged by a replay or an outbox republish). It only
  moves forward, and only once the batch carrying it has committed.
* A batch is judged at the newest of the stream time and its own messages' times.
* A tick is judged at the wall clock only when the partition is caught up (its position is
  at the end of the log: nothing older is waiting), and then at the later of the two; while
  it lags, at its stream time; when its stream time is not known yet (nothing applied since
  this instance got the partition, and not caught up), it is not judged at all — the next
  poll brings messages or shows it caught up.
"""

from collections.abc import Iterable
from datetime import datetime

from services.common.clock import Clock, utcnow


class StreamClock:
    def __init__(self, wall: Clock = utcnow):
        self.wall = wall
        self._time: dict[int, datetime] = {}

    def for_batch(self, partition: int, message_times: Iterable[datetime]) -> datetime:
        """The time a batch is judged at: its newest message, never earlier than before."""
        known = [t for t in (self._time.get(partition), *message_times) if t is not None]
        return max(known) if known else self.wall()

    def applied(self, partition: int, at: datetime) -> None:
        """A batch judged at `at` has committed."""
        if partition not in self._time or at > self._time[partition]:
            self._time[partition] = at

    def for_tick(self, partition: int, caught_up: bool) -> datetime | None:
        """The time a tick is judged at, or None while it cannot be known."""
        stream = self._time.get(partition)
        if caught_up:
            wall = self.wall()
            return wall if stream is None or wall > stream else stream
        return stream

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions no longer owned: a new owner starts from its own messages."""
        for partition in partitions:
            self._time.pop(partition, None)
