"""Volume groups and volume group backups with the real `oci` CLI and SDK, and our CLI (oci-behaviour.md R3.7, R3.16,
R3.19, R3.33, R4.9, D12; oci-wire.md §4.5; docs/design/volume-groups.md).

One group of three volumes (two Vault keys and the provider key), each holding data. A group backup is one point in
time for every member: the member backups are ordinary volume backups in each volume's compartment under each
volume's key, and writes made after the backup call returned are in none of them. A restore of the group backup
gives provider-key volumes equal to the members at that point byte for byte; a group clone keeps each volume's key
and its data. Deleting the group backup deletes its member backups; a volume is in at most one group.
"""

from __future__ import annotations

import functools
import json
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
    payload,
    put,
    raw,
    read,
    seed_image,
    verify,
    wait_for,
    wait_gone,
)
from iam_helpers import new_user, oci_as, policy

pytestmark = pytest.mark.e2e

models = oci.core.models


@dataclass
class World:
    server: Any
    sdk: Sdk
    compartment: str
    other_compartment: str
    vault: Any
    keys: dict[str, str | None]  # volume id -> its key (None: provider)
    images: dict[str, Image]  # volume id -> what it holds now
    group_id: str


def _group(sdk: Sdk, group_id: str, state: str = "AVAILABLE") -> Any:
    return wait_for(
        lambda: sdk.bs.get_volume_group(group_id).data,
        lambda g: g.lifecycle_state in (state, "FAULTY"),
        what=f"volume group {group_id} {state}",
    )


def _group_backup(sdk: Sdk, backup_id: str, state: str = "AVAILABLE") -> Any:
    return wait_for(
        lambda: sdk.bs.get_volume_group_backup(backup_id).data,
        lambda b: b.lifecycle_state in (state, "FAULTY"),
        what=f"volume group backup {backup_id} {state}",
    )


def _hydrated_group(sdk: Sdk, group_id: str) -> Any:
    group = _group(sdk, group_id)
    assert group.lifecycle_state == "AVAILABLE", group
    return wait_for(
        lambda: sdk.bs.get_volume_group(group_id).data, lambda g: bool(g.is_hydrated), what="group hydrated"
    )


@pytest.fixture(scope="module")
def world(server: Any) -> World:
    """Three 50 GB volumes in AD 1 (a vault key each for two of them, one of them in another compartment), seeded
    with data, grouped with the real CLI."""
    sdk = Sdk(server)
    compartment = sdk.new_compartment("groups")
    other = sdk.new_compartment("groups-other")
    vault = sdk.new_vault(compartment, "groups-vault")
    k1 = sdk.new_key(vault, compartment, "k1").id
    k2 = sdk.new_key(vault, compartment, "k2").id
    keys: dict[str, str | None] = {}
    images: dict[str, Image] = {}
    for name, comp, key in (("m1", compartment, k1), ("m2", other, k2), ("m3", compartment, None)):
        volume = sdk.create_volume(comp, name=name, kms_key_id=key)
        assert volume.lifecycle_state == "AVAILABLE"
        keys[volume.id] = key
        images[volume.id] = seed_image(server, volume.id, f"group/{name}")
    out = server.oci(
        "bv",
        "volume-group",
        "create",
        "--compartment-id",
        compartment,
        "--availability-domain",
        sdk.ad(1),
        "--display-name",
        "g1",
        "--source-details",
        json.dumps({"type": "volumeIds", "volumeIds": list(keys)}),
        "--wait-for-state",
        "AVAILABLE",
    ).json["data"]
    return World(server, sdk, compartment, other, vault, keys, images, out["id"])


def test_group_holds_its_volumes(world: World) -> None:
    sdk = world.sdk
    group = sdk.bs.get_volume_group(world.group_id).data
    assert group.lifecycle_state == "AVAILABLE"
    assert sorted(group.volume_ids) == sorted(world.keys)
    assert (group.size_in_gbs, group.size_in_mbs) == (150, 150 * 1024)
    assert group.is_hydrated is True
    assert group.source_details.type == "volumeIds"
    assert group.availability_domain == sdk.ad(1)
    for volume_id in world.keys:
        assert sdk.bs.get_volume(volume_id).data.volume_group_id == world.group_id
    outsider = sdk.create_volume(world.compartment, name="outsider").id
    for compartment in (world.compartment, world.other_compartment):
        in_group = {v.id for v in sdk.bs.list_volumes(compartment_id=compartment, volume_group_id=world.group_id).data}
        everything = {v.id for v in sdk.bs.list_volumes(compartment_id=compartment).data}
        assert in_group == everything & set(world.keys)
        assert (outsider in everything) == (compartment == world.compartment)
        assert outsider not in in_group
    listed = world.server.bv("bv", "volume-group", "list", "-c", world.compartment).json["data"]
    assert [g["id"] for g in listed] == [world.group_id]
    by_state = sdk.bs.list_volume_groups(compartment_id=world.compartment, lifecycle_state="TERMINATED").data
    assert by_state == []
    by_ad = sdk.bs.list_volume_groups(compartment_id=world.compartment, availability_domain=sdk.ad(2)).data
    assert by_ad == []


def test_group_backup_is_one_point_in_time_and_restores_byte_for_byte(world: World) -> None:
    sdk, server = world.sdk, world.server
    before = {vid: image.copy() for vid, image in world.images.items()}
    created = server.oci(
        "bv", "volume-group-backup", "create", "--volume-group-id", world.group_id, "--type", "FULL"
    ).json["data"]
    assert created["lifecycle-state"] in ("COMMITTED", "AVAILABLE")
    # Written after the group backup call returned: in none of its member backups.
    for n, volume_id in enumerate(world.keys):
        put(server, volume_id, world.images[volume_id], 0, payload(MIB, f"after/{n}"))
        put(server, volume_id, world.images[volume_id], 7 * MIB, payload(64 * 1024, f"after-new/{n}"))

    backup = _group_backup(sdk, created["id"])
    assert backup.lifecycle_state == "AVAILABLE"
    assert backup.volume_group_id == world.group_id
    assert backup.compartment_id == world.compartment
    assert backup.type == "FULL"
    assert len(backup.volume_backup_ids) == 3
    members = [sdk.bs.get_volume_backup(b).data for b in backup.volume_backup_ids]
    assert sorted(m.volume_id for m in members) == sorted(world.keys)
    for member in members:
        volume = sdk.bs.get_volume(member.volume_id).data
        assert member.lifecycle_state == "AVAILABLE"
        assert member.kms_key_id == world.keys[member.volume_id], "a member backup inherits its volume's key"
        assert member.compartment_id == volume.compartment_id, "R3.7: the member backup is in its volume's compartment"
    assert backup.size_in_gbs == 150
    assert backup.unique_size_in_mbs >= 3 * 2  # each member stored its ~2.3 MiB of data

    restore = models.CreateVolumeGroupDetails(
        compartment_id=world.compartment,
        availability_domain=sdk.ad(2),  # any AD of the region (R3.20)
        display_name="restored",
        source_details=models.VolumeGroupSourceFromVolumeGroupBackupDetails(volume_group_backup_id=backup.id),
    )
    restored = _hydrated_group(sdk, sdk.bs.create_volume_group(restore).data.id)
    assert len(restored.volume_ids) == 3
    source_of = {m.id: m.volume_id for m in members}
    for volume_id in restored.volume_ids:
        volume = sdk.bs.get_volume(volume_id).data
        assert volume.kms_key_id is None, "R3.19/D12: a restored group backup uses the provider-managed key"
        assert volume.availability_domain == sdk.ad(2)
        assert volume.volume_group_id == restored.id
        verify(server, volume_id, before[source_of[volume.source_details.id]])
        assert read(server, volume_id, 7 * MIB, 64 * 1024) == bytes(64 * 1024), "a write after the point is absent"


def test_group_clone_keeps_each_volume_key_and_data(world: World) -> None:
    sdk, server = world.sdk, world.server
    out = server.oci(
        "bv",
        "volume-group",
        "create",
        "--compartment-id",
        world.compartment,
        "--availability-domain",
        sdk.ad(1),
        "--source-details",
        json.dumps({"type": "volumeGroupId", "volumeGroupId": world.group_id}),
        "--wait-for-state",
        "AVAILABLE",
    ).json["data"]
    clone = _hydrated_group(sdk, out["id"])
    assert len(clone.volume_ids) == 3
    for volume_id in clone.volume_ids:
        volume = sdk.bs.get_volume(volume_id).data
        source = volume.source_details.id
        assert volume.kms_key_id == world.keys[source], "D12: a group clone keeps each source volume's key"
        assert volume.volume_group_id == clone.id
        verify(server, volume_id, world.images[source])
    error = expect_error(
        lambda: sdk.bs.create_volume_group(
            models.CreateVolumeGroupDetails(
                compartment_id=world.compartment,
                availability_domain=sdk.ad(2),
                source_details=models.VolumeGroupSourceFromVolumeGroupDetails(volume_group_id=world.group_id),
            )
        ),
        400,
        "InvalidParameter",
    )
    assert "availability domain" in (error.message or "")


def test_deleting_a_group_backup_deletes_its_member_backups(world: World) -> None:
    sdk, server = world.sdk, world.server
    created = server.bv(
        "bv", "volume-group-backup", "create", "--volume-group-id", world.group_id, "--display-name", "to-delete"
    ).json["data"]
    assert created["type"] == "INCREMENTAL"  # R3.1: the default
    backup = _group_backup(sdk, created["id"])
    assert backup.lifecycle_state == "AVAILABLE"
    renamed = server.oci(
        "bv", "volume-group-backup", "update", "--volume-group-backup-id", backup.id, "--display-name", "renamed"
    ).json["data"]
    assert renamed["display-name"] == "renamed"
    listed = server.bv(
        "bv", "volume-group-backup", "list", "-c", world.compartment, "--volume-group-id", world.group_id
    )
    assert backup.id in {b["id"] for b in listed.json["data"]}
    server.oci(
        "bv",
        "volume-group-backup",
        "delete",
        "--volume-group-backup-id",
        backup.id,
        "--force",
        "--wait-for-state",
        "TERMINATED",
    )
    assert sdk.bs.get_volume_group_backup(backup.id).data.lifecycle_state == "TERMINATED"
    for member_id in backup.volume_backup_ids:
        wait_gone(functools.partial(_backup_data, sdk, member_id))


def _backup_data(sdk: Sdk, backup_id: str) -> Any:
    return sdk.bs.get_volume_backup(backup_id).data


def test_a_volume_is_in_at_most_one_group(world: World) -> None:
    sdk = world.sdk
    taken = next(iter(world.keys))
    free = sdk.create_volume(world.compartment, name="free")
    error = expect_error(
        lambda: sdk.bs.create_volume_group(
            models.CreateVolumeGroupDetails(
                compartment_id=world.compartment,
                availability_domain=sdk.ad(1),
                source_details=models.VolumeGroupSourceFromVolumesDetails(volume_ids=[free.id, taken]),
            )
        ),
        409,
        "Conflict",
        world.group_id,
    )
    assert "only one volume group" in (error.message or "")
    assert sdk.bs.get_volume(free.id).data.volume_group_id is None, "a refused group claims nothing"
    other_ad = sdk.create_volume(world.compartment, name="other-ad", ad=sdk.ad(2))
    expect_error(
        lambda: sdk.bs.update_volume_group(
            world.group_id, models.UpdateVolumeGroupDetails(volume_ids=[*world.keys, other_ad.id])
        ),
        400,
        "InvalidParameter",
        sdk.ad(1),
    )
    expect_error(
        lambda: sdk.bs.create_volume_group(
            models.CreateVolumeGroupDetails(
                compartment_id=world.compartment,
                availability_domain=sdk.ad(1),
                source_details=models.VolumeGroupSourceFromVolumesDetails(volume_ids=["ocid1.volume.oc1.iad.aaaanone"]),
            )
        ),
        400,
        "RelatedResourceNotAuthorizedOrNotFound",
    )


def test_membership_update_and_group_delete_keep_the_volumes(world: World) -> None:
    sdk, server = world.sdk, world.server
    volume_ids = list(world.keys)
    extra = sdk.create_volume(world.compartment, name="extra")
    out = server.oci(
        "bv",
        "volume-group",
        "create",
        "--compartment-id",
        world.compartment,
        "--availability-domain",
        sdk.ad(1),
        "--source-details",
        json.dumps({"type": "volumeIds", "volumeIds": [extra.id]}),
        "--wait-for-state",
        "AVAILABLE",
    ).json["data"]
    second = out["id"]
    # Our CLI: move the third member of the first group into the second one (two complete membership lists).
    server.bv(
        "bv", "volume-group", "update", "--volume-group-id", world.group_id, "--volume-ids", json.dumps(volume_ids[:2])
    )
    assert sdk.bs.get_volume(volume_ids[2]).data.volume_group_id is None
    updated = server.oci(
        "bv",
        "volume-group",
        "update",
        "--volume-group-id",
        second,
        "--volume-ids",
        json.dumps([extra.id, volume_ids[2]]),
        "--display-name",
        "second",
        "--force",
    ).json["data"]
    assert sorted(updated["volume-ids"]) == sorted([extra.id, volume_ids[2]])
    assert updated["display-name"] == "second"
    assert sdk.bs.get_volume(volume_ids[2]).data.volume_group_id == second

    server.oci("bv", "volume-group", "delete", "--volume-group-id", second, "--force", "--wait-for-state", "TERMINATED")
    for volume_id in (extra.id, volume_ids[2]):
        volume = sdk.bs.get_volume(volume_id).data
        assert volume.lifecycle_state == "AVAILABLE", "deleting a group keeps its volumes"
        assert volume.volume_group_id is None
    assert sdk.bs.get_volume_group(second).data.volume_ids == []
    # Free again: the volume may join another group.
    server.oci(
        "bv",
        "volume-group",
        "update",
        "--volume-group-id",
        world.group_id,
        "--volume-ids",
        json.dumps(volume_ids),
        "--force",
    )
    assert sorted(sdk.bs.get_volume_group(world.group_id).data.volume_ids) == sorted(volume_ids)


def test_a_disabled_member_key_refuses_the_whole_group_backup(world: World) -> None:
    """D1: every member's key must be usable; nothing is created when one is not, and all works again once enabled."""
    sdk = world.sdk
    key_id = next(k for k in world.keys.values() if k is not None)
    details = models.CreateVolumeGroupBackupDetails(volume_group_id=world.group_id, type="INCREMENTAL")
    before = sdk.bs.list_volume_group_backups(compartment_id=world.compartment).data
    sdk.disable_key(world.vault, key_id)
    try:
        expect_error(lambda: sdk.bs.create_volume_group_backup(details), 409, "Conflict", key_id, "DISABLED")
        assert len(sdk.bs.list_volume_group_backups(compartment_id=world.compartment).data) == len(before)
    finally:
        sdk.enable_key(world.vault, key_id)
    backup = _group_backup(sdk, sdk.bs.create_volume_group_backup(details).data.id)
    assert backup.lifecycle_state == "AVAILABLE"


def test_groups_need_the_permissions_on_the_volumes_they_name(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """R7.25 + the handler's checks: `manage volume-groups` alone cannot group a volume the caller may not see
    (400, as if absent); a group backup also needs what a volume backup of each member needs."""
    server, sdk = world.server, world.sdk
    volume = sdk.create_volume(world.other_compartment, name="iam-member")
    user = new_user(server, tmp_path_factory.mktemp("vg-iam"), "grouper")
    group = f"groupers-{uuid.uuid4().hex[:6]}"
    gid = server.oci("iam", "group", "create", "--name", group, "--description", "vg").json["data"]["id"]
    server.oci("iam", "group", "add-user", "--group-id", gid, "--user-id", user.id)

    def name(compartment: str) -> str:
        return str(server.oci("iam", "compartment", "get", "--compartment-id", compartment).json["data"]["name"])

    here, there = name(world.compartment), name(world.other_compartment)
    policy(
        server,
        server.tenancy,
        "groupers",
        f"Allow group {group} to manage volume-groups in compartment {here}",
        f"Allow group {group} to manage volume-group-backups in compartment {here}",
    )
    create = (
        "bv",
        "volume-group",
        "create",
        "--compartment-id",
        world.compartment,
        "--availability-domain",
        sdk.ad(1),
        "--source-details",
        json.dumps({"type": "volumeIds", "volumeIds": [volume.id]}),
    )
    denied = oci_as(server, user, *create, check=False)
    assert (denied.error["status"], denied.error["code"]) == (400, "RelatedResourceNotAuthorizedOrNotFound")
    assert sdk.bs.get_volume(volume.id).data.volume_group_id is None

    policy(server, server.tenancy, "groupers-2", f"Allow group {group} to inspect volumes in compartment {there}")
    made = wait_for(lambda: oci_as(server, user, *create, check=False), lambda r: r.rc == 0, what="group allowed")
    group_id = made.json["data"]["id"]
    backup = ("bv", "volume-group-backup", "create", "--volume-group-id", group_id)
    refused = oci_as(server, user, *backup, check=False)
    assert (refused.error["status"], refused.error["code"]) == (404, "NotAuthorizedOrNotFound")
    policy(
        server,
        server.tenancy,
        "groupers-3",
        f"Allow group {group} to use volumes in compartment {there}",
        f"Allow group {group} to manage volume-backups in compartment {there}",
    )
    backed = wait_for(lambda: oci_as(server, user, *backup, check=False), lambda r: r.rc == 0, what="backup allowed")
    assert _group_backup(sdk, backed.json["data"]["id"]).lifecycle_state == "AVAILABLE"
    server.oci("bv", "volume-group", "delete", "--volume-group-id", group_id, "--force")


def _boot_data(server: Any, boot_id: str, offset: int, data: bytes | None = None, length: int = 0) -> bytes:
    """PUT (data given) or GET boot volume data (the blockvault data extension)."""
    path = f"/20160918/bootVolumes/{boot_id}/data"
    if data is not None:
        resp = raw(
            server,
            "PUT",
            path,
            data=data,
            params={"offset": offset},
            headers={"content-type": "application/octet-stream"},
        )
    else:
        resp = raw(server, "GET", path, params={"offset": offset, "length": length})
    assert resp.status_code == 200, resp.text
    return resp.content


def test_a_group_may_hold_a_boot_volume(world: World) -> None:
    """A group of a block and a boot volume: the group backup holds a volume backup and a boot volume backup of one
    point in time, and its restore makes a block and a boot volume again."""
    sdk, server = world.sdk, world.server
    block = sdk.create_volume(world.compartment, name="with-boot")
    image = seed_image(server, block.id, "with-boot")
    boot = sdk.bs.create_boot_volume(
        models.CreateBootVolumeDetails(
            compartment_id=world.compartment, availability_domain=sdk.ad(1), size_in_gbs=50, display_name="boot"
        )
    ).data
    wait_for(lambda: sdk.bs.get_boot_volume(boot.id).data, lambda b: b.lifecycle_state == "AVAILABLE")
    boot_bytes = payload(MIB + 5, "boot")
    _boot_data(server, boot.id, 4096 + 3, boot_bytes)
    group = sdk.bs.create_volume_group(
        models.CreateVolumeGroupDetails(
            compartment_id=world.compartment,
            availability_domain=sdk.ad(1),
            source_details=models.VolumeGroupSourceFromVolumesDetails(volume_ids=[block.id, boot.id]),
        )
    ).data
    assert _group(sdk, group.id).lifecycle_state == "AVAILABLE"
    assert sdk.bs.get_boot_volume(boot.id).data.volume_group_id == group.id
    details = models.CreateVolumeGroupBackupDetails(volume_group_id=group.id, type="FULL")
    backup = _group_backup(sdk, sdk.bs.create_volume_group_backup(details).data.id)
    assert backup.lifecycle_state == "AVAILABLE"
    assert sorted(b.split(".")[1] for b in backup.volume_backup_ids) == ["bootvolumebackup", "volumebackup"]
    restore = models.CreateVolumeGroupDetails(
        compartment_id=world.compartment,
        availability_domain=sdk.ad(1),
        source_details=models.VolumeGroupSourceFromVolumeGroupBackupDetails(volume_group_backup_id=backup.id),
    )
    restored = _hydrated_group(sdk, sdk.bs.create_volume_group(restore).data.id)
    kinds = {v.split(".")[1]: v for v in restored.volume_ids}
    assert sorted(kinds) == ["bootvolume", "volume"]
    verify(server, kinds["volume"], image)
    assert _boot_data(server, kinds["bootvolume"], 4096 + 3, length=len(boot_bytes)) == boot_bytes
    assert sdk.bs.get_boot_volume(kinds["bootvolume"]).data.kms_key_id is None


def test_group_backup_copy_to_another_region_restores_there(world: World) -> None:
    """R3.25/R3.26 per member: every member backup is copied under the destination's key; the copies form a group
    backup of the destination region that restores there byte for byte (provider-key volumes, R3.19)."""
    sdk, server = world.sdk, world.server
    phx = Sdk(server, "us-phoenix-1")
    phx_vault = phx.new_vault(world.compartment, "groups-phx")
    phx_key = phx.new_key(phx_vault, world.compartment, "groups-phx-key").id
    at_backup = {vid: image.copy() for vid, image in world.images.items()}
    details = models.CreateVolumeGroupBackupDetails(volume_group_id=world.group_id, type="FULL", display_name="tocopy")
    source = _group_backup(sdk, sdk.bs.create_volume_group_backup(details).data.id)
    out = server.oci(
        "bv",
        "volume-group-backup",
        "copy",
        "--volume-group-backup-id",
        source.id,
        "--destination-region",
        "us-phoenix-1",
        "--kms-key-id",
        phx_key,
        "--wait-for-state",
        "AVAILABLE",
    ).json["data"]
    assert out["id"].startswith("ocid1.volumegroupbackup.oc1.phx.")
    assert out["lifecycle-state"] == "AVAILABLE"
    copy = phx.bs.get_volume_group_backup(out["id"]).data
    assert copy.source_volume_group_backup_id == source.id
    assert len(copy.volume_backup_ids) == 3
    source_volume = {}
    for member_id in copy.volume_backup_ids:
        member = phx.bs.get_volume_backup(member_id).data
        assert member.kms_key_id == phx_key, "R3.26: a copy is under the destination's key"
        assert member.lifecycle_state == "AVAILABLE"
        source_volume[member_id] = member.volume_id
    restore = models.CreateVolumeGroupDetails(
        compartment_id=world.compartment,
        availability_domain=phx.ad(1),
        source_details=models.VolumeGroupSourceFromVolumeGroupBackupDetails(volume_group_backup_id=copy.id),
    )
    restored = _hydrated_group(phx, phx.bs.create_volume_group(restore).data.id)
    for volume_id in restored.volume_ids:
        volume = phx.bs.get_volume(volume_id).data
        assert volume.kms_key_id is None
        verify(server, volume_id, at_backup[source_volume[volume.source_details.id]], region="us-phoenix-1")


def test_groups_and_group_backups_move_between_compartments_alone(world: World) -> None:
    """ChangeVolumeGroupCompartment / ChangeVolumeGroupBackupCompartment move only the group (backup): its volumes
    and member backups keep their compartments."""
    sdk, server = world.sdk, world.server
    server.oci(
        "bv", "volume-group", "change-compartment", "--volume-group-id", world.group_id, "-c", world.other_compartment
    )
    assert sdk.bs.get_volume_group(world.group_id).data.compartment_id == world.other_compartment
    assert {sdk.bs.get_volume(v).data.compartment_id for v in world.keys} == {
        world.compartment,
        world.other_compartment,
    }
    assert [g.id for g in sdk.bs.list_volume_groups(compartment_id=world.other_compartment).data] == [world.group_id]
    server.bv("bv", "volume-group", "change-compartment", "--volume-group-id", world.group_id, "-c", world.compartment)
    assert sdk.bs.get_volume_group(world.group_id).data.compartment_id == world.compartment

    details = models.CreateVolumeGroupBackupDetails(volume_group_id=world.group_id, type="INCREMENTAL")
    backup = _group_backup(sdk, sdk.bs.create_volume_group_backup(details).data.id)
    server.oci(
        "bv",
        "volume-group-backup",
        "change-compartment",
        "--volume-group-backup-id",
        backup.id,
        "--compartment-id",
        world.other_compartment,
    )
    moved = sdk.bs.get_volume_group_backup(backup.id).data
    assert moved.compartment_id == world.other_compartment
    for member_id in moved.volume_backup_ids:
        member = sdk.bs.get_volume_backup(member_id).data
        assert member.compartment_id == sdk.bs.get_volume(member.volume_id).data.compartment_id
