"""Volume group replication (oci-behaviour.md §5.4, R5.19-R5.21; §5.2-5.3; D1, D4, D12): group replicas, their
coordinated sync, and activation into a new volume group.

The normative description is docs/design/replication.md, section "Volume group replicas". In short:

- `volumeGroupReplicas: [{availabilityDomain, displayName?, xrrKmsKeyId?}]` on CreateVolumeGroup / UpdateVolumeGroup
  (at most one destination, as for a volume) makes a GROUP REPLICA in the destination region and one MEMBER REPLICA
  (an ordinary block or boot volume replica whose `volumeGroupReplicaId` names the group replica) per member volume.
  The API has one `xrrKmsKeyId` per group replica, no per-member key field: every member replica made for the group
  gets its own DEK wrapped by that key (or the destination's provider key). A member that ALREADY replicated to the
  same destination is adopted with its replica and that replica's key: keys are per member replica, and the
  activated volumes take each member's key (D4).
- The group replica holds no data; the members do. One SyncVolumeGroupReplica job (in the destination) asks the
  source to snapshot EVERY member at one point in time (BlockStorageService.snapshot_at_one_point: member writes
  held off), ships each member's changed units as a single-volume sync does (ReplicationService.ship), and commits
  the group's and every member's new sync point in ONE transaction: all members of a group replica share their
  `timeLastSynced`, and a crash leaves all of them at the previous point.
- Activation (CreateVolumeGroup with sourceDetails volumeGroupReplicaId) makes a new group whose volumes hold each
  member's snapshot of the last coordinated sync. One activation of a group replica at a time.
- `volumeGroupReplicas: []` ends the group replica; `preserveVolumeReplica` (default true) decides whether the member
  replicas go on replicating on their own or are deleted too (R5.21); the same flag applies to a volume taken out
  of a replicating group.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete

from blockvault import ids
from blockvault.blockstorage import jobs as jobmod
from blockvault.blockstorage.model import (
    ACTIVATING,
    AVAILABLE,
    FAULTY,
    PROVISIONING,
    TERMINATED,
    TERMINATING,
    Job,
    Volume,
)
from blockvault.blockstorage.regions import (
    GroupMemberSpec,
    GroupReplicaInfo,
    GroupReplicaSpec,
    GroupSyncMember,
    GroupSyncPoint,
    ReplicaInfo,
    ReplicaSpec,
    ReplicaSyncPoint,
)
from blockvault.clock import Clock
from blockvault.db import tables
from blockvault.db.repos import TableRepo
from blockvault.errors import (
    Conflict,
    IncorrectState,
    InvalidArgument,
    KeyUnusable,
    MissingParameter,
    NotFound,
    RelatedResourceNotFound,
    Unavailable,
)
from blockvault.store.volume import SnapshotReader

if TYPE_CHECKING:
    from blockvault.blockstorage.replication import Replica, ReplicaLink, ReplicationService
    from blockvault.blockstorage.service import BlockStorageService

log = logging.getLogger(__name__)

KIND = "volume group replica"
OCID_TYPE = "volumegroupreplica"
FIELD = "volumeGroupReplicas"
SYNC_JOB = "SyncVolumeGroupReplica"
STABLE, ADD_PENDING = "STABLE", "ADD_PENDING"  # MemberReplica.membershipState
LIVE = (PROVISIONING, AVAILABLE, ACTIVATING)


@dataclass
class GroupReplica:
    """A volume group replica, as its destination region records it. Its data is its members' (volume_replicas
    rows naming it); `sync_count` / `time_last_synced` are the last coordinated sync, shared by every member."""

    id: str
    compartment_id: str
    availability_domain: str
    display_name: str
    source_region: str
    source_group_id: str
    state: str
    kms_key_id: str | None
    time_created: datetime
    next_sync_at: datetime
    sync_count: int = 0
    activating_group_id: str | None = None
    faulty_reason: str | None = None
    time_last_synced: datetime | None = None
    freeform_tags: dict[str, str] = field(default_factory=dict)
    defined_tags: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class GroupReplicaLink:
    """The source region's record of where one of its volume groups replicates to."""

    id: str
    volume_group_id: str
    region: str
    availability_domain: str
    display_name: str
    kms_key_id: str | None
    time_created: datetime


@dataclass(frozen=True)
class GroupReplicaView:
    """A group replica with its live member replicas and the state shown."""

    replica: GroupReplica
    members: list[Replica]
    state: str

    @property
    def size_gb(self) -> int:
        return sum(m.size_gb for m in self.members)

    def membership_state(self, member: Replica) -> str:
        return STABLE if in_coordinated_point(self.replica, member) else ADD_PENDING


# --- pure rules ---------------------------------------------------------------------------------------------------


def in_coordinated_point(group: GroupReplica, member: Replica) -> bool:
    """Whether the member's last completed sync is the group's last coordinated sync (committed with it, so the
    same point in time): only such members are activated, so an activated group is one point in time."""
    return (
        group.sync_count >= 1
        and member.sync_count >= 1
        and group.time_last_synced is not None
        and member.time_last_synced == group.time_last_synced
    )


def coordinated_members(group: GroupReplica, members: Sequence[Replica]) -> list[Replica]:
    return [m for m in members if in_coordinated_point(group, m)]


def sync_plan(members: Sequence[Replica]) -> tuple[GroupSyncMember, ...]:
    """What a group sync asks the source for: each member's volume, replica and NEXT generation (its own count:
    a member that joined later has fewer syncs than the group)."""
    return tuple(GroupSyncMember(m.source_volume_id, m.id, m.sync_count + 1) for m in members)


def classify_members(
    links: dict[str, list[ReplicaLink]], destination_ad: str, group_replica_id: str | None
) -> tuple[dict[str, str], list[str]]:
    """R5.20: volumes that already replicate must replicate to the group's destination. Returns (volume id ->
    replica to adopt, conflicting volume ids): a replica to another AD or region, or one that belongs to another
    group replica, conflicts."""
    from blockvault.blockstorage.replication import same_ad

    adopt: dict[str, str] = {}
    conflicts: list[str] = []
    for volume_id, volume_links in links.items():
        for link in volume_links:
            other_group = link.volume_group_replica_id not in (None, group_replica_id)
            if other_group or not same_ad(link.availability_domain, destination_ad):
                conflicts.append(volume_id)
            else:
                adopt[volume_id] = link.id
    return adopt, conflicts


def group_replica_state(stored: str, member_states: Sequence[str]) -> str:
    """An ACTIVATING group replica is AVAILABLE again once none of its members is still being activated."""
    if stored == ACTIVATING and ACTIVATING not in member_states:
        return AVAILABLE
    return stored


# --- the service --------------------------------------------------------------------------------------------------


class GroupReplicationService:
    """Volume group replication of one region, as a source and as a destination (module docstring).

    Concurrency: at most one SyncVolumeGroupReplica job per group replica is pending (tick checks); a group sync
    commits with compare-and-set on the group row and on every member row, so a concurrent activation, membership
    change or deletion makes it redo (IncorrectState parks and retries) rather than commit a mixed point."""

    def __init__(
        self,
        replication: ReplicationService,
        service: BlockStorageService,
        *,
        engine: Engine,
        clock: Clock,
        runner: jobmod.JobRunner,
        random: Callable[[int], bytes],
    ) -> None:
        self._rs, self._svc, self._engine, self._clock = replication, service, engine, clock
        self._runner, self._random = runner, random
        self.replicas = TableRepo(engine, tables.volume_group_replicas, GroupReplica)
        self.links = TableRepo(engine, tables.group_replica_links, GroupReplicaLink)
        runner.register(SYNC_JOB, self._job_sync, self._fail_sync)
        # tick() runs on the scheduler thread and right after members are added (an API thread): two of them
        # racing would both see no pending job and enqueue two syncs that undo each other's source snapshots.
        self._tick_lock = threading.Lock()

    # --- reading ------------------------------------------------------------------------------------------------

    def members(self, group_replica_id: str, conn: Any = None) -> list[Replica]:
        c = tables.volume_replicas.c
        return self._rs.replicas.find(
            c.volume_group_replica_id == group_replica_id,
            c.state.in_(list(LIVE)),
            order_by=[c.time_created, c.id],
            conn=conn,
        )

    def view(self, replica: GroupReplica) -> GroupReplicaView:
        members = self.members(replica.id)
        state = group_replica_state(replica.state, [m.state for m in members])
        if state != replica.state:
            try:
                self.replicas.save(
                    replace(replica, state=state, activating_group_id=None), expect={"state": replica.state}
                )
            except Conflict:
                current = self.replicas.get(replica.id)
                if current is not None:
                    return self.view(current)
            replica = replace(replica, state=state, activating_group_id=None)
        return GroupReplicaView(replica, members, state)

    def get(self, group_replica_id: str) -> GroupReplicaView:
        found = self.replicas.get(group_replica_id)
        if found is None:
            raise NotFound(kind=KIND, ident=group_replica_id)
        return self.view(found)

    def list_replicas(
        self, compartment_id: str | None, ad: str | None, state: str | None, display_name: str | None
    ) -> list[GroupReplicaView]:
        c = tables.volume_group_replicas.c
        cond = [c[col] == v for col, v in (("compartment_id", compartment_id), ("display_name", display_name)) if v]
        if ad:
            cond.append(c.availability_domain == self._svc.check_ad(ad))
        views = [self.view(r) for r in self.replicas.find(*cond, order_by=[c.time_created, c.id])]
        return [v for v in views if not state or v.state == state]

    def links_of_group(self, group_id: str) -> list[GroupReplicaLink]:
        c = tables.group_replica_links.c
        return self.links.find(c.volume_group_id == group_id, order_by=[c.id])

    # --- source side: on, off, membership -----------------------------------------------------------------------

    def check_destination(self, entry: dict[str, str], group_ad: str) -> str:
        """The destination region of a group replica entry (400 when no region has that AD, or it is the group's)."""
        ad = entry["availabilityDomain"]
        region = self._rs.destination_region(ad)
        if region is None:
            raise InvalidArgument(
                field=f"{FIELD}[0].availabilityDomain",
                reason=f"{ad!r} is not an availability domain of any region this blockvault serves",
            )
        from blockvault.blockstorage.replication import same_ad

        if region == self._svc.region.name and same_ad(ad, group_ad):
            raise InvalidArgument(
                field=f"{FIELD}[0].availabilityDomain",
                reason="a group replica goes to another availability domain or another region than its group (R5.1)",
            )
        return region

    def check_members(self, volumes: Sequence[Volume], destination_ad: str, group_replica_id: str | None) -> None:
        """R5.20 "Conflicting volumes": 409 naming every member that replicates to another destination."""
        links = self._rs.links_of_many([v.id for v in volumes])
        _, conflicts = classify_members(links, destination_ad, group_replica_id)
        if conflicts:
            raise Conflict(
                kind="volume group",
                ident=", ".join(conflicts),
                reason="Conflicting volumes: they already replicate to another destination than "
                f"{destination_ad} (R5.20); turn their replication off or to the same destination first",
            )

    def enable(self, group_id: str, group: dict[str, Any], entry: dict[str, str], group_ad: str) -> GroupReplicaInfo:
        """Create the group replica in its destination (which validates the key there) and record the link here.
        `group`: compartment_id, display_name, freeform_tags, defined_tags of the group. Members come after."""
        region = self.check_destination(entry, group_ad)
        spec = GroupReplicaSpec(
            source_region=self._svc.region.name,
            source_group_id=group_id,
            compartment_id=group["compartment_id"],
            availability_domain=entry["availabilityDomain"],
            display_name=entry.get("displayName") or f"{group['display_name']}-replica",
            kms_key_id=entry.get("xrrKmsKeyId") or "",
            freeform_tags=json.dumps(group.get("freeform_tags") or {}, sort_keys=True),
            defined_tags=json.dumps(group.get("defined_tags") or {}, sort_keys=True),
        )
        client = self._rs.client(region)
        info = client.create_group_replica(spec)
        link = GroupReplicaLink(
            id=info.id,
            volume_group_id=group_id,
            region=info.region,
            availability_domain=info.availability_domain,
            display_name=info.display_name,
            kms_key_id=info.kms_key_id or None,
            time_created=self._clock.now(),
        )
        try:
            self.links.insert(link)
        except BaseException:
            client.delete_group_replica(info.id, True)
            raise
        return info

    def add_members(self, group_id: str, volumes: Sequence[Volume]) -> None:
        """Give every volume a member replica of the group's replica (adopting a replica it already has in the
        same destination). A no-op when the group does not replicate."""
        glinks = self.links_of_group(group_id)
        if not glinks or not volumes:
            return
        glink = glinks[0]
        self.check_members(volumes, glink.availability_domain, glink.id)
        adopt, _ = classify_members(
            self._rs.links_of_many([v.id for v in volumes]), glink.availability_domain, glink.id
        )
        for volume in volumes:
            self._svc.vault.require_usable(volume.kms_key_id)  # D1: replicating reads the source's data
        specs = tuple(
            GroupMemberSpec(
                ReplicaSpec(
                    kind=v.kind,
                    source_region=self._svc.region.name,
                    source_volume_id=v.id,
                    compartment_id=v.compartment_id,
                    availability_domain=glink.availability_domain,
                    display_name=f"{v.display_name}-replica",
                    kms_key_id=glink.kms_key_id or "",
                    size_gb=v.size_gb,
                    freeform_tags=json.dumps(v.freeform_tags, sort_keys=True),  # R5.7
                    defined_tags=json.dumps(v.defined_tags, sort_keys=True),
                ),
                adopt.get(v.id, ""),
            )
            for v in volumes
        )
        infos = self._rs.client(glink.region).add_group_replica_members(glink.id, specs)
        from blockvault.blockstorage.replication import ReplicaLink

        now = self._clock.now()
        with self._engine.begin() as conn:
            for volume, info in zip(volumes, infos, strict=True):
                if volume.id in adopt:
                    existing = self._rs.links.get(info.id, conn)
                    if existing is not None:
                        self._rs.links.save(replace(existing, volume_group_replica_id=glink.id), conn)
                    continue
                link = ReplicaLink(
                    id=info.id,
                    volume_id=volume.id,
                    region=info.region,
                    availability_domain=info.availability_domain,
                    display_name=info.display_name,
                    kms_key_id=info.kms_key_id or None,
                    time_created=now,
                    volume_group_replica_id=glink.id,
                )
                self._rs.links.insert(link, conn)

    def remove_members(self, group_id: str, volume_ids: Sequence[str], keep: bool) -> None:
        """Volumes leave a replicating group: each member replica goes on on its own (keep) or is deleted."""
        glinks = self.links_of_group(group_id)
        if not glinks:
            return
        glink = glinks[0]
        for links in self._rs.links_of_many(list(volume_ids)).values():
            for link in links:
                if link.volume_group_replica_id == glink.id:
                    self._release_link(glink, link, keep)

    def _release_link(self, glink: GroupReplicaLink, link: ReplicaLink, keep: bool) -> None:
        with contextlib.suppress(NotFound):
            self._rs.client(glink.region).remove_group_replica_member(glink.id, link.id, keep)
        if keep:
            self._rs.links.save(replace(link, volume_group_replica_id=None))
            return
        with self._engine.begin() as conn:
            conn.execute(delete(tables.replica_links).where(tables.replica_links.c.id == link.id))
        volume = self._svc.volumes.get(link.volume_id)
        if volume is not None:
            self._rs.end_sync(volume.kind, volume.id, link.id)

    def disable(self, group_id: str, keep: bool) -> None:
        """Turn group replication off (`volumeGroupReplicas: []`, or the group's deletion): the group replica ends;
        the members' replicas go on on their own (keep, preserveVolumeReplica's default) or are deleted (R5.21)."""
        for glink in self.links_of_group(group_id):
            with contextlib.suppress(NotFound):
                self._rs.client(glink.region).delete_group_replica(glink.id, keep)
            c = tables.replica_links.c
            for link in self._rs.links.find(c.volume_group_replica_id == glink.id):
                if keep:
                    self._rs.links.save(replace(link, volume_group_replica_id=None))
                else:
                    with self._engine.begin() as conn:
                        conn.execute(delete(tables.replica_links).where(c.id == link.id))
                    volume = self._svc.volumes.get(link.volume_id)
                    if volume is not None:
                        self._rs.end_sync(volume.kind, volume.id, link.id)
            with self._engine.begin() as conn:
                conn.execute(delete(tables.group_replica_links).where(tables.group_replica_links.c.id == glink.id))

    def set_replicas(
        self,
        group_id: str,
        group: dict[str, Any],
        members: Sequence[Volume],
        entries: list[dict[str, str]],
        group_ad: str,
        keep: bool,
    ) -> None:
        """UpdateVolumeGroup's `volumeGroupReplicas`: the complete desired list ([] = off). Another destination
        while one exists goes through off first (R5.9, as for a volume)."""
        from blockvault.blockstorage.replication import same_ad

        current = self.links_of_group(group_id)
        if not entries:
            self.disable(group_id, keep)
            return
        wanted = entries[0]
        if current:
            link = current[0]
            same = same_ad(link.availability_domain, wanted["availabilityDomain"]) and (
                (wanted.get("xrrKmsKeyId") or None) == link.kms_key_id
            )
            if same and wanted.get("displayName") in (None, link.display_name):
                return
            raise InvalidArgument(
                field=FIELD,
                reason=f"the volume group already replicates to {link.availability_domain}; to change the "
                "destination or its key, turn replication off with [] and on again (R5.9)",
            )
        self.check_destination(wanted, group_ad)
        self.check_members(members, wanted["availabilityDomain"], None)
        self.enable(group_id, group, wanted, group_ad)
        try:
            self.add_members(group_id, members)
        except BaseException:
            self.disable(group_id, True)
            raise

    # --- source side: the coordinated sync point -----------------------------------------------------------------

    def begin_group_sync(
        self, group_id: str, group_replica_id: str, members: tuple[GroupSyncMember, ...]
    ) -> GroupSyncPoint:
        """Snapshot every asked-for member that still replicates through this group replica at ONE point in time
        (writes to all of them held off meanwhile), then list each snapshot's units for the destination."""
        from blockvault.blockstorage.replication import SOURCE_SNAPSHOT_PREFIX, source_snapshot

        glink = self.links.get(group_replica_id)
        if glink is None or glink.volume_group_id != group_id:
            raise NotFound(kind=KIND, ident=group_replica_id)
        chosen: list[tuple[Volume, GroupSyncMember]] = []
        for member in members:
            link = self._rs.links.get(member.replica_id)
            if link is None or link.volume_id != member.volume_id or link.volume_group_replica_id != glink.id:
                continue  # it left the group meanwhile: not part of this point
            volume = self._svc.volumes.get(member.volume_id)
            if volume is None or volume.state in (TERMINATING, TERMINATED):
                continue
            self._svc.group_member_ready(volume)  # PROVISIONING / hydrating: IncorrectState (the job parks)
            chosen.append((volume, member))
        if not chosen:
            return GroupSyncPoint(group_id, self._clock.now().isoformat(), ())
        for volume, member in chosen:  # a crashed attempt's snapshots: drop them, the new point replaces them
            prefix = f"{SOURCE_SNAPSHOT_PREFIX}{member.replica_id}-"
            with self._svc.leased(volume) as store:
                for old in store.snapshots():
                    if old.startswith(prefix):
                        store.delete_snapshot(old)
        names = {v.id: source_snapshot(m.replica_id, m.generation) for v, m in chosen}
        # Everything that completed before `taken` is in every snapshot: the point is taken after it.
        taken = self._clock.now()
        self._svc.snapshot_at_one_point([v for v, _ in chosen], names)
        points: list[tuple[str, ReplicaSyncPoint]] = []
        for volume, member in chosen:
            dek = self._svc.vault.unwrap(volume.wrapped, volume.dek_context())
            name = names[volume.id]
            with SnapshotReader.open(self._svc.volume_dir(volume), name=name, volume_id=volume.id, dek=dek) as reader:
                point = ReplicaSyncPoint(
                    volume.id, name, reader.seq, reader.size, taken.isoformat(), tuple(reader.units())
                )
            points.append((member.replica_id, point))
        return GroupSyncPoint(group_id, taken.isoformat(), tuple(points))

    # --- destination side: the group replica resource ------------------------------------------------------------

    def create_group_replica(self, spec: GroupReplicaSpec) -> GroupReplicaInfo:
        """Validate the key (one of THIS region, as for a volume replica: R5.14-R5.16, D13, D1) and the AD, and
        record the group replica (PROVISIONING). Its first sync is enqueued when members are added."""
        ad = self._svc.check_ad(spec.availability_domain)
        key_id = spec.kms_key_id or None
        if key_id is not None:
            self._svc.vault.resolve_key(key_id, field="xrrKmsKeyId")
        now = self._clock.now()
        replica = GroupReplica(
            id=ids.new(OCID_TYPE, self._svc.region.key, random=self._random),
            compartment_id=spec.compartment_id,
            availability_domain=ad,
            display_name=spec.display_name,
            source_region=spec.source_region,
            source_group_id=spec.source_group_id,
            state=PROVISIONING,
            kms_key_id=key_id,
            time_created=now,
            next_sync_at=now,
            freeform_tags=json.loads(spec.freeform_tags),
            defined_tags=json.loads(spec.defined_tags),
        )
        self.replicas.insert(replica)
        return GroupReplicaInfo(replica.id, self._svc.region.name, ad, replica.display_name, key_id or "")

    def add_group_members(self, group_replica_id: str, members: tuple[GroupMemberSpec, ...]) -> tuple[ReplicaInfo, ...]:
        """New member replicas (DEK under the group's key) or adopted ones (their own key), then sync at once."""
        from blockvault.blockstorage.replication import same_ad

        group = self.replicas.get(group_replica_id)
        if group is None or group.state not in LIVE:
            raise NotFound(kind=KIND, ident=group_replica_id)
        new: list[Replica] = []
        adopted: list[Replica] = []
        out: list[ReplicaInfo] = []
        for member in members:
            if member.existing_replica_id:
                found = self._rs.replicas.get(member.existing_replica_id)
                if (
                    found is None
                    or found.state not in LIVE
                    or found.source_volume_id != member.spec.source_volume_id
                    or not same_ad(found.availability_domain, group.availability_domain)
                    or found.volume_group_replica_id not in (None, group.id)
                ):
                    raise Conflict(
                        kind=KIND,
                        ident=group.id,
                        reason=f"Conflicting volumes: the replica {member.existing_replica_id} of volume "
                        f"{member.spec.source_volume_id} cannot join it (R5.20)",
                    )
                adopted.append(found)
                replica = found
            else:
                spec = replace(member.spec, kms_key_id=group.kms_key_id or "")
                replica = self._rs.new_replica(spec, volume_group_replica_id=group.id)
                new.append(replica)
            out.append(
                ReplicaInfo(
                    replica.id,
                    self._svc.region.name,
                    replica.availability_domain,
                    replica.display_name,
                    replica.kms_key_id or "",
                )
            )
        with self._engine.begin() as conn:
            for replica in new:
                self._rs.replicas.insert(replica, conn)
            for replica in adopted:
                self._rs.replicas.save(
                    replace(replica, volume_group_replica_id=group.id),
                    conn,
                    expect={"volume_group_replica_id": replica.volume_group_replica_id},
                )
            current = self.replicas.get(group.id, conn)
            if current is not None:
                self.replicas.save(replace(current, next_sync_at=self._clock.now()), conn)
        self.tick(self._clock.now())
        return tuple(out)

    def remove_group_member(self, group_replica_id: str, replica_id: str, keep: bool) -> None:
        replica = self._rs.replicas.get(replica_id)
        if replica is None or replica.volume_group_replica_id != group_replica_id:
            return
        self._rs.replicas.save(
            replace(replica, volume_group_replica_id=None, next_sync_at=self._clock.now()),
            expect={"volume_group_replica_id": group_replica_id},
        )
        if not keep:
            self._rs.delete_replica(replica.kind, replica.id)
        # kept: its next_sync_at is now, so the scheduler enqueues its own sync on its next tick

    def delete_group_replica(self, group_replica_id: str, keep_members: bool) -> None:
        """End the group replica (it holds no data of its own: TERMINATED at once); members kept or deleted."""
        found = self.replicas.get(group_replica_id)
        if found is None or found.state in (TERMINATING, TERMINATED):
            return
        view = self.view(found)
        if view.state == ACTIVATING:
            raise IncorrectState(kind=KIND, ident=group_replica_id, state=ACTIVATING, allowed=[AVAILABLE])
        for member in view.members:
            self.remove_group_member(group_replica_id, member.id, keep_members)
        self.replicas.save(replace(view.replica, state=TERMINATED), expect={"state": view.replica.state})

    # --- destination side: the coordinated sync -----------------------------------------------------------------

    def tick(self, now: datetime) -> list[str]:
        """Enqueue a group sync for every group replica that is due and has none pending."""
        with self._tick_lock:
            return self._tick(now)

    def _tick(self, now: datetime) -> list[str]:
        c = tables.volume_group_replicas.c
        due = [
            r for r in self.replicas.find(c.state.in_([PROVISIONING, AVAILABLE, ACTIVATING])) if r.next_sync_at <= now
        ]
        if not due:
            return []
        pending = self._rs.pending(SYNC_JOB)
        enqueued: list[str] = []
        for group in due:
            if group.id in pending:
                continue
            if group.state == ACTIVATING and self.view(group).state == ACTIVATING:
                continue  # activation reads the members' last sync: the next one waits for it
            job = self._runner.new(SYNC_JOB, group.id, group.compartment_id, {"generation": group.sync_count + 1})
            self._runner.repo.insert(job)
            enqueued.append(group.id)
        if enqueued:
            self._runner.wake()
        return enqueued

    def _job_sync(self, job: Job, progress: Callable[[float], None]) -> None:
        from blockvault.blockstorage.replication import next_sync_time

        found = self.replicas.get(job.resource_id)
        if found is None or found.state not in LIVE:
            return
        generation = int(job.payload["generation"])
        if found.sync_count >= generation:  # a crash after the commit: only the clean-up is left
            for member in coordinated_members(found, self.members(found.id)):
                self._rs.after_sync(member)
            return
        view = self.view(found)
        group, members = view.replica, view.members
        if view.state == ACTIVATING or any(m.state == ACTIVATING for m in members):
            raise IncorrectState(kind=KIND, ident=group.id, state=ACTIVATING, allowed=[AVAILABLE])
        if not members:
            self._push(group, next_sync_time(self._clock.now(), self._rs.interval_seconds))
            return
        deks = {m.id: self._svc.vault.unwrap(m.wrapped, m.dek_context()) for m in members}  # D1: park
        client = self._rs.client(group.source_region)
        try:
            point = client.begin_group_replica_sync(group.source_group_id, group.id, sync_plan(members))
        except NotFound:
            return  # replication was turned off at the source: its delete_group_replica ends this one
        except KeyUnusable:
            raise  # D1 on a source key: park, retry
        except Unavailable as exc:
            # The source process is unreachable (regions.md): the sync point is not taken; park and retry rather
            # than make the group replica FAULTY. Its members keep their last coordinated point meanwhile.
            raise IncorrectState(kind=KIND, ident=group.id, state="SOURCE_UNAVAILABLE", allowed=[AVAILABLE]) from exc
        except Conflict as exc:
            log.warning("group sync %d of %s skipped: %s", generation, group.id, exc)
            self._push(group, next_sync_time(self._clock.now(), self._rs.interval_seconds))
            return
        by_id = {m.id: m for m in members}
        shipped: dict[str, int] = {}
        for n, (replica_id, member_point) in enumerate(point.members):
            member = by_id[replica_id]

            def part(pct: float, n: int = n) -> None:
                progress((n + pct / 100.0) * 100.0 / max(len(point.members), 1))

            try:
                got = self._rs.ship(member, deks[replica_id], client, member_point, member.sync_count + 1, part)
            except Unavailable as exc:  # as above: redo the whole point once the source answers again
                raise IncorrectState(
                    kind=KIND, ident=group.id, state="SOURCE_UNAVAILABLE", allowed=[AVAILABLE]
                ) from exc
            if got is None:
                raise IncorrectState(kind=KIND, ident=group.id, state="MEMBER_GONE", allowed=[AVAILABLE])
            shipped[replica_id] = got
        taken = datetime.fromisoformat(point.taken_at)
        later = next_sync_time(taken, self._rs.interval_seconds)
        done: list[Replica] = []
        try:
            with self._engine.begin() as conn:
                self.replicas.save(
                    replace(
                        group,
                        state=AVAILABLE if group.state == PROVISIONING else group.state,
                        sync_count=generation,
                        time_last_synced=taken,
                        next_sync_at=later,
                    ),
                    conn,
                    expect={"state": group.state, "sync_count": generation - 1},
                )
                for replica_id, member_point in point.members:
                    member = by_id[replica_id]
                    updated = replace(
                        member,
                        state=AVAILABLE if member.state == PROVISIONING else member.state,
                        sync_count=member.sync_count + 1,
                        synced_seq=member_point.seq,
                        time_last_synced=taken,
                        bytes_transferred=member.bytes_transferred + shipped[replica_id],
                        next_sync_at=later,
                    )
                    self._rs.replicas.save(
                        updated,
                        conn,
                        expect={
                            "state": member.state,
                            "sync_count": member.sync_count,
                            "volume_group_replica_id": group.id,
                        },
                    )
                    done.append(updated)
        except Conflict as exc:  # an activation, a membership change or a delete won: redo (or drop) next run
            raise IncorrectState(kind=KIND, ident=group.id, state="CHANGED", allowed=[AVAILABLE]) from exc
        for member in done:
            self._rs.after_sync(member)

    def _push(self, group: GroupReplica, when: datetime) -> None:
        with contextlib.suppress(Conflict):
            self.replicas.save(
                replace(group, next_sync_at=when), expect={"state": group.state, "sync_count": group.sync_count}
            )

    def _fail_sync(self, job: Job, reason: str) -> None:
        found = self.replicas.get(job.resource_id)
        if found is not None and found.state in (PROVISIONING, AVAILABLE):
            self.replicas.save(replace(found, state=FAULTY, faulty_reason=reason))

    # --- destination side: activation (R5.19, D4) ----------------------------------------------------------------

    def activate(
        self,
        group_replica_id: str,
        group_id: str,
        ad: str,
        compartment_id: str,
        insert_group: Callable[[Any], None],
    ) -> list[str]:
        """CreateVolumeGroup from a group replica: one new volume per member of the last COORDINATED sync, each
        holding that member's snapshot of it, under a new DEK wrapped by the member replica's key (D4; provider
        key when it has none), all in the new group. One activation at a time. Returns the jobs' ids."""
        from blockvault.blockstorage.replication import SOURCE_TYPE, same_ad

        field_name = "sourceDetails.volumeGroupReplicaId"
        if not group_replica_id:
            raise MissingParameter(field=field_name)
        ids.expect(group_replica_id, OCID_TYPE, field=field_name)
        found = self.replicas.get(group_replica_id)
        if found is None or found.state in (TERMINATING, TERMINATED):
            raise RelatedResourceNotFound(field=field_name, ident=group_replica_id)
        view = self.view(found)
        group = view.replica
        if view.state == ACTIVATING:
            raise Conflict(
                kind=KIND,
                ident=group.id,
                reason=f"volume group {group.activating_group_id} is being created from it; only one volume group "
                "may be created from a volume group replica at a time",
            )
        if view.state == FAULTY:
            raise Conflict(kind=KIND, ident=group.id, reason=group.faulty_reason or "it is FAULTY")
        if view.state == PROVISIONING or group.sync_count == 0:
            raise IncorrectState(kind=KIND, ident=group.id, state=view.state, allowed=[AVAILABLE])
        if not same_ad(ad, group.availability_domain):
            raise InvalidArgument(
                field="availabilityDomain",
                reason=f"a volume group activated from a replica is in the replica's availability domain, "
                f"{group.availability_domain}",
            )
        members = coordinated_members(group, view.members)
        if not members:
            raise Conflict(kind=KIND, ident=group.id, reason="no member replica holds its last coordinated sync")
        for member in members:
            if member.state != AVAILABLE:
                raise Conflict(kind=KIND, ident=group.id, reason=f"its member replica {member.id} is {member.state}")
            self._svc.vault.require_usable(member.kms_key_id)  # D1: the member's data needs its key
            if member.kms_key_id is not None:
                self._svc.vault.resolve_key(member.kms_key_id)
        volumes: list[tuple[Replica, Volume, Job]] = []
        for member in members:
            common = {
                "compartment_id": compartment_id,
                "display_name": member.display_name,
                "vpus_per_gb": 10,
                "freeform_tags": dict(member.freeform_tags),
                "defined_tags": dict(member.defined_tags),
            }
            volume, _ = self._svc.new_volume(
                member.kind,
                group.availability_domain,
                member.size_gb,
                member.kms_key_id,  # D4
                common,
                source_type=SOURCE_TYPE[member.kind],
                source_id=member.id,
                volume_group_id=group_id,
            )
            volume.is_hydrated = False
            job = self._runner.new(
                "ActivateReplica",
                volume.id,
                volume.compartment_id,
                {"replicaId": member.id, "generation": member.sync_count},
            )
            volumes.append((member, volume, job))
        with self._engine.begin() as conn:
            self.replicas.save(
                replace(group, state=ACTIVATING, activating_group_id=group_id),
                conn,
                expect={"state": AVAILABLE, "sync_count": group.sync_count},
            )
            insert_group(conn)
            for member, volume, job in volumes:
                self._rs.replicas.save(
                    replace(member, state=ACTIVATING, activating_volume_id=volume.id),
                    conn,
                    expect={"state": AVAILABLE, "sync_count": member.sync_count},
                )
                self._svc.volumes.insert(volume, conn)
                self._runner.repo.insert(job, conn)
        self._runner.wake()
        return [job.id for _, _, job in volumes]


__all__ = [
    "ACTIVATING",
    "ADD_PENDING",
    "STABLE",
    "GroupReplica",
    "GroupReplicaLink",
    "GroupReplicaView",
    "GroupReplicationService",
    "classify_members",
    "coordinated_members",
    "group_replica_state",
    "in_coordinated_point",
    "sync_plan",
]
