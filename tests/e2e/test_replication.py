"""Block volume replication and activation (oci-behaviour.md §5, R5.1-R5.16; D1, D4, D13; oci-wire.md §4).

`blockVolumeReplicas` on the SOURCE region's endpoint creates the replica in the destination region named by its
AD; the replica (GET/LIST on the destination's endpoint) follows the source asynchronously under a DEK wrapped by
the destination key (`xrrKmsKeyId`), never a source key. Syncs run every 60 s of the server's domain clock: a test
forces one by advancing the admin clock and waits for `timeLastSynced` to pass the moment its writes ended.
Activation (`oci bv volume create --source-volume-replica-id`) gives a new volume holding the last completed sync,
byte for byte.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
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
    e2e_conftest,
    expect_error,
    expect_key_unusable,
    keys_in_two_regions,
    payload,
    put,
    read_response,
    seed_image,
    server_now,
    verify,
    wait_for,
    wait_gone,
)
from iam_helpers import new_user, oci_as, policy

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"
models = oci.core.models
INTERVAL = 60  # the server's default sync interval (seconds of its domain clock)


@dataclass
class World:
    server: Any
    iad: Sdk
    phx: Sdk
    compartment: str
    iad_vault: Any
    iad_key: Any
    phx_vault: Any
    phx_key: Any


@pytest.fixture(scope="module")
def world(server: Any) -> World:
    r = keys_in_two_regions(server, "repl")
    return World(server, r.iad, r.phx, r.compartment, r.iad_vault, r.iad_key, r.phx_vault, r.phx_key)


def _replica(world: World, replica_id: str) -> Any:
    return world.phx.bs.get_block_volume_replica(replica_id).data


def _wait_available(sdk: Sdk, replica_id: str) -> Any:
    return wait_for(
        lambda: sdk.bs.get_block_volume_replica(replica_id).data,
        lambda r: r.lifecycle_state in ("AVAILABLE", "FAULTY"),
        what=f"replica {replica_id} AVAILABLE",
    )


def _sync_past(server: Any, sdk: Sdk, replica_id: str, moment: datetime) -> Any:
    """Force the next sync (advance the domain clock past the interval) and wait until the replica's sync point is
    at or after `moment` (server time taken after the writes that must be in it)."""
    advance_clock(server, INTERVAL + 1)
    return wait_for(
        lambda: sdk.bs.get_block_volume_replica(replica_id).data,
        lambda r: r.time_last_synced is not None and r.time_last_synced >= moment,
        what=f"replica {replica_id} synced past {moment}",
    )


def _replicating_volume(world: World, name: str, *, key: Any = None, xrr_key: Any = None) -> tuple[str, str, Image]:
    """A seeded ashburn volume replicating to phoenix AD-1 (created with the replica list); the initial sync done."""
    details = models.BlockVolumeReplicaDetails(
        availability_domain=world.phx.ad(1), display_name=f"{name}-rep", xrr_kms_key_id=xrr_key
    )
    volume = world.iad.bs.create_volume(
        models.CreateVolumeDetails(
            compartment_id=world.compartment,
            availability_domain=world.iad.ad(1),
            display_name=name,
            size_in_gbs=50,
            kms_key_id=key,
            block_volume_replicas=[details],
        )
    ).data
    volume = world.iad.wait_volume(volume.id)
    assert volume.lifecycle_state == "AVAILABLE"
    infos = volume.block_volume_replicas
    assert len(infos) == 1
    replica_id = infos[0].block_volume_replica_id
    image = seed_image(world.server, volume.id, name)
    _sync_past(world.server, world.phx, replica_id, server_now(world.server))
    return volume.id, replica_id, image


def test_cli_turns_replication_on_and_activation_gives_the_sync_point_byte_for_byte(world: World) -> None:
    server = world.server
    volume = world.iad.create_volume(world.compartment, name="cli-src", kms_key_id=world.iad_key.id)
    image = seed_image(server, volume.id, "cli-src")
    replicas = json.dumps([{"availabilityDomain": world.phx.ad(1), "xrrKmsKeyId": world.phx_key.id}])
    out = server.oci(
        "bv",
        "volume",
        "update",
        "--volume-id",
        volume.id,
        "--block-volume-replicas",
        replicas,
        "--force",
        endpoint=server.endpoint(IAD),
    ).json["data"]
    [info] = out["block-volume-replicas"]
    replica_id = info["block-volume-replica-id"]
    assert replica_id.startswith("ocid1.blockvolumereplica.oc1.phx.")
    assert (info["availability-domain"], info["kms-key-id"]) == (world.phx.ad(1), world.phx_key.id)
    assert out["kms-key-id"] == world.iad_key.id  # the source keeps its own key

    # the replica lives in phoenix, under the phoenix key
    first = _wait_available(world.phx, replica_id)
    got = server.oci(
        "bv", "block-volume-replica", "get", "--block-volume-replica-id", replica_id, endpoint=server.endpoint(PHX)
    ).json["data"]
    assert got["lifecycle-state"] == "AVAILABLE"
    assert (got["block-volume-id"], got["kms-key-id"], got["size-in-gbs"]) == (volume.id, world.phx_key.id, 50)
    assert (got["availability-domain"], got["compartment-id"]) == (world.phx.ad(1), world.compartment)
    assert got["time-last-synced"] is not None
    listed = server.oci(
        "bv",
        "block-volume-replica",
        "list",
        "--compartment-id",
        world.compartment,
        "--availability-domain",
        world.phx.ad(1),
        endpoint=server.endpoint(PHX),
    ).json["data"]
    assert replica_id in {r["id"] for r in listed}
    other_ad = world.phx.bs.list_block_volume_replicas(
        compartment_id=world.compartment, availability_domain=world.phx.ad(2)
    ).data
    assert replica_id not in {r.id for r in other_ad}
    assert replica_id not in {
        r.id for r in world.iad.bs.list_block_volume_replicas(compartment_id=world.compartment).data
    }

    # a write, then a sync that includes it; then a write the replica has not seen yet
    put(server, volume.id, image, 7 * MIB + 5, payload(MIB, "cli-src/late"))
    synced = _sync_past(server, world.phx, replica_id, server_now(server))
    assert synced.time_last_synced > first.time_last_synced
    assert synced.total_data_transferred_in_gbs >= 1
    at_sync = image.copy()
    put(server, volume.id, image, 0, b"\xee" * MIB)

    # activation with the real CLI: it pre-GETs the replica and replaces the AD with the replica's
    out = server.oci(
        "bv",
        "volume",
        "create",
        "--source-volume-replica-id",
        replica_id,
        "--availability-domain",
        world.phx.ad(2),
        "--display-name",
        "activated",
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
        endpoint=server.endpoint(PHX),
    ).json["data"]
    assert out["id"].startswith("ocid1.volume.oc1.phx.")
    assert out["availability-domain"] == world.phx.ad(1)
    assert out["kms-key-id"] == world.phx_key.id  # D4: the replica's key
    assert out["source-details"] == {"type": "blockVolumeReplica", "id": replica_id}
    verify(server, out["id"], at_sync, region=PHX)
    assert _replica(world, replica_id).lifecycle_state == "AVAILABLE"  # one activation done, the next may come


def test_our_cli_replicates_lists_and_activates_with_a_new_key(world: World, tmp_path: Any) -> None:
    server = world.server
    volume = world.iad.create_volume(world.compartment, name="ours-src")
    image = seed_image(server, volume.id, "ours-src")
    spec = json.dumps([{"availabilityDomain": world.phx.ad(2), "displayName": "ours-rep"}])
    out = server.bv("bv", "volume", "update", "--volume-id", volume.id, "--block-volume-replicas", spec).json["data"]
    replica_id = out["block-volume-replicas"][0]["block-volume-replica-id"]
    assert out["block-volume-replicas"][0]["kms-key-id"] is None  # no key named: phoenix's provider key
    _sync_past(server, world.phx, replica_id, server_now(server))
    listed = server.bv(
        "--region", PHX, "bv", "block-volume-replica", "list", "--compartment-id", world.compartment
    ).json["data"]
    assert replica_id in {r["id"] for r in listed}
    got = server.bv("--region", PHX, "bv", "block-volume-replica", "get", "--block-volume-replica-id", replica_id)
    assert (got.json["data"]["display-name"], got.json["data"]["kms-key-id"]) == ("ours-rep", None)

    created = server.bv(
        "--region",
        PHX,
        "bv",
        "volume",
        "create",
        "--source-volume-replica-id",
        replica_id,
        "--kms-key-id",
        world.phx_key.id,
        "--wait-for-state",
        "AVAILABLE",
    ).json["data"]
    assert (created["availability-domain"], created["kms-key-id"]) == (world.phx.ad(2), world.phx_key.id)
    verify(server, created["id"], image, region=PHX)


def test_replica_data_needs_only_the_destination_key_d1_both_ways(world: World) -> None:
    server = world.server
    volume_id, replica_id, image = _replicating_volume(world, "d1", key=world.iad_key.id, xrr_key=world.phx_key.id)
    # GET fields: the replica's key is the phoenix key, and so is what the source volume shows for it
    assert _replica(world, replica_id).kms_key_id == world.phx_key.id
    shown = world.iad.bs.get_volume(volume_id).data.block_volume_replicas[0]
    assert (shown.kms_key_id, shown.block_volume_replica_id) == (world.phx_key.id, replica_id)
    # its files are in phoenix's storage root only (ashburn holds nothing of it)
    regions = server.data_dir / "regions"
    assert (regions / PHX / "ads" / "US-PHOENIX-AD-1" / "replicas" / replica_id / "map.db").is_file()
    assert not list((regions / IAD).glob(f"ads/*/replicas/{replica_id}"))

    # source key disabled: the source stops (409 naming its key), the replica still activates under its own key
    world.iad.disable_key(world.iad_vault, world.iad_key.id)
    try:
        resp = read_response(server, volume_id, 0, 4096)
        assert resp.status_code == 409
        assert world.iad_key.id in resp.text
        activated = world.phx.create_volume(
            world.compartment,
            ad=world.phx.ad(1),
            size_gb=None,
            source=models.VolumeSourceFromBlockVolumeReplicaDetails(id=replica_id),
            name="while-src-disabled",
        )
        assert (activated.lifecycle_state, activated.kms_key_id) == ("AVAILABLE", world.phx_key.id)
        verify(server, activated.id, image, region=PHX)
    finally:
        world.iad.enable_key(world.iad_vault, world.iad_key.id)

    # destination key disabled: the replica is not readable (activation 409 naming it) and the source is untouched
    world.phx.disable_key(world.phx_vault, world.phx_key.id)
    try:
        expect_key_unusable(
            lambda: world.phx.bs.create_volume(
                models.CreateVolumeDetails(
                    compartment_id=world.compartment,
                    source_details=models.VolumeSourceFromBlockVolumeReplicaDetails(id=replica_id),
                )
            ),
            world.phx_key.id,
            "DISABLED",
        )
        put(server, volume_id, image, 11 * MIB, payload(MIB, "d1/while-dst-disabled"))
        verify(server, volume_id, image)
        moment = server_now(server)
        advance_clock(server, INTERVAL + 1)  # a sync is due; it parks on the disabled key
    finally:
        world.phx.enable_key(world.phx_vault, world.phx_key.id)
    # re-enabled: nothing lost, the parked sync converges and carries the write made meanwhile
    _sync_past(server, world.phx, replica_id, moment)
    activated = world.phx.create_volume(
        world.compartment,
        ad=world.phx.ad(1),
        size_gb=None,
        source=models.VolumeSourceFromBlockVolumeReplicaDetails(id=replica_id),
        name="after-reenable",
    )
    verify(server, activated.id, image, region=PHX)


def test_resize_is_refused_and_an_empty_list_deletes_the_replica(world: World) -> None:
    server = world.server
    # cross-AD in the same region: ashburn AD-1 -> ashburn AD-2, provider key
    volume = world.iad.create_volume(world.compartment, name="resize-src")
    world.iad.bs.update_volume(
        volume.id,
        models.UpdateVolumeDetails(
            block_volume_replicas=[models.BlockVolumeReplicaDetails(availability_domain=world.iad.ad(2))]
        ),
    )
    replica_id = world.iad.bs.get_volume(volume.id).data.block_volume_replicas[0].block_volume_replica_id
    assert replica_id.startswith("ocid1.blockvolumereplica.oc1.iad.")
    replica = _wait_available(world.iad, replica_id)
    assert (replica.availability_domain, replica.kms_key_id) == (world.iad.ad(2), None)

    expect_error(
        lambda: world.iad.bs.update_volume(volume.id, models.UpdateVolumeDetails(size_in_gbs=60)),
        409,
        "Conflict",
        "replication",
    )
    # the same destination again is a no-op; another one must go through [] first (R5.9)
    world.iad.bs.update_volume(
        volume.id,
        models.UpdateVolumeDetails(
            block_volume_replicas=[models.BlockVolumeReplicaDetails(availability_domain=world.iad.ad(2))]
        ),
    )
    expect_error(
        lambda: world.iad.bs.update_volume(
            volume.id,
            models.UpdateVolumeDetails(
                block_volume_replicas=[models.BlockVolumeReplicaDetails(availability_domain=world.phx.ad(1))]
            ),
        ),
        400,
        "InvalidParameter",
        "[]",
    )
    # the same AD as the volume is not a destination
    other = world.iad.create_volume(world.compartment, name="same-ad")
    expect_error(
        lambda: world.iad.bs.update_volume(
            other.id,
            models.UpdateVolumeDetails(
                block_volume_replicas=[models.BlockVolumeReplicaDetails(availability_domain=world.iad.ad(1))]
            ),
        ),
        400,
        "InvalidParameter",
    )

    server.oci(
        "bv",
        "volume",
        "update",
        "--volume-id",
        volume.id,
        "--block-volume-replicas",
        "[]",
        "--force",
        endpoint=server.endpoint(IAD),
    )
    assert world.iad.bs.get_volume(volume.id).data.block_volume_replicas is None
    wait_gone(lambda: world.iad.bs.get_block_volume_replica(replica_id).data)
    resized = world.iad.bs.update_volume(volume.id, models.UpdateVolumeDetails(size_in_gbs=60)).data
    assert resized.size_in_gbs == 60


def test_key_errors_are_clear_and_create_nothing(world: World) -> None:
    volume = world.iad.create_volume(world.compartment, name="keyerr-src")
    before = {r.id for r in world.phx.bs.list_block_volume_replicas(compartment_id=world.compartment).data}

    def enable(key: str) -> Any:
        return world.iad.bs.update_volume(
            volume.id,
            models.UpdateVolumeDetails(
                block_volume_replicas=[
                    models.BlockVolumeReplicaDetails(availability_domain=world.phx.ad(1), xrr_kms_key_id=key)
                ]
            ),
        )

    expect_error(lambda: enable("not-an-ocid"), 400, "InvalidParameter", "xrrKmsKeyId")
    expect_error(lambda: enable(world.iad_key.id), 400, "InvalidParameter", "us-phoenix-1")  # the source's region
    absent = world.phx_key.id[:-6] + "zzzzzz"
    expect_error(lambda: enable(absent), 400, "RelatedResourceNotAuthorizedOrNotFound", "xrrKmsKeyId")
    rsa_key = world.phx.new_key(world.phx_vault, world.compartment, "rsa", algorithm="RSA", length=256)
    expect_error(lambda: enable(rsa_key.id), 400, "InvalidParameter", "AES")
    disabled = world.phx.new_key(world.phx_vault, world.compartment, "soon-disabled")
    world.phx.disable_key(world.phx_vault, disabled.id)
    expect_key_unusable(lambda: enable(disabled.id), disabled.id, "DISABLED")
    expect_error(
        lambda: world.iad.bs.update_volume(
            volume.id,
            models.UpdateVolumeDetails(
                block_volume_replicas=[models.BlockVolumeReplicaDetails(availability_domain="bvlt:EU-NOWHERE-AD-1")]
            ),
        ),
        400,
        "InvalidParameter",
        "availabilityDomain",
    )
    # nothing was created: no replica anywhere, the volume shows none
    assert world.iad.bs.get_volume(volume.id).data.block_volume_replicas is None
    after = {r.id for r in world.phx.bs.list_block_volume_replicas(compartment_id=world.compartment).data}
    assert after == before
    # a create with a refused replica creates no volume either
    volumes_before = world.iad.volume_ids(world.compartment)
    expect_error(
        lambda: world.iad.bs.create_volume(
            models.CreateVolumeDetails(
                compartment_id=world.compartment,
                availability_domain=world.iad.ad(1),
                display_name="never",
                block_volume_replicas=[
                    models.BlockVolumeReplicaDetails(availability_domain=world.phx.ad(1), xrr_kms_key_id=absent)
                ],
            )
        ),
        400,
        "RelatedResourceNotAuthorizedOrNotFound",
    )
    assert world.iad.volume_ids(world.compartment) == volumes_before


# --------------------------------------------------------------------------------------------- kill -9


class Crashable:
    """A server of our own that we can kill -9 and start again on the same data dir and port."""

    def __init__(self, data_dir: Any) -> None:
        self.conf = e2e_conftest()
        self.data_dir = data_dir
        self.server = self.conf.start_server(data_dir)

    def crash_and_restart(self) -> None:
        self.conf.stop_server(self.server, kill=True)
        assert self.server.process.returncode == -9
        self.server = self.conf.start_server(self.data_dir, port=self.server.port)

    def stop(self) -> None:
        self.conf.stop_server(self.server)


@pytest.fixture
def crashable(tmp_path: Any) -> Iterator[Crashable]:
    srv = Crashable(tmp_path / "data")
    try:
        yield srv
    finally:
        srv.stop()


def test_kill_9_mid_sync_converges_and_never_reports_a_partial_sync_point(crashable: Crashable) -> None:
    server = crashable.server
    iad, phx = Sdk(server, IAD), Sdk(server, PHX)
    compartment = server.tenancy
    volume = iad.create_volume(compartment, name="crash-src")
    image = Image()
    for n in range(4):  # 64 MiB: the initial sync takes a while
        put(server, volume.id, image, n * 3 * (1 << 30) + n * 4097, payload(16 * MIB, f"crash/{n}"))
    iad.bs.update_volume(
        volume.id,
        models.UpdateVolumeDetails(
            block_volume_replicas=[models.BlockVolumeReplicaDetails(availability_domain=phx.ad(1))]
        ),
    )
    replica_id = iad.bs.get_volume(volume.id).data.block_volume_replicas[0].block_volume_replica_id
    crashable.crash_and_restart()  # during (or right around) the initial sync
    server = crashable.server
    iad, phx = Sdk(server, IAD), Sdk(server, PHX)
    first = _wait_available(phx, replica_id)
    assert first.lifecycle_state == "AVAILABLE"

    # a second round: new data, a forced sync, kill -9 while it runs
    at_first = image.copy()
    for n in range(4):
        put(server, volume.id, image, n * 5 * (1 << 30) + 123, payload(16 * MIB, f"crash/second/{n}"))
    moment = server_now(server)
    advance_clock(server, INTERVAL + 1)
    crashable.crash_and_restart()
    server = crashable.server
    iad, phx = Sdk(server, IAD), Sdk(server, PHX)
    # whatever sync point the replica reports, activation gives exactly that point's data
    now = phx.bs.get_block_volume_replica(replica_id).data
    assert now.lifecycle_state == "AVAILABLE"
    expected = image if now.time_last_synced >= moment else at_first
    early = phx.create_volume(
        compartment,
        ad=phx.ad(1),
        size_gb=None,
        source=models.VolumeSourceFromBlockVolumeReplicaDetails(id=replica_id),
        name="early",
    )
    verify(server, early.id, expected, region=PHX)
    # and the sync converges after the restart
    _sync_past(server, phx, replica_id, moment)
    late = phx.create_volume(
        compartment,
        ad=phx.ad(1),
        size_gb=None,
        source=models.VolumeSourceFromBlockVolumeReplicaDetails(id=replica_id),
        name="late",
    )
    verify(server, late.id, image, region=PHX)


def test_turning_replication_on_needs_replica_permissions_and_the_destination_key(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`manage volumes` alone may update the volume but not create its replica (404, as for any forbidden target);
    `manage block-volume-replicas` adds that; an xrrKmsKeyId the user may not delegate in phoenix is 400
    RelatedResourceNotAuthorizedOrNotFound naming xrrKmsKeyId (D6), and nothing is created."""
    server = world.server
    user = new_user(server, tmp_path_factory.mktemp("repl-iam"), "replicator")
    group = f"replicators-{uuid.uuid4().hex[:6]}"
    gid = server.oci("iam", "group", "create", "--name", group, "--description", "repl").json["data"]["id"]
    server.oci("iam", "group", "add-user", "--group-id", gid, "--user-id", user.id)
    name = server.oci("iam", "compartment", "get", "--compartment-id", world.compartment).json["data"]["name"]
    policy(server, server.tenancy, "replicators", f"Allow group {group} to manage volumes in compartment {name}")
    volume = world.iad.create_volume(world.compartment, name="iam-src")

    def enable(*entries: dict[str, str]) -> Any:
        return oci_as(
            server,
            user,
            "bv",
            "volume",
            "update",
            "--volume-id",
            volume.id,
            "--block-volume-replicas",
            json.dumps(list(entries)),
            "--force",
            check=False,
            endpoint=server.endpoint(IAD),
        )

    plain = {"availabilityDomain": world.phx.ad(2)}
    denied = wait_for(lambda: enable(plain), lambda r: r.rc != 0 and "NotAuthorized" in r.err, what="denied")
    assert (denied.error["status"], denied.error["code"]) == (404, "NotAuthorizedOrNotFound")
    assert world.iad.bs.get_volume(volume.id).data.block_volume_replicas is None

    policy(
        server,
        server.tenancy,
        "replicators-2",
        f"Allow group {group} to manage block-volume-replicas in compartment {name}",
    )
    keyed = {"availabilityDomain": world.phx.ad(2), "xrrKmsKeyId": world.phx_key.id}
    refused = wait_for(
        lambda: enable(keyed), lambda r: r.rc != 0 and "RelatedResource" in r.err, what="key refused", timeout=30
    )
    assert (refused.error["status"], refused.error["code"]) == (400, "RelatedResourceNotAuthorizedOrNotFound")
    assert "xrrKmsKeyId" in refused.error["message"]
    assert world.iad.bs.get_volume(volume.id).data.block_volume_replicas is None
    allowed = enable(plain)
    assert allowed.rc == 0, allowed.err
    [info] = allowed.json["data"]["block-volume-replicas"]
    assert _wait_available(world.phx, info["block-volume-replica-id"]).lifecycle_state == "AVAILABLE"
