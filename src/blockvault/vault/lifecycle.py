"""Key, key version and vault lifecycles as data (oci-behaviour.md R2.x, R6.21-R6.23). Pure: no clock, no storage.

OCI passes through transitional states (DISABLING, SCHEDULING_DELETION, ...). Our transitions complete at once,
so the response of an action shows the transitional state (as OCI's does) and the stored state is the final one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from blockvault.errors import Conflict, InvalidArgument

ENABLED, DISABLED, PENDING_DELETION, DELETED = "ENABLED", "DISABLED", "PENDING_DELETION", "DELETED"
ACTIVE = "ACTIVE"

MIN_DELETION = timedelta(days=7)  # R2.10: 7 to 30 days from when the request arrives
MAX_DELETION = timedelta(days=30)


@dataclass(frozen=True)
class Transition:
    final: str
    shown: str  # what the action's response shows (OCI's transitional state)


_KEY_ACTIONS: dict[str, tuple[frozenset[str], Transition]] = {
    "enable": (frozenset({DISABLED}), Transition(ENABLED, "ENABLING")),
    "disable": (frozenset({ENABLED}), Transition(DISABLED, "DISABLING")),
    "schedule_deletion": (frozenset({ENABLED, DISABLED}), Transition(PENDING_DELETION, "SCHEDULING_DELETION")),
    "cancel_deletion": (frozenset({PENDING_DELETION}), Transition("", "CANCELLING_DELETION")),
}


def key_transition(kind: str, ident: str, state: str, action: str, prev_state: str | None = None) -> Transition:
    """The transition for a key (or key version) action; a permanent conflict for a state it cannot leave."""
    allowed, transition = _KEY_ACTIONS[action]
    if state not in allowed:
        # Not IncorrectState: the CLI retries that for ten minutes, and these states do not pass by themselves.
        raise Conflict(kind=kind, ident=ident, reason=f"it is {state}; {action} needs one of {sorted(allowed)}")
    if action == "cancel_deletion":
        return Transition(prev_state or ENABLED, transition.shown)
    return transition


def usable_for_crypto(state: str) -> bool:
    return state == ENABLED


def require_updatable(kind: str, ident: str, state: str) -> None:
    """R6.23: UpdateKey needs ENABLED (or CREATING); a PENDING_DELETION key cannot be updated."""
    if state != ENABLED:
        raise Conflict(kind=kind, ident=ident, reason=f"it is {state}; updates need ENABLED")


def deletion_time(now: datetime, requested: datetime | None) -> datetime:
    """R2.10/R2.13: between 7 and 30 days from now; 30 days when omitted."""
    if requested is None:
        return now + MAX_DELETION
    if requested < now + MIN_DELETION or requested > now + MAX_DELETION:
        raise InvalidArgument(
            field="timeOfDeletion", reason="must be between 7 and 30 days from the time of the request"
        )
    return requested


def vault_transition(ident: str, state: str, action: str) -> Transition:
    if action == "schedule_deletion":
        if state != ACTIVE:
            raise Conflict(kind="vault", ident=ident, reason=f"it is {state}; scheduling deletion needs ACTIVE")
        return Transition(PENDING_DELETION, "SCHEDULING_DELETION")
    if action == "cancel_deletion":
        if state != PENDING_DELETION:
            raise Conflict(kind="vault", ident=ident, reason=f"it is {state}; nothing to cancel")
        return Transition(ACTIVE, "CANCELLING_DELETION")
    if action == "update":
        if state != ACTIVE:
            raise Conflict(kind="vault", ident=ident, reason=f"it is {state}; updates need ACTIVE")
        return Transition(ACTIVE, ACTIVE)
    raise ValueError(action)


AES_LENGTHS = (16, 24, 32)
RSA_LENGTHS = (256, 384, 512)
ECDSA_LENGTHS = {32: "NIST_P256", 48: "NIST_P384", 66: "NIST_P521"}


def validate_shape(algorithm: str, length: int, curve_id: str | None) -> None:
    """R6.7: lengths are in bytes."""
    if algorithm == "AES" and length in AES_LENGTHS and curve_id is None:
        return
    if algorithm == "RSA" and length in RSA_LENGTHS and curve_id is None:
        return
    if algorithm == "ECDSA" and length in ECDSA_LENGTHS and curve_id in (None, ECDSA_LENGTHS[length]):
        return
    raise InvalidArgument(field="keyShape", reason=f"unsupported shape {algorithm}/{length}/{curve_id}")
