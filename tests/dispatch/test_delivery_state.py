import pytest

from services.dispatch.delivery_state import (
    ALLOWED_TRANSITIONS,
    DUE_STATES,
    PENDING_STATES,
    TERMINAL_STATES,
    TOLD_STATES,
    UNSENT_STATES,
    IllegalTransition,
    ReceiptOutcome,
    apply_transition,
    initial_status,
    is_deferral,
    may_hold_after,
    outcome_is_current,
    parse_reference,
    receipt_transition,
    reference_for,
    resend_needs_new_reference,
)
from services.dispatch.delivery_state import (
    DeliveryStatus as S,
)


def test_happy_path():
    state = S.QUEUED
    for nxt in (S.SENDING, S.SENT, S.DELIVERED):
        state = apply_transition(state, nxt)
    assert state is S.DELIVERED


def test_retry_path():
    state = apply_transition(S.SENDING, S.TEMPORARY_FAILURE)
    state = apply_transition(state, S.SENDING)
    assert apply_transition(state, "sent") is S.SENT


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.QUEUED, S.DELIVERED),
        (S.PERMANENT_FAILURE, S.SENDING),
        (S.DELIVERED, S.SENDING),
        (S.SENT, S.QUEUED),
        (S.QUEUED, S.SENT),
    ],
)
def test_illegal_transitions_raise_clear_error(current, target):
    with pytest.raises(IllegalTransition, match=f"'{current.value}' -> '{target.value}'"):
        apply_transition(current, target)


def test_duplicate_terminal_receipt_is_noop():
    assert apply_transition(S.DELIVERED, S.DELIVERED) is S.DELIVERED
    with pytest.raises(IllegalTransition):
        apply_transition(S.SENDING, S.SENDING)


def test_terminal_states_have_no_way_back_to_sending():
    for state in TERMINAL_STATES:
        assert S.SENDING not in ALLOWED_TRANSITIONS[state]
    assert set(ALLOWED_TRANSITIONS) == set(S)


def test_unknown_status_rejected():
    with pytest.raises(ValueError):
        apply_transition("sent", "bounced")


# ------------------------------------------------------------------ one status set, 'unreachable'


def test_the_state_machine_uses_the_contracts_status_set():
    from services.common import messages

    assert S is messages.DeliveryStatus  # one definition
    schema = messages.DeliveryEventMessage.model_json_schema()["properties"]["status"]
    assert schema["enum"] == [s.value for s in S]


def test_unreachable_is_created_final_and_never_left():
    assert initial_status("none") is S.UNREACHABLE
    assert initial_status("email") is S.QUEUED and initial_status("postal") is S.QUEUED
    assert S.UNREACHABLE in TERMINAL_STATES and ALLOWED_TRANSITIONS[S.UNREACHABLE] == frozenset()
    assert not any(S.UNREACHABLE in targets for targets in ALLOWED_TRANSITIONS.values())
    assert apply_transition(S.UNREACHABLE, S.UNREACHABLE) is S.UNREACHABLE
    with pytest.raises(IllegalTransition, match="none \\(terminal\\)"):
        apply_transition(S.UNREACHABLE, S.SENDING)


def test_due_and_pending_states_match_the_sql_index():
    from services.dispatch.models import Delivery

    [due_index] = [i for i in Delivery.__table__.indexes if i.name == "ix_delivery_due"]
    predicate = str(due_index.dialect_options["postgresql"]["where"])
    assert predicate == "status IN ({})".format(",".join(f"'{s}'" for s in DUE_STATES))
    assert set(PENDING_STATES) == {*DUE_STATES, S.SENDING}
    assert not set(DUE_STATES) & TERMINAL_STATES


# ------------------------------------------------------------------ receipts


@pytest.mark.parametrize(("current", "reported", "channel", "expected"), [
    ("sending", S.DELIVERED, "sms", ("updated", S.DELIVERED)),  # overtook our record of the 202
    ("sent", S.DELIVERED, "sms", ("updated", S.DELIVERED)),
    ("sent", S.TEMPORARY_FAILURE, "sms", ("updated", S.TEMPORARY_FAILURE)),
    ("delivered", S.DELIVERED, "sms", ("duplicate", None)),
    ("delivered", S.PERMANENT_FAILURE, "sms", ("stale", None)),  # a handset receipt is final
    ("delivered", S.PERMANENT_FAILURE, "email", ("updated", S.PERMANENT_FAILURE)),  # late bounce
    ("permanent-failure", S.DELIVERED, "email", ("stale", None)),
    ("queued", S.DELIVERED, "postal", ("stale", None)),
    ("unreachable", S.DELIVERED, "none", ("stale", None)),
])
def test_receipt_transitions(current, reported, channel, expected):
    decision = receipt_transition(current, reported, channel)
    assert (decision.outcome, decision.status) == expected


def test_a_receipt_for_an_earlier_generation_is_stale():
    decision = receipt_transition("sent", S.DELIVERED, "sms", current_generation=False)
    assert decision.outcome is ReceiptOutcome.STALE


def test_references_and_stale_outcomes():
    assert reference_for("ntc-1", "sms") == "ntc-1:sms"
    assert reference_for("ntc-1", "sms", 2) == "ntc-1:sms:g2"
    assert parse_reference("ntc-1:sms:g2") == ("ntc-1", "sms")
    assert parse_reference("ntc-1:email") == ("ntc-1", "email")
    assert outcome_is_current("sending", 2, 2)
    assert not outcome_is_current("sending", 3, 2)  # the lease expired, another attempt started
    assert not outcome_is_current("delivered", 2, 2)  # a receipt overtook the answer


def test_an_answer_counts_only_for_the_sender_that_holds_the_claim():
    assert outcome_is_current("sending", 2, 2, "sender-a", "sender-a")
    assert not outcome_is_current("sending", 2, 2, "sender-b", "sender-a")  # recovered by b
    assert not outcome_is_current("sending", 2, 2, None, "sender-a")


def test_superseded_is_final_and_only_unsent_deliveries_reach_it():
    assert S.SUPERSEDED in TERMINAL_STATES and ALLOWED_TRANSITIONS[S.SUPERSEDED] == frozenset()
    for unsent in (S.QUEUED, S.TEMPORARY_FAILURE, S.TECHNICAL_FAILURE):
        assert apply_transition(unsent, S.SUPERSEDED) is S.SUPERSEDED
    for handed_over in (S.SENDING, S.SENT, S.DELIVERED):
        with pytest.raises(IllegalTransition):
            apply_transition(handed_over, S.SUPERSEDED)
    assert receipt_transition(S.SUPERSEDED, S.DELIVERED, "sms").outcome is ReceiptOutcome.STALE


def test_a_delivered_receipt_after_an_unanswered_attempt_needs_no_resend():
    assert receipt_transition(S.TECHNICAL_FAILURE, S.DELIVERED, "sms").status is S.DELIVERED


def test_pins_hold_once_a_gateway_may_have_the_message():
    assert may_hold_after(False, S.SENT, ambiguous=False)
    assert may_hold_after(False, S.TECHNICAL_FAILURE, ambiguous=True)  # timeout, 502, 409
    assert not may_hold_after(False, S.TECHNICAL_FAILURE, ambiguous=False)  # refused: nothing
    assert not may_hold_after(False, S.PERMANENT_FAILURE, ambiguous=False)
    assert may_hold_after(True, S.TECHNICAL_FAILURE, ambiguous=False)  # once held, always


def test_an_email_deferral_is_not_a_failure_and_email_resends_keep_their_reference():
    assert is_deferral("email", "deferred") and not is_deferral("sms", "deferred")
    assert not is_deferral("email", "bounced")
    assert not resend_needs_new_reference("email") and resend_needs_new_reference("sms")


def test_what_a_newer_version_supersedes_is_exactly_what_no_gateway_may_hold():
    """An amendment replaces only deliveries never handed over (queued, or awaiting a retry
    after a certain refusal); one a gateway took or may have taken stays, and the amendment
    then says it updates it."""
    assert set(UNSENT_STATES) == {S.QUEUED, S.TEMPORARY_FAILURE, S.TECHNICAL_FAILURE}
    assert not set(UNSENT_STATES) & set(TOLD_STATES)
    assert set(TOLD_STATES) == {S.SENDING, S.SENT, S.DELIVERED}
    for state in S:
        reaches = S.SUPERSEDED in ALLOWED_TRANSITIONS[state]
        assert reaches == (state in UNSENT_STATES), state
