"""Stream time as plain code: batches judged by their messages' time, ticks by the wall clock
only when caught up."""

from datetime import UTC, datetime, timedelta

from services.dedupe.streamtime import StreamClock

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
WALL = T0 + timedelta(hours=5)


def test_a_batch_is_judged_by_its_newest_message_and_time_never_goes_back():
    clock = StreamClock(lambda: WALL)
    assert clock.for_batch(0, [T0, T0 + timedelta(seconds=5)]) == T0 + timedelta(seconds=5)
    assert clock.for_tick(0, caught_up=False) is None  # nothing committed yet
    clock.applied(0, T0 + timedelta(seconds=5))
    assert clock.for_batch(0, [T0]) == T0 + timedelta(seconds=5)  # an older, replayed message
    assert clock.for_batch(1, []) == WALL  # nothing known: a batch of nothing


def test_a_tick_is_judged_by_the_wall_clock_only_when_caught_up():
    clock = StreamClock(lambda: WALL)
    clock.applied(0, T0)
    assert clock.for_tick(0, caught_up=False) == T0  # lagging: the stream's time
    assert clock.for_tick(0, caught_up=True) == WALL
    assert clock.for_tick(1, caught_up=True) == WALL
    clock.applied(2, WALL + timedelta(minutes=1))  # intake's clock a little ahead
    assert clock.for_tick(2, caught_up=True) == WALL + timedelta(minutes=1)
    clock.forget([0])
    assert clock.for_tick(0, caught_up=False) is None
