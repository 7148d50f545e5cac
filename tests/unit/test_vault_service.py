"""VaultService over a real SQLite file and a real SoftwareKeystore (oci-behaviour.md R2, R6; Part A D1, D2, D8, D9)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from blockvault.clock import OffsetClock
from blockvault.db.engine import make_engine, sqlite_url, upgrade
from blockvault.errors import (
    Conflict,
    DecryptionFailed,
    IncorrectState,
    InvalidArgument,
    KeyUnusable,
    RelatedResourceNotFound,
)
from blockvault.vault import ciphertext
from blockvault.vault.keystore.software import SoftwareKeystore
from blockvault.vault.lifecycle import ACTIVE, DELETED, DISABLED, ENABLED, PENDING_DELETION
from blockvault.vault.model import Key, Vault, WrappedDek
from blockvault.vault.service import VaultService, provider_handle

T0 = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)
COMPARTMENT = "ocid1.compartment.oc1..aaaacompartment"
CONTEXT = {"resource": "ocid1.volume.oc1.iad.aaaavolume", "purpose": "volume"}
ROOT_KEY = bytes(range(32))


# --- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock(base=lambda: T0)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(sqlite_url(tmp_path / "m.db"))
    upgrade(engine, "region")
    yield engine
    engine.dispose()


@pytest.fixture
def keystore(tmp_path: Path) -> Iterator[SoftwareKeystore]:
    store = SoftwareKeystore(tmp_path / "keystore" / "keys.db", ROOT_KEY)
    yield store
    store.close()


@pytest.fixture
def service(engine: Engine, keystore: SoftwareKeystore, clock: OffsetClock) -> VaultService:
    return VaultService(
        engine=engine,
        keystore=keystore,
        clock=clock,
        region="us-ashburn-1",
        region_key="iad",
        endpoint="http://127.0.0.1:8080/us-ashburn-1/",
    )


@pytest.fixture
def vault(service: VaultService) -> Vault:
    return _vault(service)


@pytest.fixture
def key(service: VaultService, vault: Vault) -> Key:
    return _key(service, vault)


@pytest.fixture
def events(service: VaultService) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    service.subscribe(lambda key_id, state: seen.append((key_id, state)))
    return seen


def _vault(service: VaultService) -> Vault:
    return service.create_vault(
        compartment_id=COMPARTMENT, display_name="v", vault_type="DEFAULT", freeform_tags={}, defined_tags={}
    )


def _key(
    service: VaultService, vault: Vault, *, algorithm: str = "AES", length: int = 32, curve_id: str | None = None
) -> Key:
    return service.create_key(
        vault.id,
        compartment_id=COMPARTMENT,
        display_name=f"{algorithm}-{length}",
        algorithm=algorithm,
        length=length,
        curve_id=curve_id,
        protection_mode="SOFTWARE",
        freeform_tags={},
        defined_tags={},
    )


def _assert_unusable(exc: KeyUnusable, key_id: str | None, state: str) -> None:
    assert exc.context == {"key_id": key_id, "state": state}
    assert key_id is None or key_id in exc.text
    assert state in exc.text
    assert not isinstance(exc, IncorrectState)


# --- vaults and keys ----------------------------------------------------------------------------------------------


def test_create_vault_and_key(service: VaultService, vault: Vault, key: Key) -> None:
    assert vault.id.startswith("ocid1.vault.oc1.iad.")
    assert vault.state == ACTIVE
    assert vault.time_created == T0
    assert service.get_vault(vault.id) == vault
    assert key.id.startswith("ocid1.key.oc1.iad.")
    assert key.state == ENABLED
    assert key.vault_id == vault.id
    assert service.get_key(key.id, vault.id) == key
    versions = service.list_key_versions(key.id, vault.id)
    assert [v.id for v in versions] == [key.current_version_id]
    assert versions[0].state == ENABLED


def test_create_key_stores_material_only_for_aes(
    service: VaultService, vault: Vault, keystore: SoftwareKeystore
) -> None:
    aes = _key(service, vault)
    rsa = _key(service, vault, algorithm="RSA", length=256)
    assert keystore.exists(aes.current_version_id)
    assert not keystore.exists(rsa.current_version_id)


def test_the_provider_key_exists_after_construction(service: VaultService, keystore: SoftwareKeystore) -> None:
    assert keystore.exists(provider_handle("us-ashburn-1"))


# --- Encrypt / Decrypt (R6.26) --------------------------------------------------------------------------------------


def test_encrypt_decrypt_round_trip(service: VaultService, vault: Vault, key: Key) -> None:
    data, version = service.encrypt(vault.id, key.id, b"secret", {"app": "x"})
    assert version == key.current_version_id
    assert b"secret" not in data
    assert service.decrypt(vault.id, key.id, data, {"app": "x"}) == (b"secret", version)


def test_encrypt_without_associated_data_round_trips(service: VaultService, vault: Vault, key: Key) -> None:
    data, version = service.encrypt(vault.id, key.id, b"", None)
    assert service.decrypt(vault.id, key.id, data, None) == (b"", version)


@pytest.mark.parametrize("other", [{"app": "y"}, {"app": "x", "extra": ""}, {"ap": "px"}, {}, None])
def test_decrypt_with_other_associated_data_is_invalid_argument(
    service: VaultService, vault: Vault, key: Key, other: dict[str, str] | None
) -> None:
    data, _ = service.encrypt(vault.id, key.id, b"secret", {"app": "x"})
    with pytest.raises(InvalidArgument):
        service.decrypt(vault.id, key.id, data, other)


def test_decrypt_under_another_key_is_invalid_argument(service: VaultService, vault: Vault, key: Key) -> None:
    other = _key(service, vault)
    data, _ = service.encrypt(vault.id, key.id, b"secret", None)
    with pytest.raises(InvalidArgument):
        service.decrypt(vault.id, other.id, data, None)


def _regions(data: bytes) -> dict[str, int]:
    """One byte offset in each field of the ciphertext format (vault/ciphertext.py)."""
    n = int.from_bytes(data[4:6], "big")
    return {
        "magic": 0,
        "format version": 3,
        "length": 5,
        "key version id": 6 + n // 2,
        "nonce": 6 + n + 4,
        "body": 6 + n + 12 + 2,
        "tag": len(data) - 1,
    }


@pytest.mark.parametrize("where", ["magic", "format version", "length", "key version id", "nonce", "body", "tag"])
def test_decrypt_of_a_tampered_ciphertext_is_invalid_argument(
    service: VaultService, vault: Vault, key: Key, where: str
) -> None:
    data, _ = service.encrypt(vault.id, key.id, b"secret data", None)
    tampered = bytearray(data)
    tampered[_regions(data)[where]] ^= 0x01
    # A caller's bad ciphertext is a bad value (400 InvalidParameter), whichever byte was changed.
    with pytest.raises(InvalidArgument):
        service.decrypt(vault.id, key.id, bytes(tampered), None)


@pytest.mark.parametrize("keep", [0, 3, 10, -1])
def test_decrypt_of_a_truncated_ciphertext_is_invalid_argument(
    service: VaultService, vault: Vault, key: Key, keep: int
) -> None:
    data, _ = service.encrypt(vault.id, key.id, b"secret data", None)
    with pytest.raises(InvalidArgument):
        service.decrypt(vault.id, key.id, data[:keep], None)


def test_every_single_byte_change_of_a_ciphertext_fails_to_decrypt(
    service: VaultService, vault: Vault, key: Key
) -> None:
    data, _ = service.encrypt(vault.id, key.id, b"secret data", None)
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x80
        with pytest.raises((InvalidArgument, DecryptionFailed)):
            service.decrypt(vault.id, key.id, bytes(tampered), None)


def test_generate_data_key_decrypts_to_the_plaintext_key(service: VaultService, vault: Vault, key: Key) -> None:
    dek, data = service.generate_data_key(vault.id, key.id, 32, {"a": "b"})
    assert len(dek) == 32
    assert service.decrypt(vault.id, key.id, data, {"a": "b"})[0] == dek


# --- D1: a disabled or pending-deletion key refuses every use -------------------------------------------------------


def _disable(service: VaultService, key: Key) -> str:
    service.key_action(key.id, key.vault_id, "disable")
    return DISABLED


def _schedule(service: VaultService, key: Key) -> str:
    service.key_action(key.id, key.vault_id, "schedule_deletion")
    return PENDING_DELETION


def _restore(service: VaultService, key: Key, state: str) -> None:
    service.key_action(key.id, key.vault_id, "enable" if state == DISABLED else "cancel_deletion")


@pytest.mark.parametrize("make_unusable", [_disable, _schedule], ids=["disabled", "pending-deletion"])
def test_unusable_key_refuses_crypto_naming_key_and_state(
    service: VaultService, vault: Vault, key: Key, make_unusable: Callable[[VaultService, Key], str]
) -> None:
    data, _ = service.encrypt(vault.id, key.id, b"secret", None)
    state = make_unusable(service, key)
    with pytest.raises(KeyUnusable) as info:
        service.encrypt(vault.id, key.id, b"secret", None)
    _assert_unusable(info.value, key.id, state)
    with pytest.raises(KeyUnusable) as info:
        service.decrypt(vault.id, key.id, data, None)
    _assert_unusable(info.value, key.id, state)
    with pytest.raises(KeyUnusable) as info:
        service.generate_data_key(vault.id, key.id, 32, None)
    _assert_unusable(info.value, key.id, state)


@pytest.mark.parametrize("make_unusable", [_disable, _schedule], ids=["disabled", "pending-deletion"])
def test_unusable_key_refuses_data_keys_and_restoring_loses_nothing(
    service: VaultService, vault: Vault, key: Key, make_unusable: Callable[[VaultService, Key], str]
) -> None:
    dek, wrapped = service.new_dek(key.id, CONTEXT)
    data, _ = service.encrypt(vault.id, key.id, b"secret", None)
    state = make_unusable(service, key)
    with pytest.raises(KeyUnusable) as info:
        service.unwrap(wrapped, CONTEXT)
    _assert_unusable(info.value, key.id, state)
    with pytest.raises(KeyUnusable) as info:
        service.new_dek(key.id, CONTEXT)
    _assert_unusable(info.value, key.id, state)
    with pytest.raises(KeyUnusable):
        service.rewrap(wrapped, CONTEXT, None)
    _restore(service, key, state)
    assert service.unwrap(wrapped, CONTEXT) == dek
    assert service.decrypt(vault.id, key.id, data, None)[0] == b"secret"


def test_rewrap_onto_an_unusable_key_is_refused(service: VaultService, vault: Vault, key: Key) -> None:
    other = _key(service, vault)
    service.key_action(other.id, vault.id, "disable")
    _, wrapped = service.new_dek(key.id, CONTEXT)
    with pytest.raises(KeyUnusable) as info:
        service.rewrap(wrapped, CONTEXT, other.id)
    _assert_unusable(info.value, other.id, DISABLED)


# --- data keys for services: new_dek / unwrap / rewrap (D8, D9) --------------------------------------------------


def test_new_dek_unwraps_to_the_same_dek(service: VaultService, key: Key) -> None:
    dek, wrapped = service.new_dek(key.id, CONTEXT)
    assert len(dek) == 32
    assert wrapped.key_id == key.id
    assert wrapped.key_version_id == key.current_version_id
    assert dek not in wrapped.blob
    assert service.unwrap(wrapped, CONTEXT) == dek


def test_new_dek_under_the_provider_key(service: VaultService) -> None:
    dek, wrapped = service.new_dek(None, CONTEXT)
    assert wrapped.key_id is None
    assert wrapped.key_version_id == provider_handle("us-ashburn-1")
    assert service.unwrap(wrapped, CONTEXT) == dek


def test_rewrap_key_to_key_to_provider_keeps_the_dek(service: VaultService, vault: Vault, key: Key) -> None:
    k2 = _key(service, vault)
    dek, w1 = service.new_dek(key.id, CONTEXT)
    w2 = service.rewrap(w1, CONTEXT, k2.id)
    assert (w2.key_id, w2.key_version_id) == (k2.id, k2.current_version_id)
    assert service.unwrap(w2, CONTEXT) == dek
    w3 = service.rewrap(w2, CONTEXT, None)
    assert (w3.key_id, w3.key_version_id) == (None, provider_handle("us-ashburn-1"))
    assert service.unwrap(w3, CONTEXT) == dek
    w4 = service.rewrap(w3, CONTEXT, key.id)
    assert service.unwrap(w4, CONTEXT) == dek


@pytest.mark.parametrize(
    "other",
    [
        {"resource": "ocid1.volume.oc1.iad.aaaaother", "purpose": "volume"},
        {"resource": CONTEXT["resource"], "purpose": "backup"},
        {"resource": CONTEXT["resource"]},
        {},
    ],
)
def test_unwrap_with_the_wrong_context_fails(service: VaultService, key: Key, other: dict[str, str]) -> None:
    _, wrapped = service.new_dek(key.id, CONTEXT)
    with pytest.raises(DecryptionFailed):
        service.unwrap(wrapped, other)


def test_unwrap_claiming_another_version_fails(service: VaultService, vault: Vault, key: Key) -> None:
    _, wrapped = service.new_dek(key.id, CONTEXT)
    v2 = service.create_key_version(key.id, vault.id)
    with pytest.raises(DecryptionFailed):
        service.unwrap(WrappedDek(key.id, v2.id, wrapped.blob), CONTEXT)


def test_key_version_rotation_keeps_old_wraps_readable(service: VaultService, vault: Vault, key: Key) -> None:
    dek, old = service.new_dek(key.id, CONTEXT)
    old_ct, _ = service.encrypt(vault.id, key.id, b"old", None)
    v2 = service.create_key_version(key.id, vault.id)
    assert service.get_key(key.id).current_version_id == v2.id
    assert [v.id for v in service.list_key_versions(key.id, vault.id)] == [key.current_version_id, v2.id]
    # D8: the wrapped DEK records its version and unwraps with it.
    assert service.unwrap(old, CONTEXT) == dek
    # New wraps use the new current version.
    _, new = service.new_dek(key.id, CONTEXT)
    assert new.key_version_id == v2.id
    # D9: re-wrapping under the same key moves the DEK to the current version, unchanged.
    rewrapped = service.rewrap(old, CONTEXT, key.id)
    assert rewrapped.key_version_id == v2.id
    assert service.unwrap(rewrapped, CONTEXT) == dek
    # R6.15: old versions decrypt but no longer encrypt.
    assert service.decrypt(vault.id, key.id, old_ct, None) == (b"old", key.current_version_id)
    new_ct, version = service.encrypt(vault.id, key.id, b"new", None)
    assert version == v2.id
    assert ciphertext.unpack(new_ct).key_version_id == v2.id
    with pytest.raises(InvalidArgument):
        service.encrypt(vault.id, key.id, b"x", None, key_version_id=key.current_version_id)


def test_rotation_needs_an_enabled_key(service: VaultService, vault: Vault, key: Key) -> None:
    service.key_action(key.id, vault.id, "disable")
    with pytest.raises(Conflict):
        service.create_key_version(key.id, vault.id)


# --- resolve_key (S1/S2, D13, D1) --------------------------------------------------------------------------------


def test_resolve_key_returns_an_enabled_aes_key(service: VaultService, key: Key) -> None:
    assert service.resolve_key(key.id) == key


@pytest.mark.parametrize("text", ["", "not-an-ocid", "ocid1.key", "ocid1.key.oc1.iad", "ocid1..oc1.iad.x"])
def test_resolve_key_malformed_ocid_is_invalid_argument(service: VaultService, text: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        service.resolve_key(text)
    assert info.value.context["field"] == "kmsKeyId"


def test_resolve_key_vault_ocid_is_invalid_argument(service: VaultService, vault: Vault) -> None:
    with pytest.raises(InvalidArgument) as info:
        service.resolve_key(vault.id, field="xrrKmsKeyId")
    assert info.value.context["field"] == "xrrKmsKeyId"


def test_resolve_key_unknown_key_is_related_resource_not_found(service: VaultService) -> None:
    missing = "ocid1.key.oc1.iad.aaaaprefix.aaaamissing"
    with pytest.raises(RelatedResourceNotFound) as info:
        service.resolve_key(missing)
    assert info.value.context == {"field": "kmsKeyId", "ident": missing}


@pytest.mark.parametrize(("algorithm", "length", "curve"), [("RSA", 256, None), ("ECDSA", 32, "NIST_P256")])
def test_resolve_key_non_aes_key_is_invalid_argument(
    service: VaultService, vault: Vault, algorithm: str, length: int, curve: str | None
) -> None:
    other = _key(service, vault, algorithm=algorithm, length=length, curve_id=curve)
    with pytest.raises(InvalidArgument) as info:
        service.resolve_key(other.id)
    assert algorithm in info.value.text


def test_resolve_key_of_another_region_is_invalid_argument(service: VaultService) -> None:
    with pytest.raises(InvalidArgument) as info:
        service.resolve_key("ocid1.key.oc1.phx.x.y")
    assert "us-ashburn-1" in info.value.text


def test_resolve_key_of_another_region_is_refused_even_if_the_id_exists_here(service: VaultService, key: Key) -> None:
    moved = key.id.replace(".iad.", ".phx.", 1)
    with pytest.raises(InvalidArgument):
        service.resolve_key(moved)


def test_resolve_key_disabled_is_key_unusable(service: VaultService, vault: Vault, key: Key) -> None:
    service.key_action(key.id, vault.id, "disable")
    with pytest.raises(KeyUnusable) as info:
        service.resolve_key(key.id)
    _assert_unusable(info.value, key.id, DISABLED)


# --- key actions and listeners -----------------------------------------------------------------------------------


def test_listeners_hear_disable_enable_schedule_cancel(
    service: VaultService, vault: Vault, key: Key, events: list[tuple[str, str]]
) -> None:
    assert service.key_action(key.id, vault.id, "disable")[1] == "DISABLING"
    assert service.key_action(key.id, vault.id, "enable")[1] == "ENABLING"
    assert service.key_action(key.id, vault.id, "disable")[1] == "DISABLING"
    scheduled, shown = service.key_action(key.id, vault.id, "schedule_deletion")
    assert shown == "SCHEDULING_DELETION"
    assert scheduled.time_of_deletion == T0 + timedelta(days=30)
    cancelled, shown = service.key_action(key.id, vault.id, "cancel_deletion")
    assert shown == "CANCELLING_DELETION"
    # R2.4: cancelling returns to the state before scheduling.
    assert cancelled.state == DISABLED
    assert cancelled.time_of_deletion is None
    assert events == [
        (key.id, DISABLED),
        (key.id, ENABLED),
        (key.id, DISABLED),
        (key.id, PENDING_DELETION),
        (key.id, DISABLED),
    ]
    assert service.get_key(key.id).state == DISABLED


def test_refused_action_is_conflict_and_notifies_nobody(
    service: VaultService, vault: Vault, key: Key, events: list[tuple[str, str]]
) -> None:
    with pytest.raises(Conflict) as info:
        service.key_action(key.id, vault.id, "enable")
    assert not isinstance(info.value, IncorrectState)
    assert events == []


def test_schedule_deletion_window_is_checked(service: VaultService, vault: Vault, key: Key) -> None:
    with pytest.raises(InvalidArgument):
        service.key_action(key.id, vault.id, "schedule_deletion", T0 + timedelta(days=6, hours=23))
    with pytest.raises(InvalidArgument):
        service.key_action(key.id, vault.id, "schedule_deletion", T0 + timedelta(days=30, seconds=1))
    updated, _ = service.key_action(key.id, vault.id, "schedule_deletion", T0 + timedelta(days=7))
    assert updated.time_of_deletion == T0 + timedelta(days=7)


# --- process_deletions (R2.5, D2) --------------------------------------------------------------------------------


def test_process_deletions_destroys_the_key_once_its_time_has_passed(
    service: VaultService,
    vault: Vault,
    key: Key,
    keystore: SoftwareKeystore,
    clock: OffsetClock,
    events: list[tuple[str, str]],
) -> None:
    dek, wrapped = service.new_dek(key.id, CONTEXT)
    v2 = service.create_key_version(key.id, vault.id)
    version_ids = [key.current_version_id, v2.id]
    scheduled, _ = service.key_action(key.id, vault.id, "schedule_deletion", T0 + timedelta(days=10))
    events.clear()

    assert service.process_deletions() == []
    clock.advance(timedelta(days=9, hours=23))
    assert service.process_deletions() == []
    assert service.get_key(key.id).state == PENDING_DELETION
    assert all(keystore.exists(v) for v in version_ids)
    service.key_action(key.id, vault.id, "cancel_deletion")
    assert service.unwrap(wrapped, CONTEXT) == dek  # still recoverable before the time
    service.key_action(key.id, vault.id, "schedule_deletion", clock.now() + timedelta(days=7))
    events.clear()

    clock.advance(timedelta(days=7, seconds=1))
    assert service.process_deletions() == [key.id]
    assert service.get_key(key.id).state == DELETED
    assert {v.state for v in service.list_key_versions(key.id, vault.id)} == {DELETED}
    for version_id in version_ids:
        assert keystore.exists(version_id) is False
    assert events == [(key.id, DELETED)]
    with pytest.raises(KeyUnusable) as info:
        service.unwrap(wrapped, CONTEXT)
    _assert_unusable(info.value, key.id, DELETED)
    with pytest.raises(RelatedResourceNotFound):
        service.resolve_key(key.id)
    with pytest.raises(Conflict):
        service.key_action(key.id, vault.id, "cancel_deletion")
    # Idempotent: a second pass finds nothing more to destroy.
    assert service.process_deletions() == []
    assert scheduled.time_of_deletion == T0 + timedelta(days=10)


def test_process_deletions_leaves_other_keys_alone(
    service: VaultService, vault: Vault, key: Key, keystore: SoftwareKeystore, clock: OffsetClock
) -> None:
    other = _key(service, vault)
    dek, wrapped = service.new_dek(other.id, CONTEXT)
    service.key_action(key.id, vault.id, "schedule_deletion")
    clock.advance(timedelta(days=31))
    assert service.process_deletions() == [key.id]
    assert keystore.exists(other.current_version_id)
    assert service.unwrap(wrapped, CONTEXT) == dek


# --- vault deletion (R2.13, R2.14) -------------------------------------------------------------------------------


def test_vault_deletion_moves_keys_and_cancel_restores_them(
    service: VaultService, vault: Vault, clock: OffsetClock, events: list[tuple[str, str]]
) -> None:
    enabled = _key(service, vault)
    disabled = _key(service, vault)
    earlier = _key(service, vault)
    service.key_action(disabled.id, vault.id, "disable")
    own_time = T0 + timedelta(days=10)
    service.key_action(earlier.id, vault.id, "schedule_deletion", own_time)
    events.clear()

    pending, shown = service.schedule_vault_deletion(vault.id, None)
    at = T0 + timedelta(days=30)
    assert (pending.state, shown, pending.time_of_deletion) == (PENDING_DELETION, "SCHEDULING_DELETION", at)
    assert service.get_vault(vault.id).state == PENDING_DELETION
    for k in (enabled, disabled):
        stored = service.get_key(k.id)
        assert (stored.state, stored.time_of_deletion) == (PENDING_DELETION, at)
    stored = service.get_key(earlier.id)
    assert (stored.state, stored.time_of_deletion) == (PENDING_DELETION, own_time)
    assert sorted(events) == sorted([(enabled.id, PENDING_DELETION), (disabled.id, PENDING_DELETION)])
    with pytest.raises(KeyUnusable) as info:
        service.encrypt(vault.id, enabled.id, b"x", None)
    _assert_unusable(info.value, enabled.id, PENDING_DELETION)
    events.clear()

    restored, shown = service.cancel_vault_deletion(vault.id)
    assert (restored.state, shown, restored.time_of_deletion) == (ACTIVE, "CANCELLING_DELETION", None)
    assert service.get_vault(vault.id).state == ACTIVE
    assert service.get_key(enabled.id).state == ENABLED
    assert service.get_key(disabled.id).state == DISABLED
    stored = service.get_key(earlier.id)
    assert (stored.state, stored.time_of_deletion) == (PENDING_DELETION, own_time)
    assert sorted(events) == sorted([(enabled.id, ENABLED), (disabled.id, DISABLED)])
    service.encrypt(vault.id, enabled.id, b"x", None)


def test_vault_deletion_refused_when_a_key_is_scheduled_after_it(service: VaultService, vault: Vault) -> None:
    key = _key(service, vault)
    service.key_action(key.id, vault.id, "schedule_deletion", T0 + timedelta(days=20))
    with pytest.raises(Conflict) as info:
        service.schedule_vault_deletion(vault.id, T0 + timedelta(days=10))
    assert not isinstance(info.value, IncorrectState)
    assert service.get_vault(vault.id).state == ACTIVE


def test_cancel_vault_deletion_keeps_a_key_scheduled_before_at_the_same_time(
    service: VaultService, vault: Vault
) -> None:
    """R2.14: a key scheduled on its own keeps its deletion, even when its time equals the vault's."""
    key = _key(service, vault)
    same = T0 + timedelta(days=20)
    service.key_action(key.id, vault.id, "schedule_deletion", same)
    service.schedule_vault_deletion(vault.id, same)
    service.cancel_vault_deletion(vault.id)
    stored = service.get_key(key.id)
    assert (stored.state, stored.time_of_deletion) == (PENDING_DELETION, same)


def test_keys_of_a_pending_deletion_vault_cannot_be_enabled_or_scheduled(
    service: VaultService, vault: Vault, key: Key
) -> None:
    service.schedule_vault_deletion(vault.id, None)
    with pytest.raises(Conflict):
        service.key_action(key.id, vault.id, "enable")
    with pytest.raises(Conflict):
        service.create_key_version(key.id, vault.id)
    with pytest.raises(Conflict):
        _key(service, vault)


def test_process_deletions_deletes_the_vault_and_its_keys(
    service: VaultService, vault: Vault, key: Key, keystore: SoftwareKeystore, clock: OffsetClock
) -> None:
    service.schedule_vault_deletion(vault.id, T0 + timedelta(days=7))
    clock.advance(timedelta(days=7))
    assert service.process_deletions() == [key.id]
    assert service.get_vault(vault.id).state == DELETED
    assert service.get_key(key.id).state == DELETED
    assert not keystore.exists(key.current_version_id)
