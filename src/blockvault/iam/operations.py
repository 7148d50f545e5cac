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
    # attachments (the NBD attach issue): `manage volume-attachments` + `use volumes` (R7.23)
    "AttachVolume": ("VOLUME_ATTACHMENT_CREATE", "VOLUME_WRITE"),
    "DetachVolume": ("VOLUME_ATTACHMENT_DELETE",),
    "GetVolumeAttachment": ("VOLUME_ATTACHMENT_INSPECT",),
    "ListVolumeAttachments": ("VOLUME_ATTACHMENT_INSPECT",),
    "AttachBootVolume": ("VOLUME_ATTACHMENT_CREATE", "BOOT_VOLUME_WRITE"),
    "DetachBootVolume": ("VOLUME_ATTACHMENT_DELETE",),
    "ListBootVolumeAttachments": ("VOLUME_ATTACHMENT_INSPECT",),
    # Vault (R7.10-R7.12)
    "ListVaults": ("VAULT_INSPECT",),
    "GetVault": ("VAULT_READ",),
    "GetVaultUsage": ("VAULT_READ",),
    "CreateVault": ("VAULT_CREATE",),
    "UpdateVault": ("VAULT_UPDATE",),
    "ScheduleVaultDeletion": ("VAULT_DELETE",),
    "CancelVaultDeletion": ("VAULT_DELETE",),
    "ChangeVaultCompartment": ("VAULT_MOVE",),
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
