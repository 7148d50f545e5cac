"""Volume groups and volume group backups (oci-behaviour.md R3.7, R3.16, R3.19, R3.33, R4.9, D12; oci-wire.md §4.5).

A volume group is a named set of volumes of one availability domain; a volume is in at most one group (the
`volumes.volume_group_id` column, claimed with a guarded UPDATE so two groups cannot both take a volume). Its use
is one point in time across all members: a group backup takes every member's snapshot while writes to all of them
are held off (BlockStorageService._snapshot_at_one_point), then backs each up as an ordinary volume backup in the
volume's own compartment under the volume's own key. Restoring a group backup makes provider-key volumes and a new
group (R3.19); cloning a group makes volumes that keep their sources' keys (D12), from one point in time too.

Group and group backup lifecycle states are derived from their members on every read (and each transition is
persisted): nothing has to run for a group to become AVAILABLE. A group backup copies to another region member by
member (CopyVolumeBackup each); into a region another process serves, the destination's half runs there
(peer/interfaces.py BackupCopyTarget, docs/design/volume-groups.md X2). Group replication (`volumeGroupReplicas`,
activation with sourceDetails volumeGroupReplicaId, `preserveVolumeReplica`) is blockstorage/group_replication.py,
called from here. The normative description is docs/design/volume-groups.md. Scheduled group backups:
blockstorage/scheduler.py. Ignored: clusterPlacementGroupId, xrcKmsKeyId, retention settings.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, or_, select, update

from blockvault import ids
from blockvault.blockstorage.group_replication import GroupReplicaLink, GroupReplicationService
from blockvault.blockstorage.model import (
    AVAILABLE,
    CREATING,
    FAULTY,
    PROVISIONING,
    TERMINATED,
    TERMINATING,
    Backup,
    Job,
    Volume,
)
from blockvault.blockstorage.replication import parse_replica_details
from blockvault.blockstorage.service import BlockStorageService, NotImplementedYet
from blockvault.clock import Clock
from blockvault.db import tables
from blockvault.db.repos import TableRepo
from blockvault.errors import (
    Conflict,
    IncorrectState,
    InvalidArgument,
    MissingParameter,
    NotFound,
    RelatedResourceNotFound,
)

COMMITTED = "COMMITTED"  # group backup: every member's point in time is taken; the data is being stored
MAX_MEMBERS = 32  # OCI's documented limit of volumes in one volume group
SOURCE_TYPES = ("volumeIds", "volumeGroupId", "volumeGroupBackupId", "volumeGroupReplicaId")
MIB = 1 << 20
GIB = 1 << 30


@dataclass
class VolumeGroup:
    id: str
    compartment_id: str
    availability_domain: str
    display_name: str
    state: str  # as stored; GroupView.state is what the API shows
    time_created: datetime
    source_details: dict[str, Any] = field(default_factory=dict)
    freeform_tags: dict[str, str] = field(default_factory=dict)
    defined_tags: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class VolumeGroupBackup:
    id: str
    compartment_id: str
    volume_group_id: str
    display_name: str
    type: str
    state: str  # as stored; GroupBackupView.state is what the API shows
    time_created: datetime
    time_request_received: datetime
    members: dict[str, str] = field(default_factory=dict)  # volume id -> its member volume backup id
    source_volume_group_backup_id: str | None = None  # a cross-region copy: the group backup it was copied from
    freeform_tags: dict[str, str] = field(default_factory=dict)
    defined_tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    source_type: str = "MANUAL"  # SCHEDULED: made by a backup policy (scheduler.py)
    expiration_time: datetime | None = None  # scheduled group backups only (R3.8)


@dataclass(frozen=True)
class GroupView:
    """A group with its live members (TERMINATED volumes drop out) and the state derived from them."""

    group: VolumeGroup
    members: list[Volume]
    state: str

    @property
    def is_hydrated(self) -> bool:
        return all(v.is_hydrated for v in self.members)

    @property
    def size_gb(self) -> int:
        return sum(v.size_gb for v in self.members)


@dataclass(frozen=True)
class GroupBackupView:
    backup: VolumeGroupBackup
    members: list[Backup]  # in volumeBackupIds order
    state: str

    @property
    def size_gb(self) -> int:
        return sum(b.size_gb for b in self.members)

    @property
    def unique_size_bytes(self) -> int:
        return sum(b.unique_size_bytes for b in self.members)


# --- pure rules ---------------------------------------------------------------------------------------------------


def group_state(stored: str, member_states: Sequence[str]) -> str:
    """A PROVISIONING group (a clone or restore) is AVAILABLE once every member is, FAULTY once one is FAULTY or
    gone; every other stored state is shown as stored."""
    if stored != PROVISIONING:
        return stored
    if any(s in (FAULTY, TERMINATING, TERMINATED) for s in member_states):
        return FAULTY
    if all(s == AVAILABLE for s in member_states):
        return AVAILABLE
    return PROVISIONING


def group_backup_state(stored: str, member_states: Sequence[str]) -> str:
    """COMMITTED (points in time taken) -> AVAILABLE when every member backup is; COMMITTED or AVAILABLE -> FAULTY
    as soon as a member failed or was deleted (the set can no longer be restored); TERMINATING -> TERMINATED when
    every member backup is TERMINATED (R3.33)."""
    if stored in (COMMITTED, AVAILABLE):
        if any(s in (FAULTY, TERMINATING, TERMINATED) for s in member_states):
            return FAULTY
        if all(s == AVAILABLE for s in member_states):
            return AVAILABLE
        return COMMITTED
    if stored == TERMINATING and all(s == TERMINATED for s in member_states):
        return TERMINATED
    return stored


def parse_source(source: Any) -> tuple[str, Any]:
    """CreateVolumeGroupDetails.sourceDetails -> (type, value); the discriminator values are the field names
    (oci-wire.md §4.1): {type: volumeIds, volumeIds: [...]}, {type: volumeGroupId, volumeGroupId: ...}, ..."""
    if source is None:
        raise MissingParameter(field="sourceDetails")
    if not isinstance(source, dict) or "type" not in source:
        raise InvalidArgument(field="sourceDetails", reason="needs a type")
    stype = source["type"]
    if stype not in SOURCE_TYPES:
        raise InvalidArgument(field="sourceDetails.type", reason=f"must be one of {', '.join(SOURCE_TYPES)}")
    value = source.get(stype)
    if value is None:
        raise MissingParameter(field=f"sourceDetails.{stype}")
    if stype == "volumeIds":
        return stype, check_volume_ids(value, f"sourceDetails.{stype}")
    if not isinstance(value, str):
        raise InvalidArgument(field=f"sourceDetails.{stype}", reason="must be an OCID")
    return stype, value


def check_volume_ids(value: Any, field_name: str) -> list[str]:
    """A non-empty list of distinct volume or boot volume OCIDs, at most MAX_MEMBERS."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(field=field_name, reason="must be a list of volume OCIDs")
    if not value:
        raise InvalidArgument(field=field_name, reason="a volume group needs at least one volume")
    if len(set(value)) != len(value):
        raise InvalidArgument(field=field_name, reason="a volume is listed twice")
    if len(value) > MAX_MEMBERS:
        raise InvalidArgument(field=field_name, reason=f"a volume group holds at most {MAX_MEMBERS} volumes")
    for v in value:
        ids.expect(v, "volume", "bootvolume", field=field_name)
    return list(value)


def membership_change(current: Sequence[str], wanted: Sequence[str]) -> tuple[list[str], list[str]]:
    """UpdateVolumeGroup's volumeIds is the complete new list: (volumes to add, volumes to remove), in order."""
    have, want = set(current), set(wanted)
    return [v for v in wanted if v not in have], [v for v in current if v not in want]


# --- service ------------------------------------------------------------------------------------------------------


class VolumeGroupService:
    """Volume groups of one region, over BlockStorageService (its volumes, backups, jobs and group hooks).

    Concurrency: membership changes are guarded UPDATEs in one transaction with the group row, so a volume never
    ends up in two groups; state transitions are compare-and-set saves (TableRepo.save with expect)."""

    def __init__(
        self,
        *,
        blockstorage: BlockStorageService,
        engine: Engine,
        clock: Clock,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.bs, self._engine, self._clock, self._random = blockstorage, engine, clock, random
        self.groups = TableRepo(engine, tables.volume_groups, VolumeGroup)
        self.group_backups = TableRepo(engine, tables.volume_group_backups, VolumeGroupBackup)
        blockstorage.runner.register("DeleteVolumeGroupBackup", self._job_delete_backup, self._fail_backup)

    # --- groups -------------------------------------------------------------------------------------------------

    def create_group(self, details: dict[str, Any]) -> tuple[GroupView, list[str]]:
        """CreateVolumeGroup. Returns the group and the work request ids of the volumes it made (clone, restore)."""
        compartment_id = details.get("compartmentId")
        if not compartment_id:
            raise MissingParameter(field="compartmentId")
        if not details.get("availabilityDomain"):
            raise MissingParameter(field="availabilityDomain")
        entries = replica_entries(details)
        if details.get("backupPolicyId"):
            raise NotImplementedYet(feature="Scheduled volume group backups (backupPolicyId)")
        stype, value = parse_source(details.get("sourceDetails"))
        self.bs.group_compartment(compartment_id)
        ad = self.bs.group_ad(details["availabilityDomain"])
        if entries:
            self._replication().check_destination(entries[0], ad)
        now = self._clock.now()
        group = VolumeGroup(
            id=ids.new("volumegroup", self.bs.region.key, random=self._random),
            compartment_id=compartment_id,
            availability_domain=ad,
            display_name=_name(details.get("displayName"), f"volumegroup{now:%Y%m%d%H%M%S}"),
            state=PROVISIONING,
            time_created=now,
            source_details={"type": stype, stype: value},
            freeform_tags=details.get("freeformTags") or {},
            defined_tags=details.get("definedTags") or {},
        )
        if stype == "volumeIds":
            volumes = self._joinable(group, value, f"sourceDetails.{stype}")
            if entries:
                self._replication().check_members(volumes, entries[0]["availabilityDomain"], None)
                self._enable_replication(group, entries[0])
            try:
                with self._engine.begin() as conn:
                    self.groups.insert(group, conn)
                    self._claim(conn, group.id, [v.id for v in volumes])
            except BaseException:
                if entries:
                    self._replication().disable(group.id, True)
                raise
            if entries:
                self._add_replicated_members(group, [v.id for v in volumes])
            return self.view(group), []
        if entries:
            self._enable_replication(group, entries[0])
        try:
            if stype == "volumeGroupId":
                made = self._clone_group(group, value)
            elif stype == "volumeGroupBackupId":
                made = self._restore_group(group, value)
            else:
                made = self._replication().activate(
                    value, group.id, ad, compartment_id, lambda conn: self.groups.insert(group, conn)
                )
        except BaseException:
            if entries:
                self._replication().disable(group.id, True)
            raise
        if entries:
            self._add_replicated_members(group, [v.id for v in self._members(group.id)])
        return self.view(group), made

    # --- replication (group_replication.py) ----------------------------------------------------------------------

    def _replication(self) -> GroupReplicationService:
        return self.bs.replication.group_replicas

    def _enable_replication(self, group: VolumeGroup, entry: dict[str, str]) -> None:
        self._replication().enable(group.id, _group_fields(group), entry, group.availability_domain)

    def _add_replicated_members(self, group: VolumeGroup, volume_ids: list[str]) -> None:
        """The group is recorded: give its members their replicas; if that is refused, the group stands without
        replication (the error says why) rather than half-replicating."""
        volumes = [v for v in (self.bs.volumes.get(i) for i in volume_ids) if v is not None]
        try:
            self._replication().add_members(group.id, volumes)
        except BaseException:
            self._replication().disable(group.id, True)
            raise

    def replica_links(self, group_id: str) -> list[GroupReplicaLink]:
        """What GET volume group shows in `volumeGroupReplicas`."""
        return self._replication().links_of_group(group_id)

    def _clone_group(self, group: VolumeGroup, source_id: str) -> list[str]:
        """D12: a clone of a group keeps each source volume's key; the clone must be in the source's AD (R4.2)."""
        ids.expect(source_id, "volumegroup", field="sourceDetails.volumeGroupId")
        source = self._related_group(source_id, "sourceDetails.volumeGroupId")
        if source.state == PROVISIONING:
            raise IncorrectState(kind="volume group", ident=source_id, state=source.state, allowed=[AVAILABLE])
        if source.state != AVAILABLE:
            raise Conflict(
                kind="volume group", ident=source_id, reason=f"it is {source.state}; cloning needs AVAILABLE"
            )
        if group.availability_domain != source.group.availability_domain:
            raise InvalidArgument(
                field="availabilityDomain",
                reason=f"a clone must be in its source's availability domain, {source.group.availability_domain}",
            )
        if not source.members:
            raise Conflict(kind="volume group", ident=source_id, reason="it has no volumes to clone")
        made = self.bs.create_group_clones(
            source.members, group.compartment_id, group.id, lambda conn, _vols: self.groups.insert(group, conn)
        )
        return [job_id for _, job_id in made]

    def _restore_group(self, group: VolumeGroup, backup_id: str) -> list[str]:
        """R3.19 / D12: the restored volumes use the provider-managed key; any AD of the region (R3.20)."""
        ids.expect(backup_id, "volumegroupbackup", field="sourceDetails.volumeGroupBackupId")
        found = self.group_backups.get(backup_id)
        if found is None or found.state in (TERMINATING, TERMINATED):
            raise RelatedResourceNotFound(field="sourceDetails.volumeGroupBackupId", ident=backup_id)
        source = self.backup_view(found)
        if source.state == COMMITTED:
            raise IncorrectState(kind="volume group backup", ident=backup_id, state=COMMITTED, allowed=[AVAILABLE])
        if source.state != AVAILABLE:
            raise Conflict(
                kind="volume group backup", ident=backup_id, reason=f"it is {source.state}; restore needs AVAILABLE"
            )
        for member in source.members:
            if member.state != AVAILABLE:
                raise Conflict(
                    kind="volume group backup",
                    ident=backup_id,
                    reason=f"its member backup {member.id} is {member.state}; restore needs every member AVAILABLE",
                )
        names = {}
        for member in source.members:
            original = self.bs.volumes.get(member.volume_id)
            names[member.id] = original.display_name if original is not None else member.display_name
        made = self.bs.create_group_restores(
            source.members,
            group.availability_domain,
            group.compartment_id,
            group.id,
            names,
            lambda conn, _vols: self.groups.insert(group, conn),
        )
        return [job_id for _, job_id in made]

    def get_group(self, group_id: str) -> GroupView:
        group = self.groups.get(group_id)
        if group is None:
            raise NotFound(kind="volume group", ident=group_id)
        return self.view(group)

    def _related_group(self, group_id: str, field_name: str) -> GroupView:
        group = self.groups.get(group_id)
        if group is None or group.state == TERMINATED:
            raise RelatedResourceNotFound(field=field_name, ident=group_id)
        return self.view(group)

    def view(self, group: VolumeGroup) -> GroupView:
        members = self._members(group.id)
        state = group_state(group.state, [v.state for v in members])
        if state != group.state:
            try:
                self.groups.save(replace(group, state=state), expect={"state": group.state})
            except Conflict:
                current = self.groups.get(group.id)
                if current is not None:
                    return self.view(current)
            group = replace(group, state=state)
        return GroupView(group, members, state)

    def _members(self, group_id: str) -> list[Volume]:
        c = tables.volumes.c
        return self.bs.volumes.find(
            c.volume_group_id == group_id, c.state != TERMINATED, order_by=[c.time_created, c.id]
        )

    def list_groups(
        self, compartment_id: str | None, ad: str | None, state: str | None, display_name: str | None
    ) -> list[GroupView]:
        c = tables.volume_groups.c
        cond = [c[col] == v for col, v in (("compartment_id", compartment_id), ("display_name", display_name)) if v]
        if ad:
            cond.append(c.availability_domain == self.bs.group_ad(ad))
        views = [self.view(g) for g in self.groups.find(*cond, order_by=[c.time_created, c.id])]
        return [v for v in views if not state or v.state == state]

    def update_group(self, group_id: str, details: dict[str, Any], preserve_volume_replica: bool = True) -> GroupView:
        """UpdateVolumeGroup: displayName, tags, volumeIds (the complete new membership, oci-wire.md §4.5) and
        volumeGroupReplicas (the complete desired list, [] = off). `preserveVolumeReplica` (default true): a volume
        leaving a replicating group, or every member when replication is turned off, keeps replicating on its own;
        false deletes their replicas (R5.21)."""
        view = self.get_group(group_id)
        group = view.group
        if view.state in (TERMINATING, TERMINATED):
            raise Conflict(kind="volume group", ident=group_id, reason=f"it is {view.state}")
        entries = replica_entries(details) if "volumeGroupReplicas" in details else None
        updated = replace(
            group,
            display_name=_name(details.get("displayName"), group.display_name),
            freeform_tags=details.get("freeformTags", group.freeform_tags),
            defined_tags=details.get("definedTags", group.defined_tags),
        )
        added: list[Volume] = []
        removed: list[str] = []
        if details.get("volumeIds") is not None:
            if view.state == PROVISIONING:
                raise IncorrectState(kind="volume group", ident=group_id, state=view.state, allowed=[AVAILABLE])
            wanted = check_volume_ids(details["volumeIds"], "volumeIds")
            add_ids, removed = membership_change([v.id for v in view.members], wanted)
            added = self._joinable(group, add_ids, "volumeIds")
            glinks = self.replica_links(group_id)
            if glinks and added:  # R5.20: a joining volume replicating elsewhere is refused before anything changes
                self._replication().check_members(added, glinks[0].availability_domain, glinks[0].id)
        with self._engine.begin() as conn:
            self.groups.save(updated, conn, expect={"state": group.state})
            if removed:
                conn.execute(
                    update(tables.volumes)
                    .where(tables.volumes.c.id.in_(removed), tables.volumes.c.volume_group_id == group_id)
                    .values(volume_group_id=None)
                )
            if added:
                self._claim(conn, group_id, [v.id for v in added])
        if removed:
            self._replication().remove_members(group_id, removed, preserve_volume_replica)
        if added:
            self._replication().add_members(group_id, added)
        if entries is not None:
            current = self.get_group(group_id)
            self._replication().set_replicas(
                group_id,
                _group_fields(current.group),
                current.members,
                entries,
                group.availability_domain,
                preserve_volume_replica,
            )
        return self.get_group(group_id)

    def delete_group(self, group_id: str) -> GroupView:
        """DeleteVolumeGroup: the group ends (TERMINATED at once); its volumes stay, free to join another group."""
        view = self.get_group(group_id)
        if view.state in (TERMINATING, TERMINATED):
            raise Conflict(kind="volume group", ident=group_id, reason=f"it is already {view.state}")
        # Its replication ends with it; the volumes stay, each keeping its replica (preserveVolumeReplica default).
        self._replication().disable(group_id, True)
        with self._engine.begin() as conn:
            self.groups.save(replace(view.group, state=TERMINATED), conn, expect={"state": view.group.state})
            conn.execute(
                update(tables.volumes).where(tables.volumes.c.volume_group_id == group_id).values(volume_group_id=None)
            )
        return self.get_group(group_id)

    def _move_target(self, kind: str, ident: str, state: str, compartment_id: Any) -> str:
        """The checked target compartment of a ChangeCompartment; a resource on its way out stays where it is."""
        if state in (TERMINATING, TERMINATED):
            raise Conflict(kind=kind, ident=ident, reason=f"it is {state}")
        target = _compartment(compartment_id)
        self.bs.group_compartment(target)
        return target

    def move_group(self, group_id: str, compartment_id: Any) -> GroupView:
        """ChangeVolumeGroupCompartment: the group moves; its volumes stay where they are (each has its own)."""
        view = self.get_group(group_id)
        target = self._move_target("volume group", group_id, view.state, compartment_id)
        self.groups.save(replace(view.group, compartment_id=target), expect={"state": view.group.state})
        return self.get_group(group_id)

    def _joinable(self, group: VolumeGroup, volume_ids: Sequence[str], field_name: str) -> list[Volume]:
        """The volumes, checked: they exist, are in the group's AD, are AVAILABLE and in no other live group."""
        out: list[Volume] = []
        for volume_id in volume_ids:
            volume = self.bs.volumes.get(volume_id)
            if volume is None or volume.state == TERMINATED:
                raise RelatedResourceNotFound(field=field_name, ident=volume_id)
            if volume.availability_domain != group.availability_domain:
                raise InvalidArgument(
                    field=field_name,
                    reason=f"volume {volume_id} is in {volume.availability_domain}; every volume of the group must "
                    f"be in {group.availability_domain}",
                )
            if volume.state == PROVISIONING:
                raise IncorrectState(kind=volume.kind, ident=volume_id, state=volume.state, allowed=[AVAILABLE])
            if volume.state != AVAILABLE:
                raise Conflict(kind=volume.kind, ident=volume_id, reason=f"it is {volume.state}; a group needs it")
            other = self._live_group_of(volume)
            if other is not None and other != group.id:
                raise Conflict(
                    kind=volume.kind,
                    ident=volume_id,
                    reason=f"it is already in volume group {other}; a volume can be in only one volume group",
                )
            out.append(volume)
        return out

    def _live_group_of(self, volume: Volume) -> str | None:
        if volume.volume_group_id is None:
            return None
        group = self.groups.get(volume.volume_group_id)
        return None if group is None or group.state == TERMINATED else group.id

    def _claim(self, conn: Any, group_id: str, volume_ids: list[str]) -> None:
        """Make the volumes members in one guarded UPDATE: only volumes in no live group are taken, so of two
        concurrent claims of one volume exactly one wins (the other's transaction rolls back with 409)."""
        c = tables.volumes.c
        dead = select(tables.volume_groups.c.id).where(tables.volume_groups.c.state == TERMINATED)
        result = conn.execute(
            update(tables.volumes)
            .where(
                c.id.in_(volume_ids),
                c.state != TERMINATED,
                or_(c.volume_group_id.is_(None), c.volume_group_id.in_(dead), c.volume_group_id == group_id),
            )
            .values(volume_group_id=group_id)
        )
        if result.rowcount != len(volume_ids):
            raise Conflict(
                kind="volume group",
                ident=group_id,
                reason="a volume joined another volume group meanwhile; a volume can be in only one volume group",
            )

    # --- group backups ------------------------------------------------------------------------------------------

    def create_group_backup(
        self, details: dict[str, Any], *, source_type: str = "MANUAL", expiration_time: datetime | None = None
    ) -> tuple[GroupBackupView, list[str]]:
        """CreateVolumeGroupBackup: every member at one point in time (R3.33), each an ordinary backup in its
        volume's compartment with its volume's key (R3.7, R3.16). Returns the member backups' work request ids.
        `source_type`/`expiration_time`: a backup policy's scheduled group backup, members included (scheduler.py)."""
        group_id = details.get("volumeGroupId")
        if not group_id:
            raise MissingParameter(field="volumeGroupId")
        ids.expect(group_id, "volumegroup", field="volumeGroupId")
        btype = details.get("type") or "INCREMENTAL"  # R3.1
        if btype not in ("FULL", "INCREMENTAL"):
            raise InvalidArgument(field="type", reason="must be FULL or INCREMENTAL")
        view = self._related_group(group_id, "volumeGroupId")
        if view.state == PROVISIONING:
            raise IncorrectState(kind="volume group", ident=group_id, state=view.state, allowed=[AVAILABLE])
        if view.state != AVAILABLE:
            raise Conflict(kind="volume group", ident=group_id, reason=f"it is {view.state}; a backup needs AVAILABLE")
        if not view.members:
            raise Conflict(kind="volume group", ident=group_id, reason="it has no volumes to back up")
        compartment_id = details.get("compartmentId") or view.group.compartment_id
        self.bs.group_compartment(compartment_id)
        now = self._clock.now()
        backup = VolumeGroupBackup(
            id=ids.new("volumegroupbackup", self.bs.region.key, random=self._random),
            compartment_id=compartment_id,
            volume_group_id=group_id,
            display_name=_name(details.get("displayName"), f"{view.group.display_name}-backup-{now:%Y%m%d%H%M%S}"),
            type=btype,
            state=COMMITTED,  # the transaction that records it also records every member's point in time
            time_created=now,
            time_request_received=now,
            freeform_tags=details.get("freeformTags") or dict(view.group.freeform_tags),
            defined_tags=details.get("definedTags") or dict(view.group.defined_tags),
            source_type=source_type,
            expiration_time=expiration_time,
        )

        def record(conn: Any, members: list[Backup]) -> None:
            backup.members = {b.volume_id: b.id for b in members}
            self.group_backups.insert(backup, conn)

        made = self.bs.create_group_backups(
            view.members, btype, backup.display_name, record, source_type=source_type, expiration_time=expiration_time
        )
        return self.backup_view(backup), [job_id for _, job_id in made]

    def get_group_backup(self, backup_id: str) -> GroupBackupView:
        found = self.group_backups.get(backup_id)
        if found is None:
            raise NotFound(kind="volume group backup", ident=backup_id)
        return self.backup_view(found)

    def backup_view(self, backup: VolumeGroupBackup) -> GroupBackupView:
        members = [b for b in (self.bs.backups.get(bid) for bid in backup.members.values()) if b is not None]
        state = group_backup_state(backup.state, [b.state for b in members])
        if state != backup.state:
            try:
                self.group_backups.save(replace(backup, state=state), expect={"state": backup.state})
            except Conflict:
                current = self.group_backups.get(backup.id)
                if current is not None:
                    return self.backup_view(current)
            backup = replace(backup, state=state)
        return GroupBackupView(backup, members, state)

    def list_group_backups(
        self, compartment_id: str | None, group_id: str | None, display_name: str | None
    ) -> list[GroupBackupView]:
        c = tables.volume_group_backups.c
        pairs = (("compartment_id", compartment_id), ("volume_group_id", group_id), ("display_name", display_name))
        cond = [c[col] == v for col, v in pairs if v]
        return [self.backup_view(b) for b in self.group_backups.find(*cond, order_by=[c.time_created, c.id])]

    def update_group_backup(self, backup_id: str, details: dict[str, Any]) -> GroupBackupView:
        """UpdateVolumeGroupBackup: displayName and tags only; a group backup has no key of its own (R3.16)."""
        view = self.get_group_backup(backup_id)
        if view.state in (TERMINATING, TERMINATED):
            raise Conflict(kind="volume group backup", ident=backup_id, reason=f"it is {view.state}")
        backup = view.backup
        updated = replace(
            backup,
            display_name=_name(details.get("displayName"), backup.display_name),
            freeform_tags=details.get("freeformTags", backup.freeform_tags),
            defined_tags=details.get("definedTags", backup.defined_tags),
        )
        self.group_backups.save(updated, expect={"state": backup.state})
        return self.backup_view(updated)

    def move_group_backup(self, backup_id: str, compartment_id: Any) -> GroupBackupView:
        """ChangeVolumeGroupBackupCompartment: the group backup moves; its member backups stay in their volumes'."""
        view = self.get_group_backup(backup_id)
        target = self._move_target("volume group backup", backup_id, view.state, compartment_id)
        self.group_backups.save(replace(view.backup, compartment_id=target), expect={"state": view.backup.state})
        return self.get_group_backup(backup_id)

    def delete_group_backup(self, backup_id: str) -> tuple[GroupBackupView, str]:
        """DeleteVolumeGroupBackup deletes every member volume backup too (R3.33), in a durable job."""
        view = self.get_group_backup(backup_id)
        if view.state in (TERMINATING, TERMINATED):
            raise Conflict(kind="volume group backup", ident=backup_id, reason=f"it is already {view.state}")
        if view.state == COMMITTED:
            raise IncorrectState(
                kind="volume group backup", ident=backup_id, state=view.state, allowed=[AVAILABLE, FAULTY]
            )
        backup = view.backup
        job = self.bs.runner.new("DeleteVolumeGroupBackup", backup.id, backup.compartment_id)
        with self._engine.begin() as conn:
            self.group_backups.save(replace(backup, state=TERMINATING), conn, expect={"state": backup.state})
            self.bs.runner.repo.insert(job, conn)
        self.bs.runner.wake()
        return self.get_group_backup(backup_id), job.id

    def create_group_backup_copy(
        self, source_region: str, source: GroupBackupView, details: dict[str, Any]
    ) -> GroupBackupView:
        """Destination side of CopyVolumeGroupBackup (R3.25): every member backup is copied here as CopyVolumeBackup
        copies one (BlockStorageService.create_copy: re-encrypted under `kmsKeyId`, a key of THIS region, or this
        region's provider key, R3.26; a FULL backup; its own CopyBackup job), and the copies form a new group backup
        here, COMMITTED until every copy is AVAILABLE. The source must be AVAILABLE. If a member's copy is refused
        after others were made, those are kept in a FAULTY group backup (deletable as one) and the error is raised."""
        if source.state == COMMITTED:
            raise IncorrectState(
                kind="volume group backup", ident=source.backup.id, state=COMMITTED, allowed=[AVAILABLE]
            )
        if source.state != AVAILABLE:
            raise Conflict(
                kind="volume group backup", ident=source.backup.id, reason=f"it is {source.state}; a copy needs it"
            )
        key_id = details.get("kmsKeyId")
        now = self._clock.now()
        copy = VolumeGroupBackup(
            id=ids.new("volumegroupbackup", self.bs.region.key, random=self._random),
            compartment_id=source.backup.compartment_id,
            volume_group_id=source.backup.volume_group_id,
            display_name=_name(details.get("displayName"), source.backup.display_name),
            type="FULL",  # every member copy holds all its chunks (decisions.md, backup copy)
            state=COMMITTED,
            time_created=now,
            time_request_received=now,
            source_volume_group_backup_id=source.backup.id,
            freeform_tags=dict(source.backup.freeform_tags),  # R3.9: tags travel with a copy
            defined_tags=dict(source.backup.defined_tags),
        )
        try:
            for member in source.members:
                made, _ = self.bs.create_copy(member.kind, source_region, member.id, {"kmsKeyId": key_id})
                copy.members[member.volume_id] = made.id
        except BaseException:
            if copy.members:
                self.group_backups.insert(replace(copy, state=FAULTY))
            raise
        self.group_backups.insert(copy)
        return self.backup_view(copy)

    def _job_delete_backup(self, job: Job, progress: Callable[[float], None]) -> None:
        """Delete every member backup (their own DeleteBackup jobs), then end TERMINATED. A member that cannot be
        deleted yet (IncorrectState: a backup or restore of it in progress) parks this job until it can."""
        found = self.group_backups.get(job.resource_id)
        if found is None or found.state == TERMINATED:
            return
        view = self.backup_view(found)
        pending = False
        for member in view.members:
            if member.state == TERMINATED:
                continue
            pending = True
            if member.state in (AVAILABLE, FAULTY):
                with contextlib.suppress(Conflict):  # deleted meanwhile by someone else: it ends TERMINATED too
                    self.bs.delete_backup(member.kind, member.id)
            elif member.state == CREATING:
                raise IncorrectState(kind="backup", ident=member.id, state=member.state, allowed=[AVAILABLE])
        if pending:
            # The members' DeleteBackup jobs are running; come back when they are done.
            raise IncorrectState(kind="volume group backup", ident=found.id, state=TERMINATING, allowed=[TERMINATED])
        self.backup_view(found)  # persists TERMINATED

    def _fail_backup(self, job: Job, reason: str) -> None:
        found = self.group_backups.get(job.resource_id)
        if found is not None and found.state != TERMINATED:
            self.group_backups.save(replace(found, state=FAULTY))


def replica_entries(details: dict[str, Any]) -> list[dict[str, str]]:
    """The validated `volumeGroupReplicas` (VolumeGroupReplicaDetails[]; at most one destination, as a volume)."""
    value = details.get("volumeGroupReplicas")
    return [] if value is None else parse_replica_details(value, "volumeGroupReplicas")


def _group_fields(group: VolumeGroup) -> dict[str, Any]:
    return {
        "compartment_id": group.compartment_id,
        "display_name": group.display_name,
        "freeform_tags": group.freeform_tags,
        "defined_tags": group.defined_tags,
    }


def _compartment(value: Any) -> str:
    if not value:
        raise MissingParameter(field="compartmentId")
    if not isinstance(value, str):
        raise InvalidArgument(field="compartmentId", reason="must be an OCID")
    return value


def _name(value: Any, default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise InvalidArgument(field="displayName", reason="must be a string")
    return value


__all__ = [
    "COMMITTED",
    "GroupBackupView",
    "GroupView",
    "VolumeGroup",
    "VolumeGroupBackup",
    "VolumeGroupService",
    "check_volume_ids",
    "group_backup_state",
    "group_state",
    "membership_change",
    "parse_source",
    "replica_entries",
]
