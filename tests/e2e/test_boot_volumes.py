"""Boot volumes follow the same key rules as block volumes (R1.20): own DEK, backups inherit the key, restore
without a key gets the provider key, clone keeps the source's key (D3), boot-volume-kms-key re-wraps only, and
a boot volume backup can go back to the provider key with kmsKeyId "" (D7).

The first boot volume is created empty through the API (a blockvault extension: OCI makes it at instance launch).
"""

from __future__ import annotations

import os
from typing import Any

import oci
import pytest
from helpers import GIB, MIB, Sdk, raw, wait_for

pytestmark = pytest.mark.e2e

models = oci.core.models


def _put(server: Any, boot_id: str, offset: int, data: bytes) -> None:
    resp = raw(
        server,
        "PUT",
        f"/20160918/bootVolumes/{boot_id}/data",
        data=data,
        params={"offset": offset},
        headers={"content-type": "application/octet-stream"},
    )
    assert resp.status_code == 200, resp.text


def _get(server: Any, boot_id: str, offset: int, length: int) -> bytes:
    resp = raw(server, "GET", f"/20160918/bootVolumes/{boot_id}/data", params={"offset": offset, "length": length})
    assert resp.status_code == 200, resp.text
    return resp.content


def _wait_boot(sdk: Sdk, boot_id: str, *, hydrated: bool = False) -> Any:
    return wait_for(
        lambda: sdk.bs.get_boot_volume(boot_id).data,
        lambda b: b.lifecycle_state == "AVAILABLE" and (b.is_hydrated or not hydrated),
        what=f"boot volume {boot_id} AVAILABLE",
    )


def _wait_backup(sdk: Sdk, backup_id: str) -> Any:
    return wait_for(
        lambda: sdk.bs.get_boot_volume_backup(backup_id).data,
        lambda b: b.lifecycle_state == "AVAILABLE",
        what=f"boot volume backup {backup_id} AVAILABLE",
    )


def test_boot_volume_key_rules_end_to_end(server: Any) -> None:
    sdk = Sdk(server)
    compartment = server.tenancy
    vault = sdk.new_vault(compartment, "boot-vault")
    k1 = sdk.new_key(vault, compartment, "boot-k1")
    k2 = sdk.new_key(vault, compartment, "boot-k2")

    boot = sdk.bs.create_boot_volume(
        models.CreateBootVolumeDetails(
            compartment_id=compartment,
            availability_domain=sdk.ad(1),
            size_in_gbs=50,
            kms_key_id=k1.id,
            display_name="boot",
        )
    ).data
    assert boot.lifecycle_state == "PROVISIONING"
    boot = _wait_boot(sdk, boot.id)
    assert boot.kms_key_id == k1.id
    assert boot.id.startswith("ocid1.bootvolume.oc1.iad.")

    first = os.urandom(3 * MIB)
    _put(server, boot.id, 512, first)
    assert _get(server, boot.id, 512, len(first)) == first

    # A boot volume backup inherits the boot volume's key (S3).
    backup = sdk.bs.create_boot_volume_backup(
        models.CreateBootVolumeBackupDetails(boot_volume_id=boot.id, type="FULL")
    ).data
    backup = _wait_backup(sdk, backup.id)
    assert backup.kms_key_id == k1.id
    assert backup.boot_volume_id == boot.id

    later = os.urandom(MIB)
    _put(server, boot.id, 0, later)

    # The real CLI: restore with another key, through its pre-GET of the boot volume backup.
    out = server.oci(
        "bv",
        "boot-volume",
        "create",
        "--boot-volume-backup-id",
        backup.id,
        "--availability-domain",
        sdk.ad(2),
        "--kms-key-id",
        k2.id,
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ).json["data"]
    assert out["kms-key-id"] == k2.id
    assert out["is-hydrated"] is True
    assert _get(server, out["id"], 512, len(first)) == first  # the data at backup time, not the later write

    # Restore without a key: the provider-managed key (R3.18), and may be larger, never smaller.
    plain = sdk.bs.create_boot_volume(
        models.CreateBootVolumeDetails(
            compartment_id=compartment,
            availability_domain=sdk.ad(1),
            size_in_gbs=60,
            source_details=models.BootVolumeSourceFromBootVolumeBackupDetails(id=backup.id),
        )
    ).data
    plain = _wait_boot(sdk, plain.id)
    assert plain.kms_key_id is None
    assert plain.size_in_gbs == 60
    assert _get(server, plain.id, 512, len(first)) == first
    smaller = oci.exceptions.ServiceError
    with pytest.raises(smaller) as caught:
        sdk.bs.create_boot_volume(
            models.CreateBootVolumeDetails(
                compartment_id=compartment,
                availability_domain=sdk.ad(1),
                size_in_gbs=40,
                source_details=models.BootVolumeSourceFromBootVolumeBackupDetails(id=backup.id),
            )
        )
    assert (caught.value.status, caught.value.code) == (400, "InvalidParameter")

    # Clone without a key keeps the source's key (D3) and has the source's current data.
    clone = sdk.bs.create_boot_volume(
        models.CreateBootVolumeDetails(
            compartment_id=compartment, source_details=models.BootVolumeSourceFromBootVolumeDetails(id=boot.id)
        )
    ).data
    clone = _wait_boot(sdk, clone.id, hydrated=True)
    assert clone.kms_key_id == k1.id
    assert _get(server, clone.id, 0, MIB) == later
    assert _get(server, clone.id, MIB, 2 * MIB) == first[MIB - 512 : 3 * MIB - 512]

    # boot-volume-kms-key: update re-wraps (data intact), delete goes back to the provider key.
    updated = server.oci("bv", "boot-volume-kms-key", "update", "--boot-volume-id", boot.id, "--kms-key-id", k2.id)
    assert updated.json["data"]["kms-key-id"] == k2.id
    assert _get(server, boot.id, 0, MIB) == later
    server.oci("bv", "boot-volume-kms-key", "delete", "--boot-volume-id", boot.id, "--force")
    got = server.oci("bv", "boot-volume-kms-key", "get", "--boot-volume-id", boot.id).json
    assert got is None or got["data"].get("kms-key-id") is None
    assert _get(server, boot.id, 0, MIB) == later
    # The backup made before the key changes keeps its key (S9) ...
    assert sdk.bs.get_boot_volume_backup(backup.id).data.kms_key_id == k1.id
    # ... and can go back to the provider key with kmsKeyId "" (D7), still restorable.
    back = server.oci("bv", "boot-volume-backup", "update", "--boot-volume-backup-id", backup.id, "--kms-key-id", "")
    assert back.json["data"]["kms-key-id"] is None
    again = sdk.bs.create_boot_volume(
        models.CreateBootVolumeDetails(
            compartment_id=compartment,
            availability_domain=sdk.ad(3),
            source_details=models.BootVolumeSourceFromBootVolumeBackupDetails(id=backup.id),
        )
    ).data
    again = _wait_boot(sdk, again.id)
    assert _get(server, again.id, 512, len(first)) == first
    assert again.size_in_gbs * GIB >= 50 * GIB
