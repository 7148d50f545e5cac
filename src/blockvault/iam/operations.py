"""Which permissions each API operation needs (pure data; docs/design/iam.md has the same table for readers).

Every operation's permissions are checked in the compartment the handler names: the target resource's compartment
for operations on one resource, the compartment in the body for creates, the listed compartment (per item) for
lists. Sources: oci-behaviour.md R7.10-R7.12 (Vault), R7.23-R7.27 (Block Volume), OCI's IAM policy reference.
An operation missing from this table needs `manage all-resources` (deny by default, never allow by default).
"""

from __future__ import annotations

from blockvault.iam.policy import ANY_PERMISSION

# Operations any authenticated user of the tenancy may call: they reveal nothing a policy protects.
FREE = frozenset(
    {"ListRegions", "ListRegionSubscriptions", "ListAvailabilityDomains", "ListFaultDomains", "GetTenancy"}
)

# Operations a user may always call on themself (OCI: users manage their own credentials without a policy).
SELF = frozenset({"GetUser", "ListApiKeys", "UploadApiKey", "DeleteApiKey"})


def _volume_ops(op: str, p: str) -> dict[str, tuple[str, ...]]:
    return {
        f"Create{op}": (f"{p}_CREATE",),
        f"Get{op}": (f"{p}_INSPECT",),
        f"List{op}s": (f"{p}_INSPECT",),
        f"Update{op}": (f"{p}_UPDATE",),
        f"Delete{op}": (f"{p}_DELETE",),
        f"Change{op}Compartment": (f"{p}_MOVE",),
        f"Get{op}KmsKey": (f"{p}_INSPECT",),
        f"Update{op}KmsKey": (f"{p}_UPDATE",),  # plus key delegation, checked by the handler (R7.27)
        f"Delete{op}KmsKey": (f"{p}_UPDATE",),
        f"Read{op}Data": (f"{p}_WRITE",),  # blockvault data extension: like an attachment, needs `use volumes`
        f"Write{op}Data": (f"{p}_WRITE",),
        # clone / restore: what the handler checks on the source (source volume: `use`; backup: `read`)
        f"Clone{op}Source": (f"{p}_WRITE",),
    }


def _backup_ops(op: str, p: str, volume_p: str) -> dict[str, tuple[str, ...]]:
    return {
        f"Create{op}": (f"{p}_CREATE", f"{volume_p}_WRITE"),  # R7.23: `use volumes` + `manage volume-backups`
        f"Get{op}": (f"{p}_INSPECT",),
        f"List{op}s": (f"{p}_INSPECT",),
        f"Update{op}": (f"{p}_UPDATE",),
        f"Delete{op}": (f"{p}_DELETE",),
        # R3.31: cross-region copy needs READ + COPY on the source backup and CREATE where the copy lands
        f"Copy{op}": (f"{p}_READ", f"{p}_COPY"),
        f"Create{op}Copy": (f"{p}_CREATE",),
        f"Change{op}Compartment": (f"{p}_MOVE",),
        f"Restore{op}Source": (f"{p}_READ",),  # R7.24: creating a volume from a backup needs `read volume-backups`
    }


OPERATIONS: dict[str, tuple[str, ...]] = {
    **_volume_ops("Volume", "VOLUME"),
    **_volume_ops("BootVolume", "BOOT_VOLUME"),
    **_backup_ops("VolumeBackup", "VOLUME_BACKUP", "VOLUME"),
    **_backup_ops("BootVolumeBackup", "BOOT_VOLUME_BACKUP", "BOOT_VOLUME"),
    "GetWorkRequest": ("VOLUME_INSPECT",),
    "GetBackupWorkRequest": ("VOLUME_BACKUP_INSPECT",),
    # replication (R5.8-R5.12; `volume-family` covers block-volume-replicas and boot-volume-replicas): turning it on
    # or off is checked where the source volume is, activation on the replica (like a clone's source, `manage`)
    "GetBlockVolumeReplica": ("BLOCK_VOLUME_REPLICA_INSPECT",),
    "ListBlockVolumeReplicas": ("BLOCK_VOLUME_REPLICA_INSPECT",),
    "CreateBlockVolumeReplica": ("BLOCK_VOLUME_REPLICA_CREATE",),
    "DeleteBlockVolumeReplica": ("BLOCK_VOLUME_REPLICA_DELETE",),
    "ActivateBlockVolumeReplica": ("BLOCK_VOLUME_REPLICA_UPDATE",),
    "GetBootVolumeReplica": ("BOOT_VOLUME_REPLICA_INSPECT",),
    "ListBootVolumeReplicas": ("BOOT_VOLUME_REPLICA_INSPECT",),
    "CreateBootVolumeReplica": ("BOOT_VOLUME_REPLICA_CREATE",),
    "DeleteBootVolumeReplica": ("BOOT_VOLUME_REPLICA_DELETE",),
    "ActivateBootVolumeReplica": ("BOOT_VOLUME_REPLICA_UPDATE",),
    # Volume group replicas (group_replication.py): members are block volume replicas, so volume-family's
    # block-volume-replicas permissions govern them; turning it on also needs VOLUME_GROUP_UPDATE (the update itself).
    "GetVolumeGroupReplica": ("BLOCK_VOLUME_REPLICA_INSPECT",),
    "ListVolumeGroupReplicas": ("BLOCK_VOLUME_REPLICA_INSPECT",),
    "CreateVolumeGroupReplica": ("BLOCK_VOLUME_REPLICA_CREATE",),
    "DeleteVolumeGroupReplica": ("BLOCK_VOLUME_REPLICA_DELETE",),
    "ActivateVolumeGroupReplica": ("BLOCK_VOLUME_REPLICA_UPDATE",),
    # attachments (the NBD attach issue): `manage volume-attachments` + `use volumes` (R7.23)
    "AttachVolume": ("VOLUME_ATTACHMENT_CREATE", "VOLUME_WRITE"),
    "DetachVolume": ("VOLUME_ATTACHMENT_DELETE",),
    "GetVolumeAttachment": ("VOLUME_ATTACHMENT_INSPECT",),
    "ListVolumeAttachments": ("VOLUME_ATTACHMENT_INSPECT",),
    "AttachBootVolume": ("VOLUME_ATTACHMENT_CREATE", "BOOT_VOLUME_WRITE"),
    "DetachBootVolume": ("VOLUME_ATTACHMENT_DELETE",),
    "ListBootVolumeAttachments": ("VOLUME_ATTACHMENT_INSPECT",),
    # volume groups and their backups (R7.25: inspect + manage; blockstorage/groups.py). A resource the body names
    # is checked in its own compartment by the handler: a joining volume (inspect), a cloned group's volumes (use,
    # CloneVolumeSource), a restored group backup's members (read, RestoreVolumeBackupSource).
    "CreateVolumeGroup": ("VOLUME_GROUP_CREATE",),
    "GetVolumeGroup": ("VOLUME_GROUP_INSPECT",),
    "ListVolumeGroups": ("VOLUME_GROUP_INSPECT",),
    "UpdateVolumeGroup": ("VOLUME_GROUP_UPDATE",),
    "DeleteVolumeGroup": ("VOLUME_GROUP_DELETE",),
    "ChangeVolumeGroupCompartment": ("VOLUME_GROUP_MOVE",),
    "AddVolumeToVolumeGroup": ("VOLUME_INSPECT",),
    "CloneVolumeGroupSource": ("VOLUME_GROUP_INSPECT",),
    "CreateVolumeGroupBackup": ("VOLUME_GROUP_BACKUP_CREATE",),  # + CreateVolumeBackup on every member volume
    "GetVolumeGroupBackup": ("VOLUME_GROUP_BACKUP_INSPECT",),
    "ListVolumeGroupBackups": ("VOLUME_GROUP_BACKUP_INSPECT",),
    "UpdateVolumeGroupBackup": ("VOLUME_GROUP_BACKUP_UPDATE",),
    "DeleteVolumeGroupBackup": ("VOLUME_GROUP_BACKUP_DELETE",),  # + DeleteVolumeBackup on every member backup
    "ChangeVolumeGroupBackupCompartment": ("VOLUME_GROUP_BACKUP_MOVE",),
    "RestoreVolumeGroupBackupSource": ("VOLUME_GROUP_BACKUP_INSPECT",),
    # group backup copy: as CopyVolumeBackup (R3.31) for the group backup, plus CopyVolumeBackup on every member
    "CopyVolumeGroupBackup": ("VOLUME_GROUP_BACKUP_INSPECT", "VOLUME_GROUP_BACKUP_COPY"),
    "CreateVolumeGroupBackupCopy": ("VOLUME_GROUP_BACKUP_CREATE",),
    # backup policies and assignments (R7.25; `volume-family` includes both). Oracle-defined policies are read in
    # the tenancy (R3.13); an assignment is authorized in its asset's compartment.
    "ListVolumeBackupPolicies": ("BACKUP_POLICIES_INSPECT",),
    "GetVolumeBackupPolicy": ("BACKUP_POLICIES_INSPECT",),
    "CreateVolumeBackupPolicy": ("BACKUP_POLICIES_CREATE",),
    "UpdateVolumeBackupPolicy": ("BACKUP_POLICIES_UPDATE",),
    "DeleteVolumeBackupPolicy": ("BACKUP_POLICIES_DELETE",),
    "CreateVolumeBackupPolicyAssignment": ("BACKUP_POLICY_ASSIGNMENT_CREATE",),
    "GetVolumeBackupPolicyAssignment": ("BACKUP_POLICY_ASSIGNMENT_INSPECT",),
    "DeleteVolumeBackupPolicyAssignment": ("BACKUP_POLICY_ASSIGNMENT_DELETE",),
    # Vault (R7.10-R7.12)
    "ListVaults": ("VAULT_INSPECT",),
    "GetVault": ("VAULT_READ",),
    "GetVaultUsage": ("VAULT_READ",),
    "CreateVault": ("VAULT_CREATE",),
    "UpdateVault": ("VAULT_UPDATE",),
    "ScheduleVaultDeletion": ("VAULT_DELETE",),
    "CancelVaultDeletion": ("VAULT_DELETE",),
    "ChangeVaultCompartment": ("VAULT_MOVE",),
    "CreateVaultReplica": ("VAULT_REPLICATE",),  # R7.10: manage vaults
    "DeleteVaultReplica": ("VAULT_REPLICATE",),
    "ListVaultReplicas": ("VAULT_INSPECT",),
    "GetReplicationStatus": ("VAULT_READ",),  # blockvault's choice: OCI names no permission for it
    "ListKeys": ("KEY_INSPECT",),
    "GetKey": ("KEY_READ",),
    "CreateKey": ("KEY_CREATE",),  # plus VAULT_CREATE_KEY in the vault's compartment, checked by the handler
    "CreateKeyInVault": ("VAULT_CREATE_KEY",),
    "UpdateKey": ("KEY_UPDATE",),
    "EnableKey": ("KEY_UPDATE",),
    "DisableKey": ("KEY_UPDATE",),
    "ScheduleKeyDeletion": ("KEY_DELETE",),
    "CancelKeyDeletion": ("KEY_DELETE",),
    "CreateKeyVersion": ("KEY_ROTATE",),
    "ListKeyVersions": ("KEY_INSPECT",),
    "GetKeyVersion": ("KEY_READ",),
    "Encrypt": ("KEY_ENCRYPT",),
    "GenerateDataEncryptionKey": ("KEY_ENCRYPT",),
    "Decrypt": ("KEY_DECRYPT",),
    # key delegation (R7.13, R7.17): the caller associates, the service principal uses
    "AssociateKey": ("KEY_ASSOCIATE",),
    "ServiceUseKey": ("KEY_ENCRYPT", "KEY_DECRYPT"),
    # Identity
    "CreateCompartment": ("COMPARTMENT_CREATE",),
    "GetCompartment": ("COMPARTMENT_INSPECT",),
    "ListCompartments": ("COMPARTMENT_INSPECT",),
    "UpdateCompartment": ("COMPARTMENT_UPDATE",),
    "DeleteCompartment": ("COMPARTMENT_DELETE",),
    "ListUsers": ("USER_INSPECT",),
    "GetUser": ("USER_READ",),
    "CreateUser": ("USER_CREATE",),
    "UpdateUser": ("USER_UPDATE",),
    "DeleteUser": ("USER_DELETE",),
    "ListApiKeys": ("USER_READ",),
    "UploadApiKey": ("USER_APIKEY_ADD",),
    "DeleteApiKey": ("USER_APIKEY_REMOVE",),
    "ListGroups": ("GROUP_INSPECT",),
    "GetGroup": ("GROUP_READ",),
    "CreateGroup": ("GROUP_CREATE",),
    "UpdateGroup": ("GROUP_UPDATE",),
    "DeleteGroup": ("GROUP_DELETE",),
    "AddUserToGroup": ("GROUP_UPDATE", "USER_UPDATE"),
    "RemoveUserFromGroup": ("GROUP_UPDATE", "USER_UPDATE"),
    "GetUserGroupMembership": ("GROUP_INSPECT", "USER_INSPECT"),
    "ListUserGroupMemberships": ("GROUP_INSPECT", "USER_INSPECT"),
    "ListPolicies": ("POLICY_READ",),
    "GetPolicy": ("POLICY_READ",),
    "CreatePolicy": ("POLICY_CREATE",),
    "UpdatePolicy": ("POLICY_UPDATE",),
    "DeletePolicy": ("POLICY_DELETE",),
    # blockvault extensions
    "ExplainAuthorization": ("POLICY_READ", "USER_INSPECT"),
    "CisCheck": ("POLICY_READ",),
}


def required(operation: str) -> tuple[str, ...]:
    """The permissions `operation` needs; unknown operations need everything (`manage all-resources`)."""
    if operation in FREE:
        return ()
    return OPERATIONS.get(operation, (ANY_PERMISSION,))
