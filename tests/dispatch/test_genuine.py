""""Is this notice genuine?" (issue 16): the reference and date-of-birth check, on the real
dispatch service (Kafka, PostgreSQL, the local gateways), its page, its rate limits and its
audit; and the rules behind it (references, constant-time comparison) without them."""

import math
import statistics
import time

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url, text
from sqlmodel import Session

from services.common.crypto import Sealer, generate_key_spec
from services.common.ratelimit import KeyedRateLimiter
from services.common.references import (
    ALPHABET,
    LENGTH,
    legacy_reference,
    normalise_reference,
    notice_checks,
    reference_from_digest,
)
from services.dispatch.genuine import digests_match
from testkit.infra import free_port
from testkit.notices import incident_message, notice_message, person

from .stack import COORDINATOR, dispatch_settings, running_dispatch

DOB = "1984-03-09"

# ------------------------------------------------------------------------------------ rules


def test_a_reference_has_59_bits_and_is_keyed_by_the_data_key():
    assert len(ALPHABET) ** LENGTH > 2 ** 58.8  # log2(30^12) = 58.9 bits
    a, b = Sealer(generate_key_spec("k1")), Sealer(generate_key_spec("k1"))
    sealed_a = a.seal({"x": 1}, "ctx")
    ref_a, _ = notice_checks(a, "ntc-1", sealed_a, [])
    ref_b, _ = notice_checks(b, "ntc-1", b.seal({"x": 1}, "ctx"), [])
    # Another key, another reference: it cannot be computed from the notice id alone.
    assert ref_a != ref_b and ref_a != legacy_reference("ntc-1")
    assert notice_checks(a, "ntc-1", sealed_a, [])[0] == ref_a  # deterministic under its key
    assert normalise_reference(ref_a) == ref_a
    assert normalise_reference(ref_a.lower().replace("-", " ")) == ref_a
    assert normalise_reference(legacy_reference("ntc-1")) == legacy_reference("ntc-1")
    for bad in ("PAN-0000-0000-0000", "PAN-ABCD", "", "x" * 40, "PAN-IIII-LLLL-OOOO"):
        assert normalise_reference(bad) is None


def test_dob_digests_are_distinct_dates_and_never_the_date():
    sealer = Sealer(generate_key_spec("k1"))
    sealed = sealer.seal({"x": 1}, "ctx")
    _, checks = notice_checks(sealer, "ntc-1", sealed, [DOB, None, DOB, "1984-09-03"])
    assert len(checks) == 2 and all(len(c) == 64 for c in checks)
    assert DOB not in "".join(checks) and "19840309" not in "".join(checks)


def test_digests_match_compares_every_slot():
    digest = reference_from_digest("a" * 64)  # any string: the slots are strings too
    assert digests_match(digest, [digest]) and digests_match(digest, ["x" * 64, digest])
    assert not digests_match(digest, []) and not digests_match(digest, ["y" * 64])


def test_the_per_client_limiter_forgets_idle_clients_past_its_bound():
    now = [0.0]
    limiter = KeyedRateLimiter(60, 1, clock=lambda: now[0], max_keys=10)
    for i in range(10):
        assert limiter.wait_time(f"c{i}") == 0
    now[0] += 5  # every bucket refilled
    assert limiter.wait_time("c-new") == 0 and len(limiter) == 1
    assert limiter.wait_time("c-new") > 0


# ---------------------------------------------------------------------------------- service

@pytest.fixture
def settings_for(service_env, pg_database, smtp_gw, sms_gw):
    def make(database_url: str | None = None, **overrides):
        return dispatch_settings(service_env, database_url or pg_database("dispatch"),
                                 port=free_port(), smtp_port=smtp_gw.port, sms_url=sms_gw.url,
                                 quiet_hours_enabled=False, **overrides)
    return make


async def _sent_notices(stack, smtp_gw, *notices) -> None:
    await stack.publish_incident(incident_message())
    await stack.publish_notices(list(notices))
    await stack.wait_until(lambda: len(smtp_gw.messages) >= len(notices), what="emails sent")


def _check(stack, reference, dob):
    return stack.http.post("/v1/notice-checks", json={"reference": reference, "date_of_birth": dob})


@pytest.mark.kafka
@pytest.mark.postgres
async def test_a_match_confirms_what_the_notice_said_and_nothing_else(settings_for, smtp_gw):
    async with running_dispatch(settings_for()) as stack:
        mine = notice_message(stack.sealer, 1, person(1), dates_of_birth=[DOB])
        other = notice_message(stack.sealer, 2, person(2), dates_of_birth=["1990-01-01"])
        await _sent_notices(stack, smtp_gw, mine, other)
        # The email carries the keyed reference, not the legacy code.
        [mail] = smtp_gw.messages_to("person1@example.nz")
        assert mine.reference_code in mail.message.get_body(("plain",)).get_content()
        assert legacy_reference(mine.notice_id) not in mail.data.decode()

        typed = mine.reference_code.lower().replace("-", " ")
        confirmed = await _check(stack, typed, DOB)
        assert confirmed.status_code == 200, confirmed.text
        body = confirmed.json()
        assert body["result"] == "confirmed"
        notice = body["notice"]
        [agency] = notice["agencies"]
        assert agency["name"] == "Example Medical Centre"
        assert len(agency["data_categories"]) == 2
        assert "Laboratory test results" in agency["data_categories"]
        assert notice["contact"]["phone"] and notice["incident_title"]
        raw = confirmed.text
        for personal in ("Testperson", "Fakename", "person1@", "+6421", "Test Street", DOB,
                         "person2", other.reference_code):
            assert personal not in raw, personal

        # Wrong date of birth, unknown reference, malformed reference: one answer.
        answers = [await _check(stack, mine.reference_code, "1984-03-10"),
                   await _check(stack, other.reference_code, DOB),
                   await _check(stack, reference_from_digest("1" * 64), DOB),
                   await _check(stack, "PAN-NOT-A-REFERENCE", DOB)]
        assert {(a.status_code, a.content) for a in answers} == {(200, answers[0].content)}
        assert answers[0].json()["result"] == "not-confirmed"
        assert answers[0].json()["notice"] is None

        audit = (await stack.http.get("/v1/audit", headers=COORDINATOR)).json()["entries"]
        checks = [e for e in audit if e["action"] == "notice.check"]
        assert len(checks) == 5
        assert checks[0]["object_ids"] == [mine.notice_id, "confirmed"]
        assert checks[1]["object_ids"] == [mine.notice_id, "not-confirmed"]
        assert checks[3]["object_ids"] == ["-", "not-confirmed"] and checks[3]["incident_id"] is None
        blob = str(audit)
        assert DOB not in blob and "1984-03-10" not in blob and mine.reference_code not in blob


@pytest.mark.kafka
@pytest.mark.postgres
async def test_the_page_has_no_links_and_answers_the_form(settings_for, smtp_gw):
    async with running_dispatch(settings_for()) as stack:
        mine = notice_message(stack.sealer, 1, person(1), dates_of_birth=[DOB])
        await _sent_notices(stack, smtp_gw, mine)
        page = await stack.http.get("/check")
        assert page.status_code == 200 and 'action="/check"' in page.text
        assert "<a " not in page.text and "<script" not in page.text
        assert page.headers["cache-control"] == "no-store"
        form = {"reference": mine.reference_code, "day": "9", "month": "3", "year": "1984"}
        good = await stack.http.post("/check", data=form)
        assert good.status_code == 200 and "This notice is genuine" in good.text
        assert "Example Medical Centre" in good.text and "Testperson" not in good.text
        wrong = await stack.http.post("/check", data=form | {"day": "10"})
        unknown = await stack.http.post("/check", data=form | {
            "reference": reference_from_digest("2" * 64)})
        assert wrong.status_code == unknown.status_code == 200
        assert wrong.content == unknown.content and "Not confirmed" in wrong.text
        empty = await stack.http.post("/check", data={"reference": mine.reference_code})
        assert empty.status_code == 400 and "real date of birth" in empty.text


@pytest.mark.kafka
@pytest.mark.postgres
async def test_checks_are_rate_limited_per_client_and_overall(settings_for, smtp_gw):
    # 6 a minute: a token every 10 s, so a loaded box's slow answers refill none meanwhile.
    async with running_dispatch(settings_for(check_requests_per_minute=6, check_burst=3)) as stack:
        answers = [await _check(stack, reference_from_digest("3" * 64), DOB) for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        assert answers[3].json()["error"]["code"] == "check.rate_limited"
        assert int(answers[3].headers["retry-after"]) >= 1
        page = await stack.http.post("/check", data={"reference": "x", "day": "1", "month": "1",
                                                     "year": "1990"})
        assert page.status_code == 429 and "Too many checks" in page.text
    async with running_dispatch(settings_for(check_requests_per_minute=10_000, check_burst=100,
                                             check_global_per_s=0.01, check_global_burst=2)) as stack:
        codes = [(await _check(stack, reference_from_digest("4" * 64), DOB)).status_code
                 for _ in range(3)]
        assert codes == [200, 200, 429]  # one client well under its own limit: the global one


# Replicas share the limits (services/common/shared_buckets.py): two dispatch instances on one
# database, as deploy/k8s runs two or more. Per replica, each let the whole limit through.

@pytest.mark.kafka
@pytest.mark.postgres
async def test_the_global_limit_holds_across_two_replicas(settings_for, pg_database):
    url = pg_database("dispatch")
    limits = {"check_requests_per_minute": 10_000, "check_burst": 100,
              "check_global_per_s": 0.01, "check_global_burst": 3}
    async with running_dispatch(settings_for(url, **limits)) as one, \
            running_dispatch(settings_for(url, **limits)) as two:
        reference = reference_from_digest("7" * 64)
        codes = [(await _check(stack, reference, DOB)).status_code
                 for stack in (one, two, one, two, one, two)]
        assert codes == [200, 200, 200, 429, 429, 429]
        with Session(one.app.state.runtime.engine) as session:
            keys = set(session.execute(text("SELECT key FROM rate_bucket")).scalars())
        # The client's bucket is keyed by a digest of its address, never the address.
        assert "everyone" in keys and len(keys) == 2
        assert not any("127.0.0.1" in k for k in keys)


@pytest.mark.kafka
@pytest.mark.postgres
async def test_a_client_is_limited_across_two_replicas(settings_for, pg_database):
    url = pg_database("dispatch")
    limits = {"check_requests_per_minute": 1, "check_burst": 3,
              "check_global_per_s": 1000, "check_global_burst": 1000}
    async with running_dispatch(settings_for(url, **limits)) as one, \
            running_dispatch(settings_for(url, **limits)) as two:
        reference = reference_from_digest("8" * 64)
        codes = [(await _check(stack, reference, DOB)).status_code
                 for stack in (one, two, one, two)]
        assert codes == [200, 200, 200, 429]
        refused = await _check(one, reference, DOB)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        page = await two.http.post("/check", data={"reference": "x", "day": "1", "month": "1",
                                                   "year": "1990"})
        assert page.status_code == 429 and "Too many checks" in page.text


@pytest.mark.kafka
@pytest.mark.postgres
async def test_with_its_database_away_the_check_fails_closed(settings_for, pg_database,
                                                             pg_admin_url):
    url = pg_database("dispatch")
    name = make_url(url).database
    async with running_dispatch(settings_for(url)) as stack:
        reference = reference_from_digest("9" * 64)
        assert (await _check(stack, reference, DOB)).status_code == 200
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:  # the database goes away
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(
                sql.Identifier(name)))
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        try:
            away = await _check(stack, reference, DOB)
            assert away.status_code == 503, away.text
            assert away.json()["error"]["code"] == "check.unavailable"
            assert away.headers["retry-after"] == "30"
            page = await stack.http.post("/check", data={"reference": reference, "day": "9",
                                                         "month": "3", "year": "1984"})
            assert page.status_code == 503 and "not available" in page.text
        finally:
            with psycopg.connect(pg_admin_url, autocommit=True) as admin:
                admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(
                    sql.Identifier(name)))
        assert (await _check(stack, reference, DOB)).status_code == 200  # back: answered again


# Behind the ingress the TCP peer is the controller: the per-client limit must count the
# client it names in X-Forwarded-For — but only when that peer is a configured proxy
# (FORWARDED_ALLOW_IPS), or anyone could dodge the limit by sending a new header each time.
# Two loopback source addresses stand in for a client and the proxy: 127.0.0.2 is the proxy.
PROXY = "127.0.0.2"


def _from(address: str, port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def _checks_from(client: httpx.AsyncClient, forwarded_for: list[str]) -> list[int]:
    body = {"reference": reference_from_digest("6" * 64), "date_of_birth": DOB}
    return [(await client.post("/v1/notice-checks", json=body,
                               headers={"x-forwarded-for": f})).status_code for f in forwarded_for]


@pytest.mark.kafka
@pytest.mark.postgres
async def test_forwarded_for_counts_only_from_a_trusted_proxy(settings_for, smtp_gw):
    settings = settings_for(check_requests_per_minute=6, check_burst=3, check_global_per_s=1000,
                            check_global_burst=1000, forwarded_allow_ips=PROXY)
    async with running_dispatch(settings):
        # An untrusted peer naming a new client each time is still one client: limited.
        async with _from("127.0.0.1", settings.port) as direct:
            spoofed = await _checks_from(direct, [f"198.51.100.{i}" for i in range(5)])
        assert spoofed == [200, 200, 200, 429, 429]
        # The proxy's header is believed: each client it names has its own bucket, and the
        # proxy's own address is not one client for all of them. The controller appends the
        # address it saw; what a client wrote before it is its own claim and not believed.
        async with _from(PROXY, settings.port) as proxy:
            one = await _checks_from(proxy, ["203.0.113.7"] * 3)
            claimed = await _checks_from(proxy, ["192.0.2.1, 203.0.113.7"])
            other = await _checks_from(proxy, ["203.0.113.8"])
        assert (one, claimed, other) == ([200, 200, 200], [429], [200])


# Timing: a wrong date of birth for a real reference and an unknown reference do the same work
# (genuine.py). Paired over a few hundred tries so load on the box weighs on both alike; the
# bound on the median of the pairs' differences is stated here and in the README.
TIMING_TRIES = 300
TIMING_BOUND_S = 0.005


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.slow
async def test_a_wrong_date_of_birth_takes_as_long_as_an_unknown_reference(settings_for, smtp_gw):
    settings = settings_for(check_requests_per_minute=1_000_000, check_burst=10_000,
                            check_global_per_s=100_000, check_global_burst=10_000)
    async with running_dispatch(settings) as stack:
        mine = notice_message(stack.sealer, 1, person(1), dates_of_birth=[DOB, "1985-01-01"])
        await _sent_notices(stack, smtp_gw, mine)
        unknown = reference_from_digest("5" * 64)
        bodies = set()
        rounds = []
        async with httpx.AsyncClient(base_url=str(stack.http.base_url), timeout=30) as http:

            async def timed(reference: str, i: int) -> float:
                started = time.perf_counter()
                answer = await http.post("/v1/notice-checks", json={
                    "reference": reference, "date_of_birth": f"19{50 + i % 40}-02-0{1 + i % 9}"})
                bodies.add((answer.status_code, answer.content))
                return time.perf_counter() - started

            # Paired tries (each pair back to back, order alternating) and the median of the
            # pairs' differences: a loaded box's drift hits both halves of a pair alike. A real
            # leak is systematic and shows in every round; load noise does not, so up to three
            # rounds are measured and the best one must be within the bound.
            for _ in range(3):
                differences, wrong_times, unknown_times = [], [], []
                for i in range(TIMING_TRIES):
                    if i % 2 == 0:
                        wrong, other = await timed(mine.reference_code, i), await timed(unknown, i)
                    else:
                        other, wrong = await timed(unknown, i), await timed(mine.reference_code, i)
                    differences.append(wrong - other)
                    wrong_times.append(wrong)
                    unknown_times.append(other)
                difference = abs(statistics.median(differences))
                rounds.append(difference)
                print(f"median wrong-dob {statistics.median(wrong_times) * 1e3:.2f} ms, unknown "
                      f"{statistics.median(unknown_times) * 1e3:.2f} ms, paired difference "
                      f"{difference * 1e3:.2f} ms")
                if difference < TIMING_BOUND_S:
                    break
        assert len(bodies) == 1
        assert not any(math.isnan(d) for d in rounds)
        assert min(rounds) < TIMING_BOUND_S, [f"{d * 1e3:.2f} ms" for d in rounds]
