"""The reconciliation itself: it sees a lost person, a duplicate, a notice on the wrong
channel, an amendment and an over-merge when they are there (no infrastructure needed)."""

import pytest

from testkit.groundtruth import ground_truth
from testkit.reconcile import reconcile
from testkit.system import Observed


def _clean(truth):  # noqa: ANN001, ANN202
    """What a faultless run leaves at the gateways: one notice per person, on its channel."""
    emails, sms, postal, versions, assignments = [], [], [], {}, []
    for p in truth.persons:
        nid = f"ntc-{p.index:04d}"
        versions[nid] = 1
        channel = p.expected_channels(truth.mode)[0]
        if channel == "email":
            emails.append((f"Someone <{p.email}>", f"{nid}:email", f"<{nid}@x>"))
        elif channel == "sms":
            sms.append((p.mobile, f"{nid}:sms", "sms-0"))
        else:
            postal.append((p.address_line1, nid))
        assignments += [(p.incident_id, a, s, f"prs-{p.index}") for a, s in p.records]
    return Observed(emails, sms, postal, [], versions, assignments, {})


@pytest.fixture(scope="module")
def truth():  # noqa: ANN201
    return ground_truth(200, agencies=3, seed=5)


def test_a_faultless_run_reconciles_clean(truth):
    result = reconcile(truth, _clean(truth))
    result.assert_clean()
    assert result.exactly_once == result.persons_expected == len(truth.persons)
    assert {c: r.expected for c, r in result.channels.items()} == {
        c: sum(1 for p in truth.persons if p.expected_channels(truth.mode) == (c,))
        for c in ("email", "sms", "postal")}


def test_lost_duplicated_misrouted_and_overmerged_persons_are_seen(truth):
    observed = _clean(truth)
    observed.emails.pop(0)  # one person lost
    observed.sms.append(observed.sms[0])  # the same SMS twice
    twin = observed.emails[0]
    observed.emails.append((twin[0], twin[1].replace(":email", ":email:g1"), "<other@x>"))
    a, b = truth.persons[0], truth.persons[1]
    observed.assignments.append((b.incident_id, *b.records[0], f"prs-{a.index}"))  # b's record in a
    result = reconcile(truth, observed)
    assert result.lost == 1
    assert result.duplicated == 2
    assert result.channels["sms"].duplicate_copies == 1
    assert result.channels["email"].duplicate_copies == 1
    assert result.overmerged == [f"prs-{a.index}"]
    with pytest.raises(AssertionError, match="never notified"):
        result.assert_clean()


def test_the_smtp_window_excuses_only_its_own_references(truth):
    observed = _clean(truth)
    observed.emails.append(observed.emails[0])
    result = reconcile(truth, observed)
    reference = observed.emails[0][1]
    result.assert_clean(email_window={reference})
    with pytest.raises(AssertionError, match="outside the SMTP window"):
        result.assert_clean(email_window={"ntc-other:email"})


def test_a_resend_under_a_new_reference_is_a_duplicate_whatever_the_window(truth):
    """The window excuses a second copy of one accepted-but-unrecorded reference; a person's
    second email under another reference (":g1") is a second notice, window or not."""
    observed = _clean(truth)
    to, reference, _ = observed.emails[0]
    observed.emails.append((to, f"{reference}:g1", "<resent@x>"))
    result = reconcile(truth, observed)
    with pytest.raises(AssertionError, match="outside the SMTP window"):
        result.assert_clean(email_window={reference, f"{reference}:g1"})
    observed.emails.append(observed.emails[0])  # and the window's own copy, twice over
    with pytest.raises(AssertionError, match="outside the SMTP window"):
        reconcile(truth, observed).assert_clean(email_window={reference})


def test_amendments_are_counted_apart_from_duplicates(truth):
    observed = _clean(truth)
    to, _ref, _ = observed.emails[0]
    observed.emails.append((to, "ntc-amend:email", "<a@x>"))
    observed.notice_versions["ntc-amend"] = 2
    result = reconcile(truth, observed)
    result.assert_clean()
    [(person, versions)] = result.amendments.items()
    assert versions == [2]
