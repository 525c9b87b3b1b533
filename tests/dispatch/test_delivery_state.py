import pytest

from services.dispatch.delivery_state import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    IllegalTransition,
    apply_transition,
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
