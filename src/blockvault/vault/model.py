"""Vault domain records (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PROVIDER_KEY = None  # a resource with kms_key_id None is protected by its region's provider-managed key


@dataclass
class Vault:
    id: str
    compartment_id: str
    display_name: str
    vault_type: str
    state: str
    time_created: datetime
    prev_state: str | None = None
    time_of_deletion: datetime | None = None
    freeform_tags: dict[str, str] = field(default_factory=dict)
    defined_tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    source_vault_id: str | None = None  # set: a replica vault, managed only through its source (R6.31)
    source_region: str | None = None
    replication_id: str | None = None  # the last replicated operation on it (Vault.replicaDetails)

    @property
    def is_primary(self) -> bool:
        return self.source_vault_id is None


@dataclass
class Key:
    id: str
    vault_id: str
    compartment_id: str
    display_name: str
    algorithm: str
    length: int
    protection_mode: str
    state: str
    current_version_id: str
    time_created: datetime
    curve_id: str | None = None
    prev_state: str | None = None
    time_of_deletion: datetime | None = None
    scheduled_with_vault: bool = False  # R2.14: cancelling the vault's deletion restores only these keys
    freeform_tags: dict[str, str] = field(default_factory=dict)
    defined_tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    source_key_id: str | None = None  # replica key (D5): the primary key, whose OCID ciphertexts are bound to
    replication_id: str | None = None

    @property
    def is_primary(self) -> bool:
        return self.source_key_id is None

    @property
    def canonical_id(self) -> str:
        """The identity ciphertexts bind (D10): the primary key's OCID in every region."""
        return self.source_key_id or self.id


@dataclass
class KeyVersion:
    id: str
    key_id: str
    vault_id: str
    compartment_id: str
    state: str
    origin: str
    time_created: datetime
    prev_state: str | None = None
    time_of_deletion: datetime | None = None
    source_version_id: str | None = None  # replica version: the primary version (same material)
    replication_id: str | None = None

    @property
    def is_primary(self) -> bool:
        return self.source_version_id is None

    @property
    def canonical_id(self) -> str:
        return self.source_version_id or self.id


@dataclass
class VaultReplica:
    """The source region's record of a replica of one of its vaults (VaultReplicaSummary)."""

    id: str  # the replica vault's OCID
    vault_id: str
    region: str
    status: str  # CREATING | CREATED | DELETING | DELETED
    management_endpoint: str
    crypto_endpoint: str
    time_created: datetime


@dataclass
class ReplicationOp:
    id: str
    replication_id: str
    vault_id: str
    region: str
    status: str  # REPLICATING | REPLICATED
    time_created: datetime


@dataclass(frozen=True)
class WrappedDek:
    """A data key as stored beside a resource: which key and version wrapped it, and the sealed bytes."""

    key_id: str | None  # None: the provider-managed key
    key_version_id: str
    blob: bytes
