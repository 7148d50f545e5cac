"""Block Volume domain records (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from blockvault.vault.model import WrappedDek

GIB = 1 << 30

# Volume lifecycle (R3.23) and backup lifecycle (R3.4)
PROVISIONING, RESTORING, AVAILABLE, TERMINATING, TERMINATED, FAULTY = (
    "PROVISIONING",
    "RESTORING",
    "AVAILABLE",
    "TERMINATING",
    "TERMINATED",
    "FAULTY",
)
REQUEST_RECEIVED, CREATING = "REQUEST_RECEIVED", "CREATING"
ACTIVATING = "ACTIVATING"  # a block, boot or group replica while a volume (group) is made from it

KINDS = ("volume", "bootvolume")


@dataclass
class Volume:
    id: str
    kind: str
    compartment_id: str
    availability_domain: str
    display_name: str
    size_gb: int
    vpus_per_gb: int
    state: str
    kms_key_id: str | None
    key_version_id: str
    wrapped_dek: bytes
    is_hydrated: bool
    time_created: datetime
    source_type: str | None = None
    source_id: str | None = None
    clone_snapshot: str | None = None
    faulty_reason: str | None = None
    volume_group_id: str | None = None  # the one volume group holding it (blockstorage/groups.py)
    freeform_tags: dict[str, str] = field(default_factory=dict)
    defined_tags: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def wrapped(self) -> WrappedDek:
        return WrappedDek(self.kms_key_id, self.key_version_id, self.wrapped_dek)

    @property
    def size_bytes(self) -> int:
        return self.size_gb * GIB

    def dek_context(self) -> dict[str, str]:
        return {"resource": self.id, "purpose": self.kind}


@dataclass
class Backup:
    id: str
    kind: str
    volume_id: str
    compartment_id: str
    display_name: str
    type: str
    source_type: str
    state: str
    kms_key_id: str | None
    size_gb: int
    time_created: datetime
    time_request_received: datetime
    unique_size_bytes: int = 0
    parent_id: str | None = None
    snapshot_seq: int | None = None
    snapshot_name: str | None = None
    faulty_reason: str | None = None
    freeform_tags: dict[str, str] = field(default_factory=dict)
    defined_tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    expiration_time: datetime | None = None  # scheduled (policy) backups only (R3.8)

    def dek_context(self, dek_id: str) -> dict[str, str]:
        return {"resource": self.id, "purpose": f"{self.kind}backup", "dek": dek_id}


@dataclass
class Job:
    id: str
    operation: str
    resource_id: str
    compartment_id: str
    state: str
    time_accepted: datetime
    percent_complete: float = 0.0
    payload: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    time_started: datetime | None = None
    time_finished: datetime | None = None
