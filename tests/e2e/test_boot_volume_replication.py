"""Boot volume replication and activation (oci-behaviour.md R5.22; oci-wire.md §4.1, §4.6): `bootVolumeReplicas`,
`/bootVolumeReplicas`, and `CreateBootVolume` with sourceDetails `bootVolumeReplica` (`oci bv boot-volume create
--source-volume-replica-id`), with the same key rules as block volume replicas (R5.14, D4)."""

from __future__ import annotations

import json
from typing import Any

import oci
import pytest
from helpers import MIB, Sdk, advance_clock, expect_error, payload, raw, server_now, wait_for, wait_gone

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"
models = oci.core.models
GIB = 1 << 30
WRITES = [(0, payload(MIB, "boot/0")), (3 * GIB + 4097, payload(300_007, "boot/1")), (49 * GIB, payload(4096, "b/2"))]


def _put(server: Any, boot_id: str, offset: int, data: bytes, region: str = IAD) -> None:
    resp = raw(
        server,
        "PUT",
        f"/20160918/bootVolumes/{boot_id}/data",
        region=region,
        data=data,
        params={"offset": offset},
        headers={"content-type": "application/octet-stream"},
    )
    assert resp.status_code == 200, resp.text


def _get(server: Any, boot_id: str, offset: int, length: int, region: str) -> bytes:
    resp = raw(
        server,
        "GET",
        f"/20160918/bootVolumes/{boot_id}/data",
        region=region,
        params={"offset": offset, "length": length},
        headers={"accept": "application/octet-stream"},
    )
    assert resp.status_code == 200, resp.text
    return resp.content


def test_boot_volume_replica_follows_the_source_and_activates_with_the_real_cli(server: Any) -> None:
    iad, phx = Sdk(server, IAD), Sdk(server, PHX)
    compartment = iad.new_compartment("bootrepl")
    iad_key = iad.new_key(iad.new_vault(compartment, "iad"), compartment, "iad-key")
    phx_key = phx.new_key(phx.new_vault(compartment, "phx"), compartment, "phx-key")
    boot = iad.bs.create_boot_volume(
        models.CreateBootVolumeDetails(
            compartment_id=compartment,
            availability_domain=iad.ad(1),
            size_in_gbs=50,
            kms_key_id=iad_key.id,
            display_name="boot-src",
            boot_volume_replicas=[
                models.BootVolumeReplicaDetails(availability_domain=phx.ad(3), xrr_kms_key_id=phx_key.id)
            ],
        )
    ).data
    boot = wait_for(lambda: iad.bs.get_boot_volume(boot.id).data, lambda b: b.lifecycle_state == "AVAILABLE")
    [info] = boot.boot_volume_replicas
    replica_id = info.boot_volume_replica_id
    assert replica_id.startswith("ocid1.bootvolumereplica.oc1.phx.")
    assert (info.availability_domain, info.kms_key_id) == (phx.ad(3), phx_key.id)
    for offset, data in WRITES:
        _put(server, boot.id, offset, data)
    moment = server_now(server)
    advance_clock(server, 61)
    replica = wait_for(
        lambda: phx.bs.get_boot_volume_replica(replica_id).data,
        lambda r: r.time_last_synced is not None and r.time_last_synced >= moment,
        what="boot replica synced",
    )
    assert (replica.lifecycle_state, replica.boot_volume_id, replica.kms_key_id) == ("AVAILABLE", boot.id, phx_key.id)
    assert replica.size_in_gbs == 50

    cli = server.oci(
        "bv", "boot-volume-replica", "get", "--boot-volume-replica-id", replica_id, endpoint=server.endpoint(PHX)
    ).json["data"]
    assert (cli["boot-volume-id"], cli["image-id"], cli["kms-key-id"]) == (boot.id, None, phx_key.id)
    listed = server.oci(
        "bv",
        "boot-volume-replica",
        "list",
        "--compartment-id",
        compartment,
        "--availability-domain",
        phx.ad(3),
        endpoint=server.endpoint(PHX),
    ).json["data"]
    assert [r["id"] for r in listed] == [replica_id]
    ours = server.bv("--region", PHX, "bv", "boot-volume-replica", "get", "--boot-volume-replica-id", replica_id).json[
        "data"
    ]
    assert ours["boot-volume-id"] == boot.id

    # a boot replica is not a block volume replica
    expect_error(
        lambda: phx.bs.create_volume(
            models.CreateVolumeDetails(
                compartment_id=compartment,
                availability_domain=phx.ad(3),
                source_details=models.VolumeSourceFromBlockVolumeReplicaDetails(id=replica_id),
            )
        ),
        400,
        "InvalidParameter",
    )

    _put(server, boot.id, 0, b"\xab" * MIB)  # after the sync point: not in the activated volume
    out = server.oci(
        "bv",
        "boot-volume",
        "create",
        "--source-volume-replica-id",
        replica_id,
        "--display-name",
        "boot-act",
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
        endpoint=server.endpoint(PHX),
    ).json["data"]
    assert out["id"].startswith("ocid1.bootvolume.oc1.phx.")
    assert (out["availability-domain"], out["kms-key-id"]) == (phx.ad(3), phx_key.id)  # D4
    assert out["source-details"] == {"type": "bootVolumeReplica", "id": replica_id}
    for offset, data in WRITES:
        assert _get(server, out["id"], offset, len(data), PHX) == data
    assert _get(server, out["id"], 20 * GIB, 65536, PHX) == bytes(65536)

    # resize refused while replicating; [] deletes the replica, then the resize works
    expect_error(
        lambda: iad.bs.update_boot_volume(boot.id, models.UpdateBootVolumeDetails(size_in_gbs=60)),
        409,
        "Conflict",
        "replication",
    )
    server.oci(
        "bv",
        "boot-volume",
        "update",
        "--boot-volume-id",
        boot.id,
        "--boot-volume-replicas",
        json.dumps([]),
        "--force",
        endpoint=server.endpoint(IAD),
    )
    assert iad.bs.get_boot_volume(boot.id).data.boot_volume_replicas is None
    wait_gone(lambda: phx.bs.get_boot_volume_replica(replica_id).data)
    assert iad.bs.update_boot_volume(boot.id, models.UpdateBootVolumeDetails(size_in_gbs=60)).data.size_in_gbs == 60
