"""Domain records -> OCI wire JSON (camelCase, exact casing quirks of oci-wire.md §0.17). Only here."""

from __future__ import annotations

from typing import Any

from blockvault.blockstorage.model import Backup, Job, Volume
from blockvault.clock import to_wire as t
from blockvault.iam.model import Compartment, Tenancy, User
from blockvault.vault.model import Key, KeyVersion, Vault


def volume(v: Volume, attached: int = 0) -> dict[str, Any]:
    """`attached`: the volume's ATTACHED NBD attachments, shown in systemTags (OCI's place for service facts)."""
    out: dict[str, Any] = {
        "id": v.id,
        "availabilityDomain": v.availability_domain,
        "compartmentId": v.compartment_id,
        "displayName": v.display_name,
        "freeformTags": v.freeform_tags,
        "definedTags": v.defined_tags,
        "systemTags": {"blockvault": {"attachmentCount": attached, "isAttached": attached > 0}},
        "isHydrated": v.is_hydrated,
        "kmsKeyId": v.kms_key_id,
        "lifecycleState": v.state,
        "vpusPerGB": v.vpus_per_gb,
        "sizeInGBs": v.size_gb,
        "sizeInMBs": v.size_gb * 1024,
        "timeCreated": t(v.time_created),
        "isAutoTuneEnabled": False,
        "autoTunedVpusPerGB": v.vpus_per_gb,
        "autotunePolicies": [],
        "volumeGroupId": v.volume_group_id,
    }
    if v.source_type and v.source_id:
        out["sourceDetails"] = {"type": v.source_type, "id": v.source_id}
    if v.kind == "volume":
        out["blockVolumeReplicas"] = None
        out["isReservationsEnabled"] = False
    else:
        out["bootVolumeReplicas"] = None
        out["imageId"] = None
    return out


def backup(b: Backup, source_backup_id: str | None = None) -> dict[str, Any]:
    """`source_backup_id`: the backup this one was copied from (cross-region copy), else None."""
    out: dict[str, Any] = {
        "id": b.id,
        "compartmentId": b.compartment_id,
        "displayName": b.display_name,
        "freeformTags": b.freeform_tags,
        "definedTags": b.defined_tags,
        "systemTags": {},
        "expirationTime": t(b.expiration_time),
        "kmsKeyId": b.kms_key_id,
        "lifecycleState": b.state,
        "sizeInGBs": b.size_gb,
        "sourceType": b.source_type,
        "timeCreated": t(b.time_created),
        "timeRequestReceived": t(b.time_request_received),
        "type": b.type,
        "uniqueSizeInGBs": (b.unique_size_bytes + (1 << 30) - 1) >> 30,
    }
    if b.kind == "volume":
        out["volumeId"] = b.volume_id
        out["sizeInMBs"] = b.size_gb * 1024
        out["uniqueSizeInMbs"] = (b.unique_size_bytes + (1 << 20) - 1) >> 20
        out["sourceVolumeBackupId"] = source_backup_id
    else:
        out["bootVolumeId"] = b.volume_id
        out["imageId"] = None
        out["sourceBootVolumeBackupId"] = source_backup_id
    return out


def kms_key(key_id: str | None) -> dict[str, Any]:
    return {"kmsKeyId": key_id}


def vault(v: Vault, management: str, crypto: str, *, summary: bool = False, state: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": v.id,
        "compartmentId": v.compartment_id,
        "displayName": v.display_name,
        "cryptoEndpoint": crypto,
        "managementEndpoint": management,
        "lifecycleState": state or v.state,
        "timeCreated": t(v.time_created),
        "vaultType": v.vault_type,
        "freeformTags": v.freeform_tags,
        "definedTags": v.defined_tags,
    }
    if not summary:
        out.update(
            {
                "timeOfDeletion": t(v.time_of_deletion),
                "wrappingkeyId": None,
                "isPrimary": True,
                "isVaultReplicable": v.vault_type == "VIRTUAL_PRIVATE",
                "restoredFromVaultId": None,
                "replicaDetails": None,
            }
        )
        out["wrappingkeyId"] = v.id.replace("ocid1.vault.", "ocid1.key.", 1) + "wrap"
    return out


def key(k: Key, *, summary: bool = False, state: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": k.id,
        "compartmentId": k.compartment_id,
        "displayName": k.display_name,
        "lifecycleState": state or k.state,
        "timeCreated": t(k.time_created),
        "vaultId": k.vault_id,
        "protectionMode": k.protection_mode,
        "freeformTags": k.freeform_tags,
        "definedTags": k.defined_tags,
        "isAutoRotationEnabled": False,
    }
    if summary:
        out["algorithm"] = k.algorithm
    else:
        shape: dict[str, Any] = {"algorithm": k.algorithm, "length": k.length}
        if k.curve_id:
            shape["curveId"] = k.curve_id
        out.update(
            {
                "currentKeyVersion": k.current_version_id,
                "keyShape": shape,
                "timeOfDeletion": t(k.time_of_deletion),
                "isPrimary": True,
                "replicaDetails": None,
                "restoredFromKeyId": None,
            }
        )
    return out


def key_version(v: KeyVersion) -> dict[str, Any]:
    return {
        "id": v.id,
        "keyId": v.key_id,
        "vaultId": v.vault_id,
        "compartmentId": v.compartment_id,
        "lifecycleState": v.state,
        "origin": v.origin,
        "timeCreated": t(v.time_created),
        "timeOfDeletion": t(v.time_of_deletion),
        "isPrimary": True,
        "isAutoRotated": False,
    }


def work_request(j: Job, resource_type: str) -> dict[str, Any]:
    return {
        "id": j.id,
        "operationType": j.operation,
        "status": j.state,
        "compartmentId": j.compartment_id,
        "resources": [{"entityType": resource_type, "actionType": "IN_PROGRESS", "identifier": j.resource_id}],
        "percentComplete": j.percent_complete,
        "timeAccepted": t(j.time_accepted),
        "timeStarted": t(j.time_started),
        "timeFinished": t(j.time_finished),
    }


def tenancy(x: Tenancy) -> dict[str, Any]:
    return {
        "id": x.id,
        "name": x.name,
        "description": "",
        "homeRegionKey": x.home_region,
        "freeformTags": {},
        "definedTags": {},
    }


def compartment(c: Compartment, tenancy_id: str) -> dict[str, Any]:
    return {
        "id": c.id,
        "compartmentId": c.parent_id or tenancy_id,
        "name": c.name,
        "description": c.description,
        "lifecycleState": c.state,
        "timeCreated": t(c.time_created),
        "freeformTags": {},
        "definedTags": {},
        "isAccessible": True,
    }


def user(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "compartmentId": u.tenancy_id,
        "name": u.name,
        "description": u.description,
        "lifecycleState": u.state,
        "timeCreated": t(u.time_created),
        "freeformTags": {},
        "definedTags": {},
        "isMfaActivated": False,
        "email": None,
    }


# --- volume replication (blockstorage/replication.py) ------------------------------------------------------------


def replica(r: Any) -> dict[str, Any]:
    """BlockVolumeReplica / BootVolumeReplica. `totalDataTransferredInGBs` rounds up (any data shipped shows)."""
    out: dict[str, Any] = {
        "id": r.id,
        "availabilityDomain": r.availability_domain,
        "compartmentId": r.compartment_id,
        "displayName": r.display_name,
        "freeformTags": r.freeform_tags,
        "definedTags": r.defined_tags,
        "kmsKeyId": r.kms_key_id,
        "lifecycleState": r.state,
        "sizeInGBs": r.size_gb,
        "timeCreated": t(r.time_created),
        "timeLastSynced": t(r.time_last_synced),
        "totalDataTransferredInGBs": (r.bytes_transferred + (1 << 30) - 1) >> 30,
        "volumeGroupReplicaId": getattr(r, "volume_group_replica_id", None),  # a member of a group replica
    }
    if r.kind == "volume":
        out["blockVolumeId"] = r.source_volume_id
    else:
        out["bootVolumeId"] = r.source_volume_id
        out["imageId"] = None
    return out


def replica_infos(kind: str, links: list[Any]) -> list[dict[str, Any]]:
    """A volume's `blockVolumeReplicas` (BlockVolumeReplicaInfo) / `bootVolumeReplicas` (BootVolumeReplicaInfo)."""
    id_field = "blockVolumeReplicaId" if kind == "volume" else "bootVolumeReplicaId"
    return [
        {
            "displayName": link.display_name,
            id_field: link.id,
            "availabilityDomain": link.availability_domain,
            "kmsKeyId": link.kms_key_id,
        }
        for link in links
    ]
