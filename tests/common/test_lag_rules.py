"""The lag status rules on synthetic sample sequences (no Kafka)."""

from datetime import UTC, datetime, timedelta

import pytest

from services.common.lag.rules import (
    GroupHistory,
    GroupSample,
    LagRules,
    PartitionSample,
    Status,
    worst,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RULES = LagRules(window=4, stop_after=timedelta(minutes=5))
STEP = timedelta(seconds=30)


def sample(i: int, *partitions: tuple[int, int | None], members: int = 1, known: bool = True,
           start: int = 0, at: datetime | None = None) -> GroupSample:
    """Sample number i (30 s apart); each partition given as (log end, committed)."""
    rows = tuple(PartitionSample("t", n, start, end, committed) for n, (end, committed) in enumerate(partitions))
    return GroupSample("g", at or T0 + i * STEP, known, "Stable" if members else "Empty", members, rows)


def run(*samples: GroupSample, rules: LagRules = RULES):  # noqa: ANN201
    history = GroupHistory(rules)
    status = None
    for s in samples:
        status = history.add(s)
    return status


def test_lag_is_end_minus_committed_and_counts_from_log_start_without_a_commit():
    p = PartitionSample("t", 0, log_start=5, log_end=12, committed=9)
    assert (p.lag, p.position, p.no_commit) == (3, 9, False)
    fresh = PartitionSample("t", 1, log_start=5, log_end=12, committed=None)
    assert (fresh.lag, fresh.position, fresh.no_commit) == (7, 5, True)
    recreated = PartitionSample("t", 2, log_start=0, log_end=3, committed=40)
    assert recreated.lag == 0  # committed past the log end (topic recreated): clamped


def test_caught_up_is_ok_even_when_the_committed_offset_never_moves():
    status = run(*(sample(i, (10, 10)) for i in range(10)))
    assert status.status is Status.OK
    assert status.partitions[0].stuck_since is None


def test_moving_consumer_with_shrinking_lag_is_ok():
    status = run(sample(0, (100, 10)), sample(1, (110, 40)), sample(2, (120, 80)), sample(3, (130, 125)))
    assert status.status is Status.OK
    assert status.complete == 1.0


def test_lag_growing_over_the_whole_window_is_warn():
    status = run(sample(0, (100, 90)), sample(1, (120, 95)), sample(2, (140, 100)), sample(3, (160, 105)))
    assert status.status is Status.WARN
    assert status.partitions[0].status is Status.WARN
    assert "grew" in status.reason


def test_one_dip_in_lag_is_not_warn():
    status = run(sample(0, (100, 90)), sample(1, (120, 95)), sample(2, (125, 120)), sample(3, (160, 125)))
    assert status.status is Status.OK


def test_flat_lag_with_a_moving_consumer_is_not_warn():
    status = run(*(sample(i, (100 + 10 * i, 90 + 10 * i)) for i in range(4)))
    assert status.status is Status.OK


def test_nothing_but_ok_is_judged_before_the_window_is_full():
    status = run(sample(0, (100, 90)), sample(1, (120, 90)), sample(2, (140, 90)))
    assert status.status is Status.OK
    assert status.complete == pytest.approx(0.75)


def test_committed_offset_frozen_with_lag_over_the_window_is_stall():
    status = run(*(sample(i, (50, 20)) for i in range(4)))
    assert status.status is Status.STALL
    assert status.partitions[0].stuck_since == T0
    assert "unchanged" in status.reason


def test_stall_needs_lag_in_every_sample_of_the_window():
    # Caught up at first, then records arrive and the consumer does not move: the frozen run
    # starts when lag appears, so the window is not all-stuck yet — but lag grew: WARN.
    status = run(sample(0, (20, 20)), sample(1, (30, 20)), sample(2, (40, 20)), sample(3, (50, 20)))
    assert status.status is Status.WARN
    assert status.partitions[0].stuck_since == T0 + STEP


def test_no_commits_for_longer_than_stop_after_is_stop():
    samples = [sample(i, (50, 20)) for i in range(3)]
    samples.append(sample(3, (50, 20), at=T0 + RULES.stop_after))
    status = run(*samples)
    assert status.status is Status.STOP
    assert "no commit for at least 5 min" in status.reason


def test_stop_is_judged_even_before_the_window_is_full():
    status = run(sample(0, (50, 20)), sample(1, (50, 20), at=T0 + RULES.stop_after))
    assert status.status is Status.STOP


def test_just_under_stop_after_is_still_stall():
    samples = [sample(i, (50, 20)) for i in range(3)]
    samples.append(sample(3, (50, 20), at=T0 + RULES.stop_after - timedelta(seconds=1)))
    assert run(*samples).status is Status.STALL


def test_a_commit_ends_the_frozen_run():
    samples = [sample(i, (50, 20)) for i in range(3)]
    samples.append(sample(3, (50, 21), at=T0 + RULES.stop_after))
    status = run(*samples)
    assert status.status is Status.OK
    assert status.partitions[0].stuck_since == T0 + RULES.stop_after


def test_partition_never_committed_with_records_waiting_stops_like_any_other():
    status = run(sample(0, (8, None)), sample(1, (8, None), at=T0 + RULES.stop_after))
    assert status.status is Status.STOP
    assert status.partitions[0].current.no_commit
    assert status.total_lag == 8


def test_expected_group_unknown_to_the_broker_is_err_even_without_lag():
    status = run(sample(0, (0, None), members=0, known=False))
    assert status.status is Status.ERR
    assert "does not know" in status.reason


def test_group_without_members_while_records_wait_is_err():
    status = run(sample(0, (10, 4), members=0))
    assert status.status is Status.ERR
    assert "6 records wait" in status.reason


def test_group_without_members_and_no_lag_is_ok():
    assert run(sample(0, (10, 10), members=0)).status is Status.OK


def test_group_status_is_the_worst_partition_and_totals_add_up():
    # partition 0 stalls, partition 1 is fine, partition 2 lags more but moves.
    samples = [sample(i, (50, 20), (10, 10), (200 + 40 * i, 100 + 30 * i)) for i in range(4)]
    status = run(*samples)
    assert [p.status for p in status.partitions] == [Status.STALL, Status.OK, Status.WARN]
    assert status.status is Status.STALL
    assert status.total_lag == 30 + 0 + (320 - 190)
    assert status.max_lag.current.partition == 2
    assert "1 partition" in status.reason


def test_window_start_and_end_points_follow_burrow():
    status = run(*(sample(i, (100 + i, 90 + 2 * i)) for i in range(6)))
    p = status.partitions[0]
    assert (p.start.offset, p.start.at, p.start.lag) == (94, T0 + 2 * STEP, 8)  # the window is the last 4
    assert (p.end.offset, p.end.at, p.end.lag) == (100, T0 + 5 * STEP, 5)


def test_severity_order():
    assert worst([Status.OK, Status.WARN]) is Status.WARN
    assert worst([Status.STOP, Status.STALL, Status.WARN]) is Status.STOP
    assert worst([Status.STOP, Status.ERR]) is Status.ERR
    assert worst([]) is Status.OK


def test_rules_reject_a_window_that_cannot_show_a_trend():
    with pytest.raises(ValueError):
        LagRules(window=1)
    with pytest.raises(ValueError):
        LagRules(stop_after=timedelta(0))
