import pytest

from services.dispatch.delivery_state import (
    ALLOWED_TRANSITIONS,
    DUE_STATES,
    PENDING_STATES,
    TERMINAL_STATES,
    IllegalTransition,
    ReceiptOutcome,
    apply_transition,
    initial_status,
    outcome_is_current,
    parse_reference,
    receipt_transition,
    reference_for,
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
