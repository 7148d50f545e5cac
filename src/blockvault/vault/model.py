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


@dataclass(frozen=True)
class WrappedDek:
    """A data key as stored beside a resource: which key and version wrapped it, and the sealed bytes."""

    key_id: str | None  # None: the provider-managed key
    key_version_id: str
    blob: bytes
