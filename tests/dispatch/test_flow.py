"""Send permits (services/dispatch/flow.py): a claim is only as big as what can start now."""

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
