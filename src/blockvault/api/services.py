"""What the app factory is given: every service, per region and global. No environment is read here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from blockvault.blockstorage.groups import VolumeGroupService
from blockvault.blockstorage.jobs import JobRunner
from blockvault.blockstorage.service import BlockStorageService, Region
from blockvault.clock import Clock, OffsetClock
from blockvault.iam.authz import Authorizer
from blockvault.iam.service import IdentityService
from blockvault.vault.service import VaultService


@dataclass
class RegionServices:
    region: Region
    engine: Engine
    vault: VaultService
    blockstorage: BlockStorageService
    runner: JobRunner
    clock: Clock
    groups: VolumeGroupService | None = None  # volume groups (blockstorage/groups.py)


@dataclass
class AppServices:
    identity: IdentityService
    authz: Authorizer
    regions: dict[str, RegionServices]
    default_region: str
    wall_clock: Clock  # for signature date checks: real time, even when the domain clock was advanced
    domain_clock: OffsetClock
    allow_clock_control: bool = False
    admin_user_ids: frozenset[str] = field(default_factory=frozenset)
    # Regions served by other processes of this deployment (docs/design/regions.md), by name.
    remote_regions: dict[str, RemoteRegion] = field(default_factory=dict)


@dataclass
class RemoteRegion:
    """A region another `blockvault serve` process of the same data dir serves: its endpoint (for clear errors) and
    the destination half of a backup copy into it (peer.interfaces.BackupCopyTarget over HTTP)."""

    name: str
    endpoint: str
    copy_target: Any
