"""Volume group replication and activation (oci-behaviour.md §5.4, R5.19-R5.21; §5.2-5.3; D1, D4; oci-wire.md §4.5).

`volumeGroupReplicas` on the SOURCE group (ashburn) makes a group replica in the destination region (phoenix) whose
members are ordinary block volume replicas (`memberReplicas`, each naming its `volumeGroupReplicaId`) under the
destination key. A group sync snapshots every member at ONE point in time and commits every member's sync point
together, so activation (`oci bv volume-group create --source-details {type: volumeGroupReplicaId}`) gives a new
group whose volumes hold all members' data as of one moment. Syncs run every 60 s of the server's domain clock; a
test forces one by advancing the admin clock.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import oci
import pytest
from helpers import (
    MIB,
    Image,
    Sdk,
    advance_clock,
    expect_error,
    expect_key_unusable,
    keys_in_two_regions,
    payload,
    put,
    read,
    seed_image,
    server_now,
    verify,
    wait_for,
    write,
)

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"
INTERVAL = 60  # the server's default sync interval (seconds of its domain clock)
models = oci.core.models


@dataclass
class World:
    server: Any
    iad: Sdk
    phx: Sdk
    compartment: str
    iad_key: str
    phx_vault: Any
    phx_key: str


@pytest.fixture(scope="module")
def world(server: Any) -> World:
    r = keys_in_two_regions(server, "group-repl")
    return World(server, r.iad, r.phx, r.compartment, r.iad_key.id, r.phx_vault, r.phx_key.id)


def _group_replica(world: World, replica_id: str) -> Any:
    return world.phx.bs.get_volume_group_replica(replica_id).data


def _sync_past(world: World, replica_id: str, moment: datetime) -> Any:
    """Force the next group sync and wait until the group replica's sync point is at or after `moment`."""
    advance_clock(world.server, INTERVAL + 1)
    return wait_for(
        lambda: _group_replica(world, replica_id),
        lambda r: r.time_last_synced is not None and r.time_last_synced >= moment,
        what=f"group replica {replica_id} synced past {moment}",
    )


def _replicating_group(world: World, name: str, *, xrr_key: str | None) -> tuple[str, str, dict[str, Image]]:
    """Two seeded ashburn volumes (one under an ashburn key, one under the provider key) in a group created with
    the real CLI and `--volume-group-replicas` to phoenix AD-1; the initial sync done. Returns the group, its
    replica and what each volume holds."""
    server = world.server
    images: dict[str, Image] = {}
    for n, key in enumerate((world.iad_key, None)):
        volume = world.iad.create_volume(world.compartment, name=f"{name}-m{n}", kms_key_id=key)
        images[volume.id] = seed_image(server, volume.id, f"{name}/m{n}")
    entry: dict[str, str] = {"availabilityDomain": world.phx.ad(1), "displayName": f"{name}-rep"}
    if xrr_key:
        entry["xrrKmsKeyId"] = xrr_key
    out = server.oci(
        "bv",
        "volume-group",
        "create",
        "--compartment-id",
        world.compartment,
        "--availability-domain",
        world.iad.ad(1),
        "--display-name",
        name,
        "--source-details",
        json.dumps({"type": "volumeIds", "volumeIds": list(images)}),
        "--volume-group-replicas",
        json.dumps([entry]),
        "--wait-for-state",
        "AVAILABLE",
        endpoint=server.endpoint(IAD),
    ).json["data"]
    [info] = out["volume-group-replicas"]
    replica_id = info["volume-group-replica-id"]
    assert replica_id.startswith("ocid1.volumegroupreplica.oc1.phx.")
    assert (info["availability-domain"], info["kms-key-id"], info["display-name"]) == (
        world.phx.ad(1),
        xrr_key,
        f"{name}-rep",
    )
    _sync_past(world, replica_id, server_now(server))
    return out["id"], replica_id, images


def _activate(world: World, replica_id: str, name: str) -> dict[str, Any]:
    """Activation with the real CLI on phoenix's endpoint; waits for the group and for every volume's data."""
    server = world.server
    out = server.oci(
        "bv",
        "volume-group",
        "create",
        "--compartment-id",
        world.compartment,
        "--availability-domain",
        world.phx.ad(1),
        "--display-name",
        name,
        "--source-details",
        json.dumps({"type": "volumeGroupReplicaId", "volumeGroupReplicaId": replica_id}),
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
        endpoint=server.endpoint(PHX),
    ).json["data"]
    wait_for(
        lambda: world.phx.bs.get_volume_group(out["id"]).data, lambda g: bool(g.is_hydrated), what="group hydrated"
    )
    return dict(out)


def _member(world: World, member_id: str) -> Any:
    return world.phx.bs.get_block_volume_replica(member_id).data


def _source_of(world: World, volume_id: str) -> str:
    """The ashburn volume an activated phoenix volume comes from (through its member replica)."""
    volume = world.phx.bs.get_volume(volume_id).data
    assert volume.source_details.type == "blockVolumeReplica"
    return str(world.phx.bs.get_block_volume_replica(volume.source_details.id).data.block_volume_id)


def test_group_replica_syncs_all_members_at_one_point_and_activates_byte_for_byte(world: World) -> None:
    server = world.server
    group_id, replica_id, images = _replicating_group(world, "g1", xrr_key=world.phx_key)

    # the group replica lives in phoenix: the real CLI reads it, with its members
    got = server.oci(
        "bv", "volume-group-replica", "get", "--volume-group-replica-id", replica_id, endpoint=server.endpoint(PHX)
    ).json["data"]
    assert (got["lifecycle-state"], got["volume-group-id"], got["size-in-gbs"]) == ("AVAILABLE", group_id, 100)
    assert (got["availability-domain"], got["compartment-id"]) == (world.phx.ad(1), world.compartment)
    members = got["member-replicas"]
    assert len(members) == 2
    assert {m["membership-state"] for m in members} == {"STABLE"}
    listed = server.oci(
        "bv",
        "volume-group-replica",
        "list",
        "--compartment-id",
        world.compartment,
        "--availability-domain",
        world.phx.ad(1),
        endpoint=server.endpoint(PHX),
    ).json["data"]
    assert replica_id in {r["id"] for r in listed}
    # each member is a block volume replica under the phoenix key, naming its group replica; one sync point
    group_point = _group_replica(world, replica_id).time_last_synced
    by_source: dict[str, str] = {}
    for m in members:
        member = world.phx.bs.get_block_volume_replica(m["volume-replica-id"]).data
        assert (member.volume_group_replica_id, member.kms_key_id) == (replica_id, world.phx_key)
        assert member.time_last_synced == group_point
        by_source[member.block_volume_id] = member.id
    assert set(by_source) == set(images)
    filtered = world.phx.bs.list_block_volume_replicas(
        compartment_id=world.compartment, volume_group_replica_id=replica_id
    ).data
    assert {r.id for r in filtered} == set(by_source.values())
    # the source volumes show their member replica; their own replication cannot be edited (R5.20)
    for volume_id, member_id in by_source.items():
        shown = world.iad.bs.get_volume(volume_id).data.block_volume_replicas
        assert [s.block_volume_replica_id for s in shown] == [member_id]
        expect_error(
            functools.partial(
                world.iad.bs.update_volume, volume_id, models.UpdateVolumeDetails(block_volume_replicas=[])
            ),
            409,
            "Conflict",
            "volume group",
        )

    # writes to both members, a sync that includes them; then writes the replica has not seen
    for n, (volume_id, image) in enumerate(images.items()):
        put(server, volume_id, image, 7 * MIB + n, payload(MIB, f"g1/late/{n}"))
    synced = _sync_past(world, replica_id, server_now(server))
    assert synced.time_last_synced > group_point
    at_sync = {v: image.copy() for v, image in images.items()}
    for volume_id, image in images.items():
        put(server, volume_id, image, 0, b"\xee" * MIB)

    out = _activate(world, replica_id, "g1-activated")
    assert out["id"].startswith("ocid1.volumegroup.oc1.phx.")
    assert out["source-details"] == {"type": "volumeGroupReplicaId", "volume-group-replica-id": replica_id}
    assert len(out["volume-ids"]) == 2
    for volume_id in out["volume-ids"]:
        volume = world.phx.bs.get_volume(volume_id).data
        assert (volume.kms_key_id, volume.volume_group_id) == (world.phx_key, out["id"])  # D4: the member's key
        verify(server, volume_id, at_sync[_source_of(world, volume_id)], region=PHX)
    assert _group_replica(world, replica_id).lifecycle_state == "AVAILABLE"  # the next activation may come


def test_members_written_together_are_activated_as_one_point_in_time(world: World) -> None:
    """A writer bumps a counter in member A, then in member B, over and over while a sync runs: at any single
    point in time A holds n and B holds n or n-1. Member-by-member snapshots would let them drift apart."""
    server = world.server
    _group_id, replica_id, images = _replicating_group(world, "pit", xrr_key=None)
    a, b = list(images)
    stop = threading.Event()
    counter = [0]

    def writer() -> None:
        while not stop.is_set():
            counter[0] += 1
            block = counter[0].to_bytes(8, "big") * 512  # 4 KiB
            write(server, a, 10 * MIB, block)
            write(server, b, 10 * MIB, block)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait_for(lambda: counter[0], lambda n: n >= 20, what="writer running")
        moment = server_now(server)
        _sync_past(world, replica_id, moment)
        reached = counter[0]
    finally:
        stop.set()
        thread.join(timeout=60)
    out = _activate(world, replica_id, "pit-activated")
    values: dict[str, int] = {}
    for volume_id in out["volume-ids"]:
        block = read(server, volume_id, 10 * MIB, 4096, region=PHX)
        assert block == block[:8] * 512
        values[_source_of(world, volume_id)] = int.from_bytes(block[:8], "big")
    assert 1 <= values[a] <= reached
    assert values[a] - values[b] in (0, 1), values


def test_empty_list_turns_group_replication_off_and_members_keep_replicating(world: World) -> None:
    server = world.server
    group_id, replica_id, images = _replicating_group(world, "off", xrr_key=world.phx_key)
    members = [m.volume_replica_id for m in _group_replica(world, replica_id).member_replicas]
    out = server.oci(
        "bv",
        "volume-group",
        "update",
        "--volume-group-id",
        group_id,
        "--volume-group-replicas",
        "[]",
        "--force",
        endpoint=server.endpoint(IAD),
    ).json["data"]
    assert out["volume-group-replicas"] is None
    assert _group_replica(world, replica_id).lifecycle_state == "TERMINATED"
    # preserveVolumeReplica defaults to true (R5.21): every member keeps replicating on its own
    for member_id in members:
        member = world.phx.bs.get_block_volume_replica(member_id).data
        assert (member.lifecycle_state, member.volume_group_replica_id) == ("AVAILABLE", None)
    volume_id = next(iter(images))
    put(server, volume_id, images[volume_id], 9 * MIB, payload(MIB, "off/after"))
    moment = server_now(server)
    advance_clock(server, INTERVAL + 1)
    [member_id] = [s.block_volume_replica_id for s in world.iad.bs.get_volume(volume_id).data.block_volume_replicas]
    wait_for(
        lambda: world.phx.bs.get_block_volume_replica(member_id).data,
        lambda r: r.time_last_synced is not None and r.time_last_synced >= moment,
        what="member synced on its own",
    )
    # and its replication can be edited again: off deletes it
    world.iad.bs.update_volume(volume_id, models.UpdateVolumeDetails(block_volume_replicas=[]))
    assert not world.iad.bs.get_volume(volume_id).data.block_volume_replicas


def test_preserve_volume_replica_false_deletes_the_members(world: World) -> None:
    server = world.server
    group_id, replica_id, images = _replicating_group(world, "nopreserve", xrr_key=None)
    members = [m.volume_replica_id for m in _group_replica(world, replica_id).member_replicas]
    server.oci(
        "bv",
        "volume-group",
        "update",
        "--volume-group-id",
        group_id,
        "--volume-group-replicas",
        "[]",
        "--preserve-volume-replica",
        "false",
        "--force",
        endpoint=server.endpoint(IAD),
    )
    for member_id in members:
        wait_for(
            functools.partial(_member, world, member_id),
            lambda r: r.lifecycle_state == "TERMINATED",
            what=f"member {member_id} TERMINATED",
        )
    for volume_id in images:
        assert not world.iad.bs.get_volume(volume_id).data.block_volume_replicas


def test_conflicting_volumes_are_refused(world: World) -> None:
    """R5.20: a member that already replicates to another destination makes group replication fail."""
    elsewhere = world.iad.create_volume(world.compartment, name="elsewhere")
    world.iad.bs.update_volume(
        elsewhere.id,
        models.UpdateVolumeDetails(
            block_volume_replicas=[models.BlockVolumeReplicaDetails(availability_domain=world.phx.ad(2))]
        ),
    )
    plain = world.iad.create_volume(world.compartment, name="plain")
    expect_error(
        lambda: world.iad.bs.create_volume_group(
            models.CreateVolumeGroupDetails(
                compartment_id=world.compartment,
                availability_domain=world.iad.ad(1),
                source_details=models.VolumeGroupSourceFromVolumesDetails(volume_ids=[elsewhere.id, plain.id]),
                volume_group_replicas=[models.VolumeGroupReplicaDetails(availability_domain=world.phx.ad(1))],
            )
        ),
        409,
        "Conflict",
        "Conflicting volumes",
        elsewhere.id,
    )
    # nothing was made: the plain volume is in no group and replicates nowhere
    assert world.iad.bs.get_volume(plain.id).data.volume_group_id is None
    assert not world.iad.bs.get_volume(plain.id).data.block_volume_replicas


def test_a_source_key_of_another_region_is_refused_as_xrr_key(world: World) -> None:
    """The destination never needs a source key: xrrKmsKeyId must be a key of the destination region."""
    volume = world.iad.create_volume(world.compartment, name="wrongkey")
    expect_error(
        lambda: world.iad.bs.create_volume_group(
            models.CreateVolumeGroupDetails(
                compartment_id=world.compartment,
                availability_domain=world.iad.ad(1),
                source_details=models.VolumeGroupSourceFromVolumesDetails(volume_ids=[volume.id]),
                volume_group_replicas=[
                    models.VolumeGroupReplicaDetails(availability_domain=world.phx.ad(1), xrr_kms_key_id=world.iad_key)
                ],
            )
        ),
        400,
        "InvalidParameter",
        "xrrKmsKeyId",
    )
    assert world.iad.bs.get_volume(volume.id).data.volume_group_id is None


def test_activation_needs_the_destination_key_d1(world: World) -> None:
    server = world.server
    _group_id, replica_id, images = _replicating_group(world, "d1", xrr_key=world.phx_key)
    details = models.CreateVolumeGroupDetails(
        compartment_id=world.compartment,
        availability_domain=world.phx.ad(1),
        source_details=models.VolumeGroupSourceFromVolumeGroupReplicaDetails(volume_group_replica_id=replica_id),
    )
    world.phx.disable_key(world.phx_vault, world.phx_key)
    try:
        expect_key_unusable(lambda: world.phx.bs.create_volume_group(details), world.phx_key, "DISABLED")
    finally:
        world.phx.enable_key(world.phx_vault, world.phx_key)
    out = _activate(world, replica_id, "d1-activated")
    for volume_id in out["volume-ids"]:
        verify(server, volume_id, images[_source_of(world, volume_id)], region=PHX)


def test_our_cli_replicates_a_group_lists_its_replica_and_activates_it(world: World) -> None:
    server = world.server
    images: dict[str, Image] = {}
    for n in range(2):
        volume = world.iad.create_volume(world.compartment, name=f"ours-m{n}")
        images[volume.id] = seed_image(server, volume.id, f"ours/m{n}")
    spec = json.dumps([{"availabilityDomain": world.phx.ad(2), "xrrKmsKeyId": world.phx_key}])
    out = server.bv(
        "bv",
        "volume-group",
        "create",
        "--compartment-id",
        world.compartment,
        "--volume-ids",
        json.dumps(list(images)),
        "--volume-group-replicas",
        spec,
        "--wait-for-state",
        "AVAILABLE",
    ).json["data"]
    [info] = out["volume-group-replicas"]
    replica_id = info["volume-group-replica-id"]
    assert (info["availability-domain"], info["kms-key-id"]) == (world.phx.ad(2), world.phx_key)
    _sync_past(world, replica_id, server_now(server))
    got = server.bv("--region", PHX, "bv", "volume-group-replica", "get", "--volume-group-replica-id", replica_id)
    assert (got.json["data"]["lifecycle-state"], len(got.json["data"]["member-replicas"])) == ("AVAILABLE", 2)
    listed = server.bv(
        "--region",
        PHX,
        "bv",
        "volume-group-replica",
        "list",
        "--compartment-id",
        world.compartment,
        "--availability-domain",
        world.phx.ad(2),
    ).json["data"]
    assert replica_id in {r["id"] for r in listed}
    created = server.bv(
        "--region",
        PHX,
        "bv",
        "volume-group",
        "create",
        "--compartment-id",
        world.compartment,
        "--source-volume-group-replica-id",
        replica_id,
        "--wait-for-state",
        "AVAILABLE",
    ).json["data"]
    assert created["availability-domain"] == world.phx.ad(2)  # the replica's AD, found by the CLI
    wait_for(lambda: world.phx.bs.get_volume_group(created["id"]).data, lambda g: bool(g.is_hydrated), what="hydrated")
    for volume_id in created["volume-ids"]:
        verify(server, volume_id, images[_source_of(world, volume_id)], region=PHX)
