"""The incident benchmark at a small size, as a correctness test of the whole system: real
Kafka, PostgreSQL, the three services and both gateways as processes, the agencies uploading
through intake's API. No timing is asserted (speed goals live in the benchmark); what is
asserted is what every run must show whatever the speed."""

import json

import pytest

from benchmarks.incident import offline, run, scenario

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(900)]


# One agency at a time: the records reach dedupe in the same order every run.
ARGS = ["--records", "2000", "--clients", "1", "--workers", "intake=1", "--no-reference"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):  # noqa: ANN001, ANN201
    work = tmp_path_factory.mktemp("incident")
    out = work / "results.json"
    assert run.main([*ARGS, "--out", str(out), "--log-dir", str(work / "log")]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def resolver_alone():  # noqa: ANN201
    """The production resolver in this process over the same accepted records, same order."""
    args = run.parse(ARGS)
    incident = scenario.build(scenario.BREACH, args.records, args.seed, run.VAR / "incidents")
    return offline.resolve(incident)


def test_every_record_reaches_a_notice_and_no_notice_covers_two_people(results, resolver_alone):
    c, alone = results["correctness"], resolver_alone
    # Reported, not asserted: how many people the resolver keeps apart is its own quality,
    # measured against its goals by benchmarks/resolver (the goal there: exactly one >= 0.97).
    print(f"\nexactly one notice: {c['exactly_one']:.4f} through the system, "
          f"{alone['exactly_one']:.4f} by the resolver alone; people with two or more: "
          f"{c['two_or_more']} / {alone['two_or_more']}; spanning: {c['spanning']} / "
          f"{alone['spanning']}; of {c['persons_with_accepted_records']} people; two or more kept apart "
          f"by an open review pair: {c['two_or_more_in_review']} / {alone['two_or_more_in_review']}; "
          f"in review: {c['in_review']} / {alone['in_review']}; held for a contact: {c['held_for_contact']}")
    assert results["records_accepted"] == results["records"] - results["stages"]["intake"]["rejected"]
    assert alone["records_accepted"] == results["records_accepted"], (alone, results["stages"])
    assert alone["persons_with_accepted_records"] == c["persons_with_accepted_records"]
    assert c["none_not_held"] == 0, "a person with an accepted record got no notice and no hold"
    # The only people without one: held until a coordinator picks between contested contacts
    # (no uncontested channel left); BREACH has no s 116 holds.
    assert c["none"] == c["held_for_contact"], c
    assert c["spanning"] == 0, "a notice covered records of two different people"
    assert c["exactly_one_count"] + c["two_or_more"] + c["none"] == c["persons_with_accepted_records"]
    # What the system must guarantee: Kafka, PostgreSQL and the services split no one the
    # resolver alone keeps together. No tolerance: nothing in this run changes the resolver's
    # input but the records (no withdrawals, review decisions or restarts), they arrive in the
    # order the resolver alone is given them, and the release learns once, as it does.
    assert c["two_or_more"] <= alone["two_or_more"], (c, alone)
    # "In review" is the resolver's identity pairs, the same as alone (the queue also holds
    # contact conflicts, one person each, which keep no one apart); the people with two or more
    # notices because a pair waits for a reviewer are the resolver's too.
    assert (c["review_pairs"], c["in_review"]) == (alone["review_pairs"], alone["in_review"]), (c, alone)
    assert c["two_or_more_in_review"] == alone["two_or_more_in_review"], (c, alone)


def test_each_notice_is_at_rest_and_the_gateways_got_each_message_once(results):
    c = results["correctness"]
    assert c["not_yet_delivered"] == 0
    assert c["gateway_messages"] == c["successful_deliveries"]
    assert sum(c["notified_by"].values()) + c["unreachable"] == c["persons_with_accepted_records"] - c["none"]
    assert results["stages"]["dispatch"]["notices"] == c["notices"] + c["amendments"]


def test_the_results_carry_the_documented_keys(results):
    assert results["records"] == 2000
    assert results["wall_s"] > 0
    for stage in ("intake", "dedupe", "dispatch"):
        assert results["stages"][stage]["per_s"] > 0
    assert 0 < results["correctness"]["exactly_one"] <= 1
    assert results["latency_s"]["records"] > 0
    for name in ("intake", "dedupe", "dispatch"):
        assert results["processes"][name]["cpu_s"] > 0
        assert results["processes"][name]["peak_rss_mb"] > 0


def test_a_run_stopped_by_sigterm_writes_what_it_measured(tmp_path):
    """Stopping a long run (SIGTERM, as Ctrl-C) keeps its measurements, even where the results
    folder does not exist yet."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "not-yet" / "results.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "incident", "--records", "2000", "--no-reference",
         "--out", str(out), "--log-dir", str(tmp_path / "log")],
        cwd=run.support.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stdout:  # the system is up and the agencies are uploading
            if line.startswith("uploading with"):
                break
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, output
    partial = json.loads((out.parent / "results-unfinished.json").read_text())
    assert partial["completed"] is False and "stopped" in partial["failure"]
    assert partial["records"] == 2000 and partial["elapsed_s"] > 0
    assert {"intake", "dedupe", "dispatch"} <= set(partial["processes"])
