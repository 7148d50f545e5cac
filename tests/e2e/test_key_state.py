"""Flow 8: what a key's state does to the volumes and backups it protects (oci-behaviour.md D1, D2, R2.1-R2.5).

D1: while the key is DISABLED or PENDING_DELETION every operation that needs the DEK fails with 409 Conflict naming
the key and its state, nothing changes (no new volume or backup appears), and lifecycle states stay; enabling or
cancelling the deletion brings everything back with nothing lost.
D2: once the key is deleted, what only it protected is FAULTY and unreadable for good; what was re-keyed before is
untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import oci
import pytest
from helpers import (
    DAY,
    KIB,
    MIB,
    Image,
    Sdk,
    advance_clock,
    assert_error_response,
    days_ahead,
    expect_error,
    expect_key_unusable,
    payload,
    put,
    read_response,
    seed_image,
    verify,
    write_response,
)

pytestmark = pytest.mark.e2e


@dataclass
class Env:
    sdk: Sdk
    compartment: str
    vault: Any
    k: str
    k2: str


@pytest.fixture(scope="module")
def env(server: Any) -> Env:
    sdk = Sdk(server)
    compartment = sdk.new_compartment("key-state")
    vault = sdk.new_vault(compartment, "vault-key-state")
    return Env(
        sdk, compartment, vault, sdk.new_key(vault, compartment, "k").id, sdk.new_key(vault, compartment, "k2").id
    )


def _assert_everything_refused(
    server: Any, env: Env, volume_id: str, backup_id: str, image: Image, state: str, tmp_path: Any
) -> None:
    sdk, bs, k = env.sdk, env.sdk.bs, env.k
    volumes, backups = sdk.volume_ids(env.compartment), sdk.backup_ids(env.compartment)

    assert_error_response(read_response(server, volume_id, 0, 4 * KIB), 409, "Conflict", k, state)
    assert_error_response(write_response(server, volume_id, 100, b"must not land"), 409, "Conflict", k, state)

    expect_key_unusable(lambda: sdk.backup(volume_id, "FULL", wait=False), k, state)
    expect_key_unusable(lambda: sdk.backup(volume_id, "INCREMENTAL", wait=False), k, state)
    expect_key_unusable(lambda: sdk.clone(env.compartment, volume_id, wait=False), k, state)
    expect_key_unusable(lambda: sdk.clone(env.compartment, volume_id, kms_key_id=env.k2, wait=False), k, state)
    expect_key_unusable(lambda: sdk.restore(env.compartment, backup_id, wait=False), k, state)
    expect_key_unusable(lambda: sdk.restore(env.compartment, backup_id, kms_key_id=env.k2, wait=False), k, state)
    expect_key_unusable(
        lambda: sdk.create_volume(env.compartment, name="new-under-k", kms_key_id=k, wait=False), k, state
    )
    expect_key_unusable(
        lambda: bs.update_volume_kms_key(volume_id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=env.k2)),
        k,
        state,
    )
    expect_key_unusable(lambda: bs.delete_volume_kms_key(volume_id), k, state)
    expect_key_unusable(
        lambda: bs.update_volume_backup(backup_id, oci.core.models.UpdateVolumeBackupDetails(kms_key_id=env.k2)),
        k,
        state,
    )
    expect_key_unusable(
        lambda: bs.update_volume_backup(backup_id, oci.core.models.UpdateVolumeBackupDetails(kms_key_id="")), k, state
    )
    # Moving another volume onto the key is refused too.
    other = sdk.create_volume(env.compartment, name=f"other-{state}")
    expect_key_unusable(
        lambda: bs.update_volume_kms_key(other.id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=k)), k, state
    )
    assert bs.get_volume(other.id).data.kms_key_id is None

    # The real CLI gets the same permanent error, and exits non-zero at once (no retries: it is not
    # IncorrectState).
    cli = server.oci("bv", "backup", "create", "--volume-id", volume_id, "--type", "FULL", check=False)
    assert cli.rc != 0
    assert (cli.error["status"], cli.error["code"]) == (409, "Conflict")
    assert k in cli.error["message"]
    assert state in cli.error["message"]
    # And so does ours.
    ours = server.bv(
        "volume", "read", volume_id, "--to-file", str(tmp_path / f"read-{state}"), "--length", "4096", check=False
    )
    assert ours.rc != 0
    assert ours.error["code"] == "Conflict"
    assert k in ours.error["message"]

    # Nothing changed: no new volume or backup, states and keys as before (D1: lifecycleState stays).
    assert sdk.volume_ids(env.compartment) == volumes | {other.id}
    assert sdk.backup_ids(env.compartment) == backups
    volume = bs.get_volume(volume_id).data
    assert (volume.lifecycle_state, volume.kms_key_id) == ("AVAILABLE", k)
    backup = bs.get_volume_backup(backup_id).data
    assert (backup.lifecycle_state, backup.kms_key_id) == ("AVAILABLE", k)


def _assert_everything_works(
    server: Any, env: Env, volume_id: str, backup_id: str, image: Image, at_backup: Image, tag: str
) -> None:
    sdk, bs = env.sdk, env.sdk.bs
    verify(server, volume_id, image)  # nothing was lost, and the refused write did not land
    put(server, volume_id, image, 11 * MIB + 11, payload(64 * KIB, f"works-{tag}"))
    verify(server, volume_id, image)

    backup = sdk.backup(volume_id, "FULL", name=f"works-{tag}")
    assert (backup.lifecycle_state, backup.kms_key_id) == ("AVAILABLE", env.k)
    clone = sdk.clone(env.compartment, volume_id, name=f"clone-{tag}")
    assert clone.kms_key_id == env.k
    restored = sdk.restore(env.compartment, backup_id, kms_key_id=env.k, name=f"restore-{tag}")
    assert restored.lifecycle_state == "AVAILABLE"
    sdk.wait_hydrated(clone.id)
    verify(server, clone.id, image)
    verify(server, restored.id, at_backup)

    moved = bs.update_volume_kms_key(volume_id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=env.k2))
    assert moved.data.kms_key_id == env.k2
    back = bs.update_volume_kms_key(volume_id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=env.k))
    assert back.data.kms_key_id == env.k
    verify(server, volume_id, image)


def test_unusable_key_refuses_everything_and_nothing_is_lost(server: Any, env: Env, tmp_path: Any) -> None:
    sdk = env.sdk
    mgmt = sdk.mgmt(env.vault)
    volume = sdk.create_volume(env.compartment, name="under-k", kms_key_id=env.k)
    image = seed_image(server, volume.id, "key-state")
    backup = sdk.backup(volume.id, "FULL", name="under-k")
    assert (backup.lifecycle_state, backup.kms_key_id) == ("AVAILABLE", env.k)
    at_backup = image.copy()
    put(server, volume.id, image, 2 * MIB + 1, payload(MIB, "after-backup"))
    verify(server, volume.id, image)

    # Disabled (R2.1/R2.2).
    shown = mgmt.disable_key(env.k).data
    assert shown.lifecycle_state in ("DISABLING", "DISABLED")
    assert sdk.key_state(env.vault, env.k) == "DISABLED"
    _assert_everything_refused(server, env, volume.id, backup.id, image, "DISABLED", tmp_path)
    mgmt.enable_key(env.k)
    assert sdk.key_state(env.vault, env.k) == "ENABLED"
    _assert_everything_works(server, env, volume.id, backup.id, image, at_backup, "enabled")

    # Pending deletion (R2.3/R2.4).
    when = days_ahead(server, 10)
    shown = mgmt.schedule_key_deletion(
        env.k, oci.key_management.models.ScheduleKeyDeletionDetails(time_of_deletion=when)
    ).data
    assert shown.lifecycle_state in ("SCHEDULING_DELETION", "PENDING_DELETION")
    assert sdk.key_state(env.vault, env.k) == "PENDING_DELETION"
    _assert_everything_refused(server, env, volume.id, backup.id, image, "PENDING_DELETION", tmp_path)
    mgmt.cancel_key_deletion(env.k)
    assert sdk.key_state(env.vault, env.k) == "ENABLED"
    assert mgmt.get_key(env.k).data.time_of_deletion is None
    _assert_everything_works(server, env, volume.id, backup.id, image, at_backup, "cancelled")


def test_deleted_key_shreds_only_what_it_alone_protected(server: Any, env: Env) -> None:
    sdk, bs = env.sdk, env.sdk.bs
    mgmt = sdk.mgmt(env.vault)
    kd = sdk.new_key(env.vault, env.compartment, "doomed").id

    a = sdk.create_volume(env.compartment, name="a-under-doomed", kms_key_id=kd)
    a_image = seed_image(server, a.id, "shred-a")
    b = sdk.create_volume(env.compartment, name="b-rekeyed", kms_key_id=kd)
    b_image = seed_image(server, b.id, "shred-b")
    a_backup = sdk.backup(a.id, "FULL", name="a-backup")
    assert (a_backup.lifecycle_state, a_backup.kms_key_id) == ("AVAILABLE", kd)
    # B leaves the key before the deletion (R1.9): only its DEK is re-wrapped.
    assert (
        bs.update_volume_kms_key(b.id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=env.k2)).data.kms_key_id
        == env.k2
    )
    b_backup = sdk.backup(b.id, "FULL", name="b-backup")
    assert (b_backup.lifecycle_state, b_backup.kms_key_id) == ("AVAILABLE", env.k2)
    # A clone of A under another key, fully hydrated, no longer needs A's key.
    c = sdk.clone(env.compartment, a.id, kms_key_id=env.k2, name="c-clone-of-a")
    assert sdk.wait_hydrated(c.id).is_hydrated is True
    verify(server, c.id, a_image)

    mgmt.schedule_key_deletion(kd, oci.key_management.models.ScheduleKeyDeletionDetails())  # default: 30 days
    key = mgmt.get_key(kd).data
    assert key.lifecycle_state == "PENDING_DELETION"
    assert key.time_of_deletion is not None
    result = advance_clock(server, 31 * DAY)
    assert kd in result.get("keysDestroyed", [kd])
    assert sdk.key_state(env.vault, kd) == "DELETED"

    # D2: A and A's backup are FAULTY and unreadable.
    assert bs.get_volume(a.id).data.lifecycle_state == "FAULTY"
    assert bs.get_volume_backup(a_backup.id).data.lifecycle_state == "FAULTY"
    resp = read_response(server, a.id, 0, 4 * KIB)
    assert resp.status_code >= 400
    assert resp.content != a_image.expected(0, 4 * KIB)
    assert_error_response(resp, 409, "Conflict", kd)
    volumes, backups = sdk.volume_ids(env.compartment), sdk.backup_ids(env.compartment)
    expect_error(lambda: sdk.restore(env.compartment, a_backup.id, wait=False), 409, "Conflict")
    expect_error(lambda: sdk.restore(env.compartment, a_backup.id, kms_key_id=env.k2, wait=False), 409, "Conflict")
    expect_error(lambda: sdk.backup(a.id, "FULL", wait=False), 409, "Conflict")
    # A clone of a source that is not AVAILABLE (here FAULTY) is refused, with the real CLI too (R4.7).
    expect_error(lambda: sdk.clone(env.compartment, a.id, kms_key_id=env.k2, wait=False), 409, "Conflict")
    cli = server.oci("bv", "volume", "create", "--source-volume-id", a.id, "--kms-key-id", env.k2, check=False)
    assert cli.rc != 0
    assert (cli.error["status"], cli.error["code"]) == (409, "Conflict")
    # Nor can anything move A or its backup to another key: there is no DEK left to re-wrap.
    expect_error(
        lambda: bs.update_volume_kms_key(a.id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=env.k2)),
        409,
        "Conflict",
    )
    expect_error(
        lambda: bs.update_volume_backup(a_backup.id, oci.core.models.UpdateVolumeBackupDetails(kms_key_id=env.k2)),
        409,
        "Conflict",
    )
    # A deleted key is not usable for new volumes either (it no longer exists for the service).
    expect_error(
        lambda: sdk.create_volume(env.compartment, name="on-deleted", kms_key_id=kd, wait=False),
        400,
        "RelatedResourceNotAuthorizedOrNotFound",
    )
    assert sdk.volume_ids(env.compartment) == volumes
    assert sdk.backup_ids(env.compartment) == backups
    assert bs.get_volume(a.id).data.lifecycle_state == "FAULTY"
    # The key cannot come back by enabling or cancelling.
    expect_error(lambda: mgmt.enable_key(kd), 409, "Conflict")
    expect_error(lambda: mgmt.cancel_key_deletion(kd), 409, "Conflict")

    # B, its backup and the hydrated clone C are untouched, byte for byte.
    b_now = bs.get_volume(b.id).data
    assert (b_now.lifecycle_state, b_now.kms_key_id) == ("AVAILABLE", env.k2)
    verify(server, b.id, b_image)
    put(server, b.id, b_image, 4 * MIB + 3, payload(MIB, "b-after-shred"))
    verify(server, b.id, b_image)
    assert bs.get_volume_backup(b_backup.id).data.lifecycle_state == "AVAILABLE"
    restored = sdk.restore(env.compartment, b_backup.id, name="b-restored")
    assert restored.lifecycle_state == "AVAILABLE"
    verify(server, restored.id, Image(b_image.writes[:4]))
    assert bs.get_volume(c.id).data.lifecycle_state == "AVAILABLE"
    verify(server, c.id, a_image)
