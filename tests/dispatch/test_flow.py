"""Send permits (services/dispatch/flow.py): a claim is only as big as what can start now."""

import pytest

from services.common.ratelimit import TokenBucket
from services.dispatch.flow import Lane, Permits


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_lane_gives_no_more_permits_than_free_connections():
    lane = Lane(slots=2)
    assert lane.take(5) == 2 and lane.take(1) == 0
    assert lane.wait_s() is None  # every slot busy: wait for a send to end
    lane.done()
    assert lane.wait_s() == 0.0 and lane.take(5) == 1


def test_a_rate_limited_lane_gives_only_the_tokens_there_and_takes_back_the_unused():
    clock = FakeClock()
    lane = Lane(slots=10, bucket=TokenBucket(rate=4, burst=2, clock=clock))
    assert lane.take(10) == 2  # the burst
    assert lane.take(10) == 0 and lane.wait_s() == 0.25  # the next token in 1/4 s
    lane.give_back(1)  # a claim found only one due delivery
    assert lane.in_use == 1 and lane.take(10) == 1
    clock.t = 1.0
    assert lane.take(10) == 2  # refilled to the burst, not beyond


def test_permits_respect_the_sender_concurrency_across_channels():
    permits = Permits({"email": Lane(48), "sms": Lane(20)}, concurrency=50)
    taken = permits.take(["email", "sms"], batch=500)
    assert taken == {"email": 48, "sms": 2} and permits.in_flight == 50
    assert permits.take(["sms"], batch=500) == {} and permits.wait_s(["sms"]) is None
    permits.done("email")
    assert permits.take(["sms", "email"], batch=500) == {"sms": 1}


def test_a_bucket_hands_out_only_whole_tokens_now_and_takes_unused_ones_back():
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert bucket.take_up_to(5) == 3 and bucket.take_up_to(1) == 0  # never waits
    assert bucket.time_until(1) == 0.5  # takes nothing: asking twice gives the same answer
    assert bucket.time_until(1) == 0.5
    clock.t = 0.75  # 1.5 tokens: one whole one
    assert bucket.take_up_to(5) == 1
    bucket.give_back(10)  # a claim used none: back up to the burst, never beyond it
    assert bucket.take_up_to(10) == 3 and bucket.time_until(1) > 0


def test_a_send_deadline_must_end_inside_the_lease_and_the_heartbeat_renews_it_often():
    from pydantic import ValidationError

    from services.dispatch.settings import DispatchSettings

    with pytest.raises(ValidationError, match="send_deadline_s .* must be shorter"):
        DispatchSettings(sending_lease_s=30, send_deadline_s=30)
    settings = DispatchSettings(sending_lease_s=8, send_deadline_s=5)
    assert settings.heartbeat_s == 2.0  # a quarter of the lease by default
    assert DispatchSettings(sending_lease_s=8, send_deadline_s=5,
                            sender_heartbeat_s=1).heartbeat_s == 1.0
    default = DispatchSettings()
    assert default.send_deadline_s < default.sending_lease_s
    assert default.result_flush_s == 0.0  # answers are recorded without waiting: the window
