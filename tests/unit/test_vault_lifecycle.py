"""Key lifecycle as data (oci-behaviour.md R2.4, R2.10, R6.7, R6.21-R6.22, Part A D1). Pure: no clock, no storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from blockvault.errors import Conflict, IncorrectState, InvalidArgument
from blockvault.vault import lifecycle
from blockvault.vault.lifecycle import DISABLED, ENABLED, PENDING_DELETION, Transition

KEY = "ocid1.key.oc1.iad.prefix.aaaakey"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# R6.21: every key lifecycle state.
ALL_STATES = (
    "CREATING",
    "ENABLING",
    "ENABLED",
    "DISABLING",
    "DISABLED",
    "DELETING",
    "DELETED",
    "PENDING_DELETION",
    "SCHEDULING_DELETION",
    "CANCELLING_DELETION",
    "UPDATING",
    "BACKUP_IN_PROGRESS",
    "RESTORING",
)

# R6.22: action -> (states it may start from, final state, state the response shows).
ALLOWED: dict[str, tuple[frozenset[str], str, str]] = {
    "enable": (frozenset({DISABLED}), ENABLED, "ENABLING"),
    "disable": (frozenset({ENABLED}), DISABLED, "DISABLING"),
    "schedule_deletion": (frozenset({ENABLED, DISABLED}), PENDING_DELETION, "SCHEDULING_DELETION"),
}

_ALLOWED_CASES = [(action, state) for action, (states, _, _) in ALLOWED.items() for state in sorted(states)]
_REFUSED_CASES = [
    (action, state)
    for action in (*ALLOWED, "cancel_deletion")
    for state in ALL_STATES
    if state not in (ALLOWED[action][0] if action in ALLOWED else {PENDING_DELETION})
]


# --- key_transition ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "state"), _ALLOWED_CASES)
def test_key_transition_allowed_gives_final_and_shown_states(action: str, state: str) -> None:
    _, final, shown = ALLOWED[action]
    assert lifecycle.key_transition("key", KEY, state, action) == Transition(final, shown)


@pytest.mark.parametrize("prior", [ENABLED, DISABLED])
def test_cancel_deletion_returns_the_prior_state(prior: str) -> None:
    transition = lifecycle.key_transition("key", KEY, PENDING_DELETION, "cancel_deletion", prior)
    assert transition == Transition(prior, "CANCELLING_DELETION")


def test_cancel_deletion_without_a_recorded_prior_state_is_enabled() -> None:
    transition = lifecycle.key_transition("key", KEY, PENDING_DELETION, "cancel_deletion", None)
    assert transition.final == ENABLED


@pytest.mark.parametrize(("action", "state"), _REFUSED_CASES)
def test_key_transition_from_a_wrong_state_is_conflict_not_incorrect_state(action: str, state: str) -> None:
    with pytest.raises(Conflict) as info:
        lifecycle.key_transition("key", KEY, state, action, ENABLED)
    # D1: IncorrectState is retried by the CLI for ten minutes; these states do not pass by themselves.
    assert not isinstance(info.value, IncorrectState)
    assert info.value.context["ident"] == KEY
    assert state in info.value.text


def test_every_action_state_pair_is_covered() -> None:
    assert len(_ALLOWED_CASES) + len(_REFUSED_CASES) + 1 == 4 * len(ALL_STATES)  # +1: cancel from PENDING_DELETION


@pytest.mark.parametrize("state", ALL_STATES)
def test_only_enabled_keys_are_usable_for_crypto(state: str) -> None:
    assert lifecycle.usable_for_crypto(state) is (state == ENABLED)


# --- deletion_time (R2.10) ----------------------------------------------------------------------------------------


def test_deletion_time_omitted_is_thirty_days() -> None:
    assert lifecycle.deletion_time(NOW, None) == NOW + timedelta(days=30)


@pytest.mark.parametrize("delta", [timedelta(days=7), timedelta(days=15, hours=3), timedelta(days=30)])
def test_deletion_time_inside_the_window_is_kept(delta: timedelta) -> None:
    assert lifecycle.deletion_time(NOW, NOW + delta) == NOW + delta


@pytest.mark.parametrize(
    "delta",
    [
        timedelta(days=6, hours=23),
        timedelta(days=7) - timedelta(microseconds=1),
        timedelta(days=30, seconds=1),
        timedelta(0),
        -timedelta(days=1),
    ],
)
def test_deletion_time_outside_the_window_is_refused(delta: timedelta) -> None:
    with pytest.raises(InvalidArgument) as info:
        lifecycle.deletion_time(NOW, NOW + delta)
    assert info.value.context["field"] == "timeOfDeletion"


# --- validate_shape (R6.7: lengths in bytes) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "length", "curve"),
    [
        ("AES", 16, None),
        ("AES", 24, None),
        ("AES", 32, None),
        ("RSA", 256, None),
        ("RSA", 384, None),
        ("RSA", 512, None),
        ("ECDSA", 32, "NIST_P256"),
        ("ECDSA", 48, "NIST_P384"),
        ("ECDSA", 66, "NIST_P521"),
        ("ECDSA", 32, None),
    ],
)
def test_validate_shape_accepts_documented_shapes(algorithm: str, length: int, curve: str | None) -> None:
    lifecycle.validate_shape(algorithm, length, curve)


@pytest.mark.parametrize(
    ("algorithm", "length", "curve"),
    [
        ("AES", 20, None),
        ("AES", 256, None),  # bits, not bytes
        ("AES", 32, "NIST_P256"),
        ("RSA", 128, None),
        ("RSA", 2048, None),
        ("RSA", 256, "NIST_P256"),
        ("ECDSA", 32, "NIST_P384"),
        ("ECDSA", 48, "NIST_P521"),
        ("ECDSA", 66, "NIST_P256"),
        ("ECDSA", 64, None),
        ("ECDSA", 32, "CURVE25519"),
        ("DES", 8, None),
        ("aes", 32, None),
    ],
)
def test_validate_shape_rejects_other_shapes(algorithm: str, length: int, curve: str | None) -> None:
    with pytest.raises(InvalidArgument) as info:
        lifecycle.validate_shape(algorithm, length, curve)
    assert info.value.context["field"] == "keyShape"
