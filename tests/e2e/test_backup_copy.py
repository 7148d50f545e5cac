"""Cross-region backup copy (S12, S14; oci-behaviour.md R3.25-R3.32, D11, D13; oci-wire.md §4.3).

`POST /volumeBackups/{id}/actions/copy` on the SOURCE region's endpoint answers 200 with the new backup of the
destination region (CREATING, then AVAILABLE). The copy is encrypted under a key of the destination region, or the
destination's provider-managed key when none is named (R3.26), never the source's key; it restores byte for byte.
The real CLI's `--wait-for-state` polls the copy's id on the SOURCE endpoint (its --endpoint wins over the rebuilt
destination client), which blockvault answers by routing the GET to the region named in the OCID.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import oci
import pytest
from helpers import (
    MIB,
    Image,
    Sdk,
    expect_error,
    expect_key_unusable,
    keys_in_two_regions,
    put,
    raw,
    seed_image,
    verify,
    wait_for,
)
from iam_helpers import new_user, oci_as, policy

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"
models = oci.core.models


@dataclass
class World:
    server: Any
    iad: Sdk
    phx: Sdk
    compartment: str
    iad_key: Any
    phx_vault: Any
    phx_key: Any
    volume_id: str
    image: Image
    backup: Any


@pytest.fixture(scope="module")
def world(server: Any) -> World:
    """One source: a 50 GB volume in ashburn under an ashburn key, seeded with data, and a FULL backup of it."""
    r = keys_in_two_regions(server, "copy")
    iad, phx, compartment, iad_key, phx_vault, phx_key = r.iad, r.phx, r.compartment, r.iad_key, r.phx_vault, r.phx_key
    volume = iad.create_volume(compartment, name="copy-src", kms_key_id=iad_key.id)
    image = seed_image(server, volume.id, "copy")
    backup = iad.backup(volume.id, "FULL", name="copy-src-backup")
    assert backup.lifecycle_state == "AVAILABLE"
    # written after the backup: must not show up in any copy
    put(server, volume.id, image.copy(), 0, b"\xff" * MIB)
    return World(server, iad, phx, compartment, iad_key, phx_vault, phx_key, volume.id, image, backup)


def _phx_backup_ids(world: World) -> set[str]:
    return world.phx.backup_ids(world.compartment)


def _restore_in_phoenix(world: World, copy_id: str) -> str:
    restored = world.phx.restore(world.compartment, copy_id, name="from-copy")
    assert restored.lifecycle_state == "AVAILABLE", restored
    assert restored.id.startswith("ocid1.volume.oc1.phx.")
    return str(restored.id)


def test_cli_copy_with_a_phoenix_key_waits_on_the_source_endpoint_and_restores_byte_for_byte(world: World) -> None:
    server = world.server
    out = server.oci(
        "bv",
        "backup",
        "copy",
        "--volume-backup-id",
        world.backup.id,
        "--destination-region",
        PHX,
        "--kms-key-id",
        world.phx_key.id,
        "--display-name",
        "cp-cli",
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
        endpoint=server.endpoint(IAD),
    ).json["data"]
    assert out["id"].startswith("ocid1.volumebackup.oc1.phx.")
    assert out["lifecycle-state"] == "AVAILABLE"
    assert out["kms-key-id"] == world.phx_key.id
    assert out["source-volume-backup-id"] == world.backup.id
    assert out["display-name"] == "cp-cli"
    assert (out["type"], out["size-in-gbs"]) == ("FULL", 50)
    assert out["volume-id"] == world.volume_id
    assert out["compartment-id"] == world.compartment

    # the copy lives in phoenix: its own endpoint shows the same resource, and ashburn's list does not have it
    copy = world.phx.bs.get_volume_backup(out["id"]).data
    assert (copy.lifecycle_state, copy.kms_key_id, copy.source_volume_backup_id) == (
        "AVAILABLE",
        world.phx_key.id,
        world.backup.id,
    )
    assert out["id"] in _phx_backup_ids(world)
    assert out["id"] not in world.iad.backup_ids(world.compartment)
    # the source backup is untouched (its key too)
    source = world.iad.bs.get_volume_backup(world.backup.id).data
    assert (source.kms_key_id, source.source_volume_backup_id) == (world.iad_key.id, None)

    restored = _restore_in_phoenix(world, out["id"])
    verify(server, restored, world.image, region=PHX)


def test_sdk_copy_without_a_key_uses_the_destination_provider_key(world: World) -> None:
    resp = world.iad.bs.copy_volume_backup(
        world.backup.id, models.CopyVolumeBackupDetails(destination_region=PHX, display_name="cp-sdk")
    )
    assert resp.status == 200
    for header in ("etag", "opc-request-id", "opc-work-request-id"):
        assert resp.headers.get(header), header
    copy = resp.data
    assert copy.lifecycle_state == "CREATING"
    assert copy.id.startswith("ocid1.volumebackup.oc1.phx.")
    assert copy.kms_key_id is None  # R3.26: never the source's key
    assert copy.source_volume_backup_id == world.backup.id

    # the work request is the destination's
    job = raw(world.server, "GET", f"/20160918/workRequests/{resp.headers['opc-work-request-id']}", region=PHX)
    assert job.status_code == 200, job.text
    assert job.json()["operationType"] == "CopyBackup"

    done = world.phx.wait_backup(copy.id)
    assert (done.lifecycle_state, done.kms_key_id, done.type) == ("AVAILABLE", None, "FULL")
    assert done.unique_size_in_gbs >= 1
    # ashburn's endpoint answers a GET of the phoenix copy (routed by the OCID's region code)
    assert world.iad.bs.get_volume_backup(copy.id).data.id == copy.id

    restored = _restore_in_phoenix(world, copy.id)
    verify(world.server, restored, world.image, region=PHX)


def test_an_ashburn_key_is_refused_and_nothing_is_created_in_phoenix(world: World) -> None:
    before = _phx_backup_ids(world)
    details = models.CopyVolumeBackupDetails(destination_region=PHX, kms_key_id=world.iad_key.id)
    expect_error(lambda: world.iad.bs.copy_volume_backup(world.backup.id, details), 400, "InvalidParameter", PHX)
    # malformed, unknown and RSA keys: the usual errors
    bad = models.CopyVolumeBackupDetails(destination_region=PHX, kms_key_id="not-an-ocid")
    expect_error(lambda: world.iad.bs.copy_volume_backup(world.backup.id, bad), 400, "InvalidParameter")
    unknown = world.phx_key.id[:-6] + "zzzzzz"
    absent = models.CopyVolumeBackupDetails(destination_region=PHX, kms_key_id=unknown)
    expect_error(
        lambda: world.iad.bs.copy_volume_backup(world.backup.id, absent), 400, "RelatedResourceNotAuthorizedOrNotFound"
    )
    rsa = world.phx.new_key(world.phx_vault, world.compartment, "phx-rsa", algorithm="RSA", length=256)
    with_rsa = models.CopyVolumeBackupDetails(destination_region=PHX, kms_key_id=rsa.id)
    expect_error(lambda: world.iad.bs.copy_volume_backup(world.backup.id, with_rsa), 400, "InvalidParameter", "AES")
    assert _phx_backup_ids(world) == before


def test_a_disabled_phoenix_key_is_409_conflict(world: World) -> None:
    key = world.phx.new_key(world.phx_vault, world.compartment, "phx-disabled")
    world.phx.disable_key(world.phx_vault, key.id)
    before = _phx_backup_ids(world)
    details = models.CopyVolumeBackupDetails(destination_region=PHX, kms_key_id=key.id)
    expect_key_unusable(lambda: world.iad.bs.copy_volume_backup(world.backup.id, details), key.id, "DISABLED")
    res = world.server.oci(
        "bv",
        "backup",
        "copy",
        "--volume-backup-id",
        world.backup.id,
        "--destination-region",
        PHX,
        "--kms-key-id",
        key.id,
        check=False,
    )
    assert res.rc != 0
    assert (res.error["status"], res.error["code"]) == (409, "Conflict")
    assert _phx_backup_ids(world) == before


def test_a_disabled_source_key_is_409_conflict(world: World) -> None:
    """D1: reading the source needs its key."""
    vault = world.iad.new_vault(world.compartment, "iad-vault-2")
    key = world.iad.new_key(vault, world.compartment, "iad-key-2")
    volume = world.iad.create_volume(world.compartment, name="copy-src-2", kms_key_id=key.id)
    backup = world.iad.backup(volume.id, "FULL")
    world.iad.disable_key(vault, key.id)
    before = _phx_backup_ids(world)
    details = models.CopyVolumeBackupDetails(destination_region=PHX)
    expect_key_unusable(lambda: world.iad.bs.copy_volume_backup(backup.id, details), key.id, "DISABLED")
    assert _phx_backup_ids(world) == before
    world.iad.enable_key(vault, key.id)


@pytest.mark.parametrize("destination", [IAD, "eu-frankfurt-1", ""])
def test_destination_must_be_another_region_this_blockvault_serves(world: World, destination: str) -> None:
    before = _phx_backup_ids(world)
    details = models.CopyVolumeBackupDetails(destination_region=destination)
    expect_error(lambda: world.iad.bs.copy_volume_backup(world.backup.id, details), 400, "InvalidParameter")
    assert _phx_backup_ids(world) == before


def test_cli_destination_errors_are_400(world: World) -> None:
    for destination in (IAD, "eu-frankfurt-1"):
        res = world.server.oci(
            "bv",
            "backup",
            "copy",
            "--volume-backup-id",
            world.backup.id,
            "--destination-region",
            destination,
            check=False,
        )
        assert res.rc != 0
        assert (res.error["status"], res.error["code"]) == (400, "InvalidParameter"), res.err


def test_copy_of_an_unknown_backup_is_404(world: World) -> None:
    missing = world.backup.id[:-6] + "zzzzzz"
    details = models.CopyVolumeBackupDetails(destination_region=PHX)
    expect_error(lambda: world.iad.bs.copy_volume_backup(missing, details), 404, "NotAuthorizedOrNotFound")
    # a phoenix backup is not on ashburn's copy route (the copy is asked of the source region)
    expect_error(lambda: world.phx.bs.copy_volume_backup(world.backup.id, details), 404, "NotAuthorizedOrNotFound")


def test_copy_back_from_phoenix_to_ashburn(world: World) -> None:
    copy = world.iad.bs.copy_volume_backup(world.backup.id, models.CopyVolumeBackupDetails(destination_region=PHX)).data
    world.phx.wait_backup(copy.id)
    back = world.phx.bs.copy_volume_backup(
        copy.id, models.CopyVolumeBackupDetails(destination_region=IAD, kms_key_id=world.iad_key.id)
    ).data
    assert back.id.startswith("ocid1.volumebackup.oc1.iad.")
    done = world.iad.wait_backup(back.id)
    assert (done.kms_key_id, done.source_volume_backup_id) == (world.iad_key.id, copy.id)
    restored = world.iad.restore(world.compartment, back.id, name="round-trip")
    verify(world.server, restored.id, world.image, region=IAD)


def _boot_put(server: Any, boot_id: str, offset: int, data: bytes) -> None:
    resp = raw(
        server,
        "PUT",
        f"/20160918/bootVolumes/{boot_id}/data",
        data=data,
        params={"offset": offset},
        headers={"content-type": "application/octet-stream"},
    )
    assert resp.status_code == 200, resp.text


def _boot_get(server: Any, boot_id: str, offset: int, length: int, region: str) -> bytes:
    resp = raw(
        server,
        "GET",
        f"/20160918/bootVolumes/{boot_id}/data",
        region=region,
        params={"offset": offset, "length": length},
    )
    assert resp.status_code == 200, resp.text
    return resp.content


def test_boot_volume_backup_copy_with_the_cli(world: World) -> None:
    server, iad, phx = world.server, world.iad, world.phx
    boot = iad.bs.create_boot_volume(
        models.CreateBootVolumeDetails(
            compartment_id=world.compartment,
            availability_domain=iad.ad(1),
            size_in_gbs=50,
            kms_key_id=world.iad_key.id,
            display_name="boot-src",
        )
    ).data
    wait_for(lambda: iad.bs.get_boot_volume(boot.id).data, lambda b: b.lifecycle_state == "AVAILABLE")
    data = uuid.uuid4().bytes * (64 * 1024 + 3)
    _boot_put(server, boot.id, 4096 + 7, data)
    backup = iad.bs.create_boot_volume_backup(
        models.CreateBootVolumeBackupDetails(boot_volume_id=boot.id, type="FULL")
    ).data
    wait_for(lambda: iad.bs.get_boot_volume_backup(backup.id).data, lambda b: b.lifecycle_state == "AVAILABLE")

    out = server.oci(
        "bv",
        "boot-volume-backup",
        "copy",
        "--boot-volume-backup-id",
        backup.id,
        "--destination-region",
        PHX,
        "--kms-key-id",
        world.phx_key.id,
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ).json["data"]
    assert out["id"].startswith("ocid1.bootvolumebackup.oc1.phx.")
    assert (out["lifecycle-state"], out["kms-key-id"]) == ("AVAILABLE", world.phx_key.id)
    assert out["source-boot-volume-backup-id"] == backup.id
    assert out["boot-volume-id"] == boot.id

    restored = phx.bs.create_boot_volume(
        models.CreateBootVolumeDetails(
            compartment_id=world.compartment,
            availability_domain=phx.ad(1),
            source_details=models.BootVolumeSourceFromBootVolumeBackupDetails(id=out["id"]),
        )
    ).data
    restored = wait_for(lambda: phx.bs.get_boot_volume(restored.id).data, lambda b: b.lifecycle_state == "AVAILABLE")
    assert restored.kms_key_id is None  # R3.18: a restore without a key gets the provider key
    assert _boot_get(server, restored.id, 4096 + 7, len(data), PHX) == data
    assert _boot_get(server, restored.id, 0, 4096 + 7, PHX) == bytes(4096 + 7)


def test_copy_needs_the_copy_permission(world: World, tmp_path_factory: pytest.TempPathFactory) -> None:
    """R3.31: VOLUME_BACKUP_READ + VOLUME_BACKUP_COPY on the source, VOLUME_BACKUP_CREATE for the copy; a
    `read volume-backups` user gets the 404 an absent backup gets, a `manage volume-backups` user may copy."""
    server = world.server
    user = new_user(server, tmp_path_factory.mktemp("copy-iam"), "copier")
    group = f"copiers-{uuid.uuid4().hex[:6]}"
    gid = server.oci("iam", "group", "create", "--name", group, "--description", "copy").json["data"]["id"]
    server.oci("iam", "group", "add-user", "--group-id", gid, "--user-id", user.id)
    name = server.oci("iam", "compartment", "get", "--compartment-id", world.compartment).json["data"]["name"]
    policy(server, server.tenancy, "copiers", f"Allow group {group} to read volume-backups in compartment {name}")
    args = ("bv", "backup", "copy", "--volume-backup-id", world.backup.id, "--destination-region", PHX)
    denied = oci_as(server, user, *args, check=False)
    assert denied.rc != 0
    assert (denied.error["status"], denied.error["code"]) == (404, "NotAuthorizedOrNotFound")
    policy(server, server.tenancy, "copiers-2", f"Allow group {group} to manage volume-backups in compartment {name}")
    allowed = wait_for(
        lambda: oci_as(server, user, *args, check=False), lambda r: r.rc == 0, what="copy allowed", timeout=30
    )
    copy_id = allowed.json["data"]["id"]
    assert world.phx.wait_backup(copy_id).lifecycle_state == "AVAILABLE"


def test_a_retried_copy_with_the_same_token_makes_one_copy(world: World) -> None:
    token = uuid.uuid4().hex
    details = models.CopyVolumeBackupDetails(destination_region=PHX, display_name="cp-token")
    first = world.iad.bs.copy_volume_backup(world.backup.id, details, opc_retry_token=token).data
    again = world.iad.bs.copy_volume_backup(world.backup.id, details, opc_retry_token=token).data
    assert again.id == first.id
    world.phx.wait_backup(first.id)
    named = [b for b in world.phx.bs.list_volume_backups(world.compartment).data if b.display_name == "cp-token"]
    assert [b.id for b in named] == [first.id]
    assert named[0].source_volume_backup_id == world.backup.id  # lists carry the source too
