"""What one region's Vault asks of another when it replicates a vault there (oci-behaviour.md R6.30-R6.37, D5).

The SOURCE region's VaultService drives replication; the DESTINATION region's VaultService answers through a
`VaultPeer`. The interface is narrow and every value is plain data (str, int, bool, bytes, tuples of frozen
dataclasses), so an HTTP transport between region processes can serialize the calls generically; the in-process
implementation here calls the destination's VaultService directly (both regions live in one `blockvault serve`).

Replication is by state, not by delta: `ensure_replica_vault` and `sync_key` carry the whole current state of the
source vault or key (with every key version), and the destination converges to it. Every call is therefore
idempotent and can be retried or repeated (a resync) without harm.

Key material never crosses in the clear: each version's material is wrapped by the source keystore for the
destination keystore's RSA transfer key (`transfer_public_key`, vault/keystore/transfer.py: RSA-OAEP-SHA256 +
AES key wrap with padding, bound to the version it carries). The destination imports it into its own keystore under
its own root key.

Errors are blockvault.errors domain errors: `NotFound` (no replica of that source vault), `DecryptionFailed`
(a material blob not made for this destination), `Unavailable` (the destination region cannot be reached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from blockvault.errors import Conflict

if TYPE_CHECKING:
    from blockvault.vault.service import VaultService

__all__ = [
    "InProcessVaultPeer",
    "KeySnapshot",
    "ReplicaReadOnly",
    "ReplicaVaultInfo",
    "ReplicaVaultSpec",
    "VaultPeer",
    "VersionSnapshot",
    "material_context",
]


class ReplicaReadOnly(Conflict):
    """R6.31: a replica vault and its keys allow crypto operations only (409 Conflict: permanent, not retried)."""

    message = (
        "vault {vault_id} is a replica of vault {source_vault_id} in {source_region}: it allows crypto operations"
        " only; {operation} must be done on the source vault, and is replicated from there"
    )


@dataclass(frozen=True, slots=True)
class ReplicaVaultSpec:
    """The source vault's state, as its replica must mirror it. Times are RFC 3339 strings."""

    source_vault_id: str
    source_region: str
    replication_id: str
    compartment_id: str
    display_name: str
    vault_type: str
    state: str
    time_created: str
    time_of_deletion: str | None
    tags_json: str  # {"freeform": {...}, "defined": {...}} as JSON text


@dataclass(frozen=True, slots=True)
class ReplicaVaultInfo:
    """The replica vault in the destination region: its own OCID and endpoints (VaultReplicaSummary)."""

    vault_id: str
    management_endpoint: str
    crypto_endpoint: str


@dataclass(frozen=True, slots=True)
class VersionSnapshot:
    source_version_id: str
    state: str
    origin: str
    time_created: str
    time_of_deletion: str | None
    material: bytes  # transfer-wrapped for the destination; b"" when there is none to send (non-AES, destroyed)


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    source_key_id: str
    replication_id: str
    compartment_id: str
    display_name: str
    algorithm: str
    length: int
    curve_id: str | None
    protection_mode: str
    state: str
    prev_state: str | None
    time_created: str
    time_of_deletion: str | None
    scheduled_with_vault: bool
    current_version: str  # a source_version_id
    versions: tuple[VersionSnapshot, ...]
    tags_json: str


def material_context(
    destination_region: str, source_key_id: str, source_version_id: str, length: int
) -> dict[str, str]:
    """What a material blob is bound to (the OAEP label): both sides compute it from what they already know."""
    return {
        "destinationRegion": destination_region,
        "sourceKeyId": source_key_id,
        "sourceKeyVersionId": source_version_id,
        "length": str(length),
    }


class VaultPeer(Protocol):
    """The destination region's side of vault replication."""

    def transfer_public_key(self) -> bytes:
        """PEM of the destination keystore's RSA transfer key."""

    def ensure_replica_vault(self, spec: ReplicaVaultSpec) -> ReplicaVaultInfo:
        """Create the replica of `spec.source_vault_id` if there is none, else bring it to `spec`'s state."""

    def sync_key(self, source_vault_id: str, key: KeySnapshot) -> None:
        """Bring the replica of `key` (in the replica of `source_vault_id`) to the snapshot's state: create it and
        new versions (importing their material), follow state changes, destroy material of deleted versions."""

    def delete_replica_vault(self, source_vault_id: str, replication_id: str) -> None:
        """Delete the replica vault and its keys, destroying their material. Idempotent."""


class InProcessVaultPeer:
    """A VaultPeer that is the destination region's VaultService in this process."""

    def __init__(self, destination: VaultService) -> None:
        self._dest = destination

    def transfer_public_key(self) -> bytes:
        return self._dest.replica_transfer_public_key()

    def ensure_replica_vault(self, spec: ReplicaVaultSpec) -> ReplicaVaultInfo:
        return self._dest.replica_ensure_vault(spec)

    def sync_key(self, source_vault_id: str, key: KeySnapshot) -> None:
        self._dest.replica_sync_key(source_vault_id, key)

    def delete_replica_vault(self, source_vault_id: str, replication_id: str) -> None:
        self._dest.replica_delete_vault(source_vault_id, replication_id)
