import asyncio
import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.common.messages import DeliveryStatus
from services.common.ratelimit import TokenBucket
from services.dispatch.policy import (
    Channel,
    Outcome,
    QuietHours,
    RetryPolicy,
    choose_channels,
    fallback_channel,
    first_attempt_at,
    first_channels,
    next_channel_after_permanent_failure,
    retry_or_give_up,
    sendable_channels,
    sms_full_notice_via,
)

from .conftest import make_notice

NZ = ZoneInfo("Pacific/Auckland")


def _notice(email=True, mobile=True, address=True, **kw):
    n = make_notice(**kw)
    r = n["recipient"]
    if not email:
        r["email"] = None
    if not mobile:
        r["mobile"] = None
    if not address:
        r["address"] = None
    return n


# ------------------------------------------------------------------ channels


def test_email_else_sms():
    plan = choose_channels(_notice(), {"mode": "email_else_sms"})
    assert plan.outcome is Outcome.SEND
    assert plan.send_now == (Channel.EMAIL,)
    assert plan.fallback == (Channel.SMS, Channel.POSTAL)
    assert choose_channels(_notice(email=False), {"mode": "email_else_sms"}).send_now == (
        Channel.SMS,
    )


def test_sms_else_email():
    plan = choose_channels(_notice(), {"mode": "sms_else_email"})
    assert plan.send_now == (Channel.SMS,) and plan.fallback == (Channel.EMAIL, Channel.POSTAL)


def test_both():
    plan = choose_channels(_notice(), {"mode": "both"})
    assert plan.send_now == (Channel.EMAIL, Channel.SMS) and plan.fallback == (Channel.POSTAL,)
    plan = choose_channels(_notice(email=False, mobile=False), {"mode": "both"})
    assert plan.send_now == (Channel.POSTAL,)


def test_fallback_list_restricts_channels():
    plan = choose_channels(
        _notice(email=False, mobile=False), {"mode": "email_else_sms", "fallback": ["email", "sms"]}
    )
    assert plan.outcome is Outcome.UNREACHABLE


def test_no_channel_is_unreachable_and_hold_is_held():
    assert choose_channels(_notice(False, False, False), None).outcome is Outcome.UNREACHABLE
    assert choose_channels(_notice(hold={"reason": "s116"}), None).outcome is Outcome.HELD


def test_representative_contacts_are_used_not_the_persons():
    n = _notice(
        representative={"name": "Rep Test", "relationship": "parent", "mobile": "+64210009999"}
    )
    plan = choose_channels(n, {"mode": "email_else_sms"})
    # The representative has only a mobile; the child's own email/address are not used.
    assert plan.send_now == (Channel.SMS,) and plan.fallback == ()


def test_next_channel_after_permanent_failure_walks_to_unreachable():
    # As production calls it: with the contract notice's channels (NoticeMessage.channels).
    n, pol = ["email", "sms", "postal"], {"mode": "email_else_sms"}
    assert next_channel_after_permanent_failure(n, pol, ["email"]) is Channel.SMS
    assert next_channel_after_permanent_failure(n, pol, ["email", "sms"]) is Channel.POSTAL
    assert next_channel_after_permanent_failure(n, pol, ["email", "sms", "postal"]) is None


@pytest.mark.parametrize(("mode", "fallback", "available", "walk"), [
    ("email_else_sms", ["email", "sms", "postal"], ["email", "sms", "postal"], ["email", "sms", "postal"]),
    ("sms_else_email", ["email", "sms", "postal"], ["email", "sms", "postal"], ["sms", "email", "postal"]),
    ("email_else_sms", ["email", "sms", "postal"], ["sms", "postal"], ["sms", "postal"]),
    ("email_else_sms", ["email", "sms"], ["email", "sms", "postal"], ["email", "sms"]),  # no letters
    ("email_else_sms", ["postal", "sms", "email"], ["email", "sms", "postal"], ["email", "sms", "postal"]),
    ("both", ["email", "sms", "postal"], ["email", "sms", "postal"], ["email", "sms", "postal"]),
])
def test_fallback_walks_the_plan_in_order_then_unreachable(mode, fallback, available, walk):
    """What production does after each permanent failure (tracking._fall_back)."""
    pol = {"mode": mode, "fallback": fallback}
    first = list(first_channels(available, pol))
    statuses = {c: "permanent-failure" for c in first}
    queued = list(first)
    while (nxt := fallback_channel(available, pol, statuses)) != "none":
        assert nxt not in statuses
        queued.append(nxt)
        statuses[nxt] = "permanent-failure"
    assert queued == walk


def test_no_fallback_while_another_channel_is_still_working():
    pol = {"mode": "both"}
    for other in ("sending", "sent", "delivered", "queued", "temporary-failure"):
        assert fallback_channel(["email", "sms"], pol, {"email": "permanent-failure", "sms": other}) is None
    assert fallback_channel(["email", "sms"], pol, {"email": "permanent-failure",
                                                   "sms": "permanent-failure"}) == "none"


@pytest.mark.parametrize(("available", "fallback", "listed"), [
    (["email", "sms", "postal"], ["email", "sms", "postal"], "postal"),  # the mail-out
    (["email", "sms"], ["email", "sms", "postal"], "none"),  # no address: the public notice
    (["email", "sms", "postal"], ["email", "sms"], "none"),  # letters not allowed
])
def test_both_channels_failing_for_good_put_the_person_on_one_list(available, fallback, listed):
    """Item 6: "both" mode, email and SMS both failed permanently. Whichever failure is decided
    last (the rows may be read in either order), the person goes on exactly one list."""
    pol = {"mode": "both", "fallback": fallback}
    assert first_channels(available, pol) == ("email", "sms")
    for failed in ({"email": "permanent-failure", "sms": "permanent-failure"},
                   {"sms": "permanent-failure", "email": "permanent-failure"}):
        assert fallback_channel(available, pol, failed) == listed
    # While the other is still working, neither failure decides anything.
    assert fallback_channel(available, pol, {"email": "permanent-failure", "sms": "sent"}) is None
    # Once the letter too has failed, the public notice.
    if listed == "postal":
        assert fallback_channel(available, pol, {"email": "permanent-failure",
                                                 "sms": "permanent-failure",
                                                 "postal": "permanent-failure"}) == "none"


def test_first_channels_is_none_when_no_channel_is_usable():
    assert first_channels([], None) == ("none",)
    assert first_channels(["postal"], {"fallback": ["email", "sms"]}) == ("none",)
    assert first_channels(["postal"], None) == ("postal",)
    assert first_channels(["email", "sms"], {"mode": "both"}) == ("email", "sms")


def test_sms_says_where_the_full_notice_is():
    assert sms_full_notice_via(email_active=True, has_address=True, postal_allowed=True) == "email"
    assert sms_full_notice_via(email_active=False, has_address=True, postal_allowed=True) == "postal"
    assert sms_full_notice_via(email_active=False, has_address=True, postal_allowed=False) == "none"
    assert sms_full_notice_via(email_active=False, has_address=False, postal_allowed=True) == "none"


def test_quiet_hours_hold_sms_only():
    night = datetime(2026, 1, 15, 22, 30, tzinfo=NZ)
    assert sendable_channels(QuietHours(), night) == ["email"]
    assert sendable_channels(None, night) == ["email", "sms"]
    assert sendable_channels(QuietHours(), datetime(2026, 1, 15, 12, tzinfo=NZ)) == ["email", "sms"]
    assert first_attempt_at("sms", QuietHours(), night) == datetime(2026, 1, 16, 8, 0, tzinfo=NZ)
    assert first_attempt_at("email", QuietHours(), night) == night
    assert first_attempt_at("sms", None, night) == night


def test_bad_policy_rejected():
    with pytest.raises(ValueError):
        choose_channels(_notice(), {"mode": "pigeon"})
    with pytest.raises(ValueError):
        choose_channels(_notice(), {"fallback": ["fax"]})


# ------------------------------------------------------------------ quiet hours


def test_quiet_hours_basic():
    q = QuietHours()
    day = datetime(2026, 1, 15, 12, 0, tzinfo=NZ)
    assert q.next_allowed(day) == day
    night = datetime(2026, 1, 15, 22, 30, tzinfo=NZ)
    assert q.next_allowed(night) == datetime(2026, 1, 16, 8, 0, tzinfo=NZ)
    early = datetime(2026, 1, 16, 6, 0, tzinfo=NZ)
    assert q.next_allowed(early) == datetime(2026, 1, 16, 8, 0, tzinfo=NZ)
    assert not q.is_quiet(datetime(2026, 1, 16, 8, 0, tzinfo=NZ))
    assert q.is_quiet(datetime(2026, 1, 15, 21, 0, tzinfo=NZ))


def test_quiet_hours_across_dst_start():
    # NZDT starts Sun 27 Sep 2026 02:00 NZST -> 03:00 NZDT.
    q = QuietHours()
    now = datetime(2026, 9, 26, 22, 0, tzinfo=NZ).astimezone(UTC)  # NZST, UTC+12
    nxt = q.next_allowed(now)
    assert nxt == datetime(2026, 9, 26, 19, 0, tzinfo=UTC)  # 08:00 NZDT = UTC+13
    assert nxt.astimezone(NZ).hour == 8
    assert nxt - now == timedelta(hours=9)  # one wall-clock hour vanished


def test_quiet_hours_across_dst_end():
    # NZDT ends Sun 5 Apr 2026 03:00 NZDT -> 02:00 NZST.
    q = QuietHours()
    now = datetime(2026, 4, 4, 22, 0, tzinfo=NZ).astimezone(UTC)  # NZDT, UTC+13
    nxt = q.next_allowed(now)
    assert nxt == datetime(2026, 4, 4, 20, 0, tzinfo=UTC)  # 08:00 NZST = UTC+12
    assert nxt - now == timedelta(hours=11)


def test_quiet_window_not_crossing_midnight_and_empty_window():
    q = QuietHours(start=time(1, 0), end=time(5, 0))
    assert q.next_allowed(datetime(2026, 1, 1, 3, 0, tzinfo=NZ)) == datetime(
        2026, 1, 1, 5, 0, tzinfo=NZ
    )
    assert not q.is_quiet(datetime(2026, 1, 1, 23, 0, tzinfo=NZ))
    assert not QuietHours(start=time(8), end=time(8)).is_quiet(datetime(2026, 1, 1, 3, tzinfo=NZ))


def test_quiet_hours_rejects_naive():
    with pytest.raises(ValueError):
        QuietHours().next_allowed(datetime(2026, 1, 1, 3, 0))


# ------------------------------------------------------------------ backoff


def test_backoff_full_jitter_within_ceiling_and_bounded():
    p = RetryPolicy(
        base_seconds=10, cap_seconds=100, max_attempts=6, max_total=timedelta(minutes=30)
    )
    rng = random.Random(1)
    for attempt in range(1, 6):
        for _ in range(50):
            d = p.next_delay(attempt, timedelta(0), rng)
            assert 0 <= d <= min(100, 10 * 2 ** (attempt - 1))
    assert p.next_delay(6, timedelta(0), rng) is None  # attempts exhausted
    assert p.next_delay(1, timedelta(minutes=30), rng) is None  # time exhausted
    assert p.next_delay(5, timedelta(minutes=29, seconds=55), rng) <= 5  # clipped to budget


def test_retry_or_give_up():
    p = RetryPolicy(base_seconds=10, cap_seconds=10, max_attempts=3, max_total=timedelta(hours=1))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    t = now.timestamp()
    again = retry_or_give_up(p, DeliveryStatus.TECHNICAL_FAILURE, 1, t, now)
    assert again.status is DeliveryStatus.TECHNICAL_FAILURE and not again.gave_up
    assert t <= again.next_attempt_at <= t + 10
    assert retry_or_give_up(p, DeliveryStatus.TEMPORARY_FAILURE, 1, None, now, 60).next_attempt_at >= t + 60
    assert retry_or_give_up(p, DeliveryStatus.TEMPORARY_FAILURE, 0, None, now).status is (
        DeliveryStatus.TEMPORARY_FAILURE)  # a never-counted attempt counts as the first
    spent = retry_or_give_up(p, DeliveryStatus.TEMPORARY_FAILURE, 3, t, now)
    assert spent.gave_up and (spent.status, spent.next_attempt_at) == (DeliveryStatus.PERMANENT_FAILURE, 0.0)
    assert retry_or_give_up(p, DeliveryStatus.TEMPORARY_FAILURE, 1, t - 3600, now).gave_up  # time spent


def test_backoff_is_jittered():
    p = RetryPolicy()
    delays = {p.next_delay(4, timedelta(0), random.Random(i)) for i in range(20)}
    assert len(delays) > 15


# ------------------------------------------------------------------ token bucket


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_token_bucket_burst_then_refill():
    clock = FakeClock()
    b = TokenBucket(rate=2, burst=3, clock=clock)
    assert [b.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.t = 0.5
    assert b.try_acquire() and not b.try_acquire()
    clock.t = 100
    assert b.available == 3  # never more than burst
    with pytest.raises(ValueError):
        b.try_acquire(4)


async def test_token_bucket_acquire_waits_real_time():
    b = TokenBucket(rate=50, burst=1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(6):
        await b.acquire()
    elapsed = loop.time() - start
    assert 0.08 <= elapsed < 1.0  # 5 refills at 50/s ~= 0.1 s


def test_a_correction_is_sent_unless_it_corrects_nothing_the_person_got():
    """Sent in error and never sent: nothing to correct. An agency named wrongly still goes
    out (as the first notice when nothing was sent: render.as_sent)."""
    from services.dispatch.policy import correction_has_anything_to_say

    assert correction_has_anything_to_say("sent_in_error", earlier_told=True)
    assert not correction_has_anything_to_say("sent_in_error", earlier_told=False)
    assert correction_has_anything_to_say("agency_not_involved", earlier_told=True)
    assert correction_has_anything_to_say("agency_not_involved", earlier_told=False)
