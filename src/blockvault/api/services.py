"""What the app factory is given: every service, per region and global. No environment is read here."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

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
