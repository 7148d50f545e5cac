"""What one region's Block Volume service asks of another region: the narrow interface cross-region features use.

Cross-region backup copy (S12, S14; oci-behaviour.md R3.25-R3.32, D11) runs as a durable job in the DESTINATION
region. The job reads the source backup through a `RegionClient`:

1. `get_backup` / `check_exportable`: the source's record and whether it can be read now (AVAILABLE, key usable, D1);
2. `open_export`: the backup's layout (geometry and which chunks hold data), then `read_chunks([i, ...])` per batch,
   which returns PLAINTEXT: the source region authenticates and decrypts with its own DEKs under its own keys, and the
   destination re-encrypts under a new DEK wrapped by the destination key. Neither plaintext DEKs nor Vault keys
   ever leave their region (R3.28: "Vault keys are never carried to the destination").

Every call is stateless on the wire apart from the export id, and every value is plain data (`BackupLayout` is
ints and strings, a chunk is bytes), so a later issue can add an HTTP implementation between processes
(e.g. `GET /<region>/internal/backups/{id}/export` and `.../chunks/{i}` over mutual TLS) next to the in-process
one here without changing the copy job. `InProcessRegionClient` calls the other region's `BlockStorageService`
directly (both regions live in one `blockvault serve` process today).

Errors are the domain errors of blockvault.errors, raised as the source region raises them: `NotFound` (no such
backup), `Conflict`/`IncorrectState` (not AVAILABLE), `KeyUnusable` (its key is not ENABLED: the copy job parks and
retries, D1), `IntegrityError` (stored data damaged).

Volume replication (oci-behaviour.md §5, docs/design/replication.md) uses the same client both ways:

- the SOURCE region (UpdateVolume / CreateVolume with `blockVolumeReplicas`) asks the destination to
  `create_replica` / `delete_replica` (the replica, its DEK and its sync schedule live in the destination);
- the DESTINATION's sync job asks the source to `begin_replica_sync` (a snapshot of the volume and the seq of each
  unit), `read_replica_units` (PLAINTEXT units of that snapshot, decrypted in the source with the source's DEK) and
  `end_replica_sync` (drop the snapshot). The destination re-encrypts under the replica's own DEK, so the replica
  never needs a source key (R5.14), exactly as backup copy does.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from blockvault.backup.engine import restore_backup
from blockvault.backup.format import UNIT_SIZE, Manifest, ManifestEntry, chunk_span
from blockvault.backup.objectstore.base import ObjectStore
from blockvault.blockstorage.model import CREATING, TERMINATED, Backup
from blockvault.errors import NotFound

if TYPE_CHECKING:
    from blockvault.blockstorage.groups import GroupBackupView, VolumeGroupService
    from blockvault.blockstorage.service import BlockStorageService

__all__ = [
    "BackupExport",
    "BackupInfo",
    "BackupLayout",
    "ExportSource",
    "GroupMemberSpec",
    "GroupReplicaInfo",
    "GroupReplicaSpec",
    "GroupSyncMember",
    "GroupSyncPoint",
    "InProcessRegionClient",
    "LocalBackupExport",
    "RegionClient",
    "ReplicaInfo",
    "ReplicaSpec",
    "ReplicaSyncPoint",
]

# Chunks fetched per batch by ExportSource (16 x 256 KiB = 4 MiB of plaintext held at most).
BATCH = 16
# How often (in chunks) a running export re-checks that the source backup is still there and its key ENABLED.
CHECK_EVERY = 64


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """A backup as its owning region records it, plus the backup it was copied from (None if it is no copy)."""

    backup: Backup
    source_backup_id: str | None = None


@dataclass(frozen=True, slots=True)
class BackupLayout:
    """The geometry of a committed backup and the chunks that hold data, as (chunk index, unit mask), by index.

    Chunks not listed are holes (all zeros). `unit_mask` bit i: unit i of the chunk was allocated at the snapshot.
    """

    backup_id: str
    volume_id: str
    size_bytes: int
    snapshot_seq: int
    chunk_size: int
    chunks: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """What the source region asks the destination to create. "" means none (kms_key_id: the destination's
    provider-managed key). Tags are JSON text, so every field is a str or an int."""

    kind: str  # volume | bootvolume
    source_region: str
    source_volume_id: str
    compartment_id: str
    availability_domain: str
    display_name: str
    kms_key_id: str
    size_gb: int
    freeform_tags: str = "{}"
    defined_tags: str = "{}"


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """A replica as its source volume shows it (BlockVolumeReplicaInfo, BootVolumeReplicaInfo); kms_key_id "": none."""

    id: str
    region: str
    availability_domain: str
    display_name: str
    kms_key_id: str


@dataclass(frozen=True, slots=True)
class ReplicaSyncPoint:
    """A snapshot the source took for one sync: its name, its write seq, its size, when it was taken (ISO 8601, the
    replica's timeLastSynced once the sync completes) and (unit index, seq) of every unit it holds, by index."""

    volume_id: str
    snapshot: str
    seq: int
    size_bytes: int
    taken_at: str
    units: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class GroupMemberSpec:
    """One member volume of a replicating volume group: its replica spec, and the id of a replica it already has in
    the destination ("" none), which the group replica then adopts with its own key (R5.20, replication.md)."""

    spec: ReplicaSpec
    existing_replica_id: str = ""


@dataclass(frozen=True, slots=True)
class GroupReplicaSpec:
    """What the source region asks the destination to create for `volumeGroupReplicas` ("" kms_key_id: provider)."""

    source_region: str
    source_group_id: str
    compartment_id: str
    availability_domain: str
    display_name: str
    kms_key_id: str
    freeform_tags: str = "{}"
    defined_tags: str = "{}"


@dataclass(frozen=True, slots=True)
class GroupReplicaInfo:
    """A group replica as its source group shows it (VolumeGroupReplicaInfo); kms_key_id "": none."""

    id: str
    region: str
    availability_domain: str
    display_name: str
    kms_key_id: str


@dataclass(frozen=True, slots=True)
class GroupSyncMember:
    """One member a group sync asks the source to include: its volume, its replica and the replica's generation."""

    volume_id: str
    replica_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class GroupSyncPoint:
    """Snapshots of every member taken at ONE point in time (taken_at, ISO 8601); members no longer replicating
    through the group are left out."""

    group_id: str
    taken_at: str
    members: tuple[tuple[str, ReplicaSyncPoint], ...]  # (member replica id, its point)


class BackupExport(Protocol):
    """An open, read-only view of one source backup. `read_chunks` returns the plaintext of each chunk asked for, in
    the order asked; a chunk's length is its span in the volume (the last chunk may be short) and a hole reads as
    zeros. Batches let the source decrypt in parallel and an HTTP client fetch several chunks per request. Called from
    one thread at a time."""

    @property
    def layout(self) -> BackupLayout: ...

    def read_chunks(self, chunk_indexes: Sequence[int]) -> list[bytes]: ...

    def close(self) -> None: ...


class RegionClient(Protocol):
    """Another region of this blockvault, as seen by the Block Volume service of this one (see module docstring)."""

    @property
    def region(self) -> str:
        """The region's name, e.g. us-phoenix-1."""
        ...

    @property
    def region_key(self) -> str:
        """The region's key as it appears in OCIDs, e.g. phx."""
        ...

    def get_backup(self, kind: str, backup_id: str) -> BackupInfo:
        """The backup's record; NotFound if that region has no such backup of that kind."""
        ...

    def check_exportable(self, kind: str, backup_id: str) -> Backup:
        """The backup, if it can be copied now: AVAILABLE and its key ENABLED (D1); the domain error otherwise."""
        ...

    def open_export(self, kind: str, backup_id: str) -> BackupExport:
        """Open the backup for reading (checks as `check_exportable`, then authenticates its manifest)."""
        ...

    # --- volume replication (docs/design/replication.md) ---

    def availability_domains(self) -> tuple[str, ...]:
        """The region's availability domains (a replica's destination is named by its AD)."""
        ...

    def create_replica(self, spec: ReplicaSpec) -> ReplicaInfo:
        """Destination side: validate the key and AD, record the replica (PROVISIONING) and schedule its first sync."""
        ...

    def delete_replica(self, kind: str, replica_id: str) -> None:
        """Destination side: terminate the replica (TERMINATING, then TERMINATED); idempotent."""
        ...

    def begin_replica_sync(self, kind: str, volume_id: str, replica_id: str, generation: int) -> ReplicaSyncPoint:
        """Source side: snapshot the volume for sync `generation` (replacing any earlier snapshot of this replica).
        NotFound if replication to that replica is off; KeyUnusable if the source's key is not ENABLED (D1)."""
        ...

    def read_replica_units(self, kind: str, volume_id: str, snapshot: str, units: tuple[int, ...]) -> tuple[bytes, ...]:
        """Source side: the plaintext of each unit of the sync snapshot, in the order asked (D1 checked per call)."""
        ...

    def end_replica_sync(self, kind: str, volume_id: str, replica_id: str) -> None:
        """Source side: drop every snapshot taken for this replica; idempotent."""
        ...

    # --- volume group replication (docs/design/replication.md, "Volume group replicas") ---

    def create_group_replica(self, spec: GroupReplicaSpec) -> GroupReplicaInfo:
        """Destination side: validate the key and AD and record the group replica (PROVISIONING, no members yet)."""
        ...

    def add_group_replica_members(
        self, group_replica_id: str, members: tuple[GroupMemberSpec, ...]
    ) -> tuple[ReplicaInfo, ...]:
        """Destination side: a member replica per member (a new one, or an adopted existing one), in order."""
        ...

    def remove_group_replica_member(self, group_replica_id: str, replica_id: str, keep: bool) -> None:
        """Destination side: the member leaves the group replica; kept, it syncs on its own; else it is deleted."""
        ...

    def delete_group_replica(self, group_replica_id: str, keep_members: bool) -> None:
        """Destination side: terminate the group replica; its members are kept (syncing on their own) or deleted."""
        ...

    def begin_group_replica_sync(
        self, group_id: str, group_replica_id: str, members: tuple[GroupSyncMember, ...]
    ) -> GroupSyncPoint:
        """Source side: snapshot every member still replicating through the group at ONE point in time (writes to
        all of them held off meanwhile). NotFound if the group replication is off; KeyUnusable as D1."""
        ...

    # --- volume group backup copy and scheduled copies (docs/design/volume-groups.md, backup-policies.md) ---

    def get_group_backup(self, backup_id: str) -> GroupBackupView:
        """The region's volume group backup with its members and derived state; NotFound if it has none such."""
        ...

    def create_scheduled_copy(
        self, kind: str, source_region: str, source_backup_id: str, details: dict[str, Any]
    ) -> Backup:
        """Destination side of a backup policy's copy (R3.28): as `create_copy`, but a copy of that source with that
        displayName made earlier is answered instead of a second one, so the scheduler may send it again."""
        ...

    def create_scheduled_group_copy(
        self, source_region: str, source: GroupBackupView, details: dict[str, Any]
    ) -> GroupBackupView:
        """Destination side of a policy's copy of a volume group backup; adopts an earlier copy as above."""
        ...

    def compartment_in_use(self, compartment_id: str) -> bool:
        """Whether the region still holds a live volume, boot volume or vault in the compartment (DeleteCompartment
        asks every region, those of other processes included)."""
        ...

    def date_scheduled_copy(self, kind: str, copy_id: str, expires: datetime | None, retention_seconds: int) -> bool:
        """R3.30: give a scheduled copy (kind volume, bootvolume or volumegroup: then its members too) the source's
        expiration (None: its creation plus `retention_seconds`). False while a copy job is still running (its
        final save would undo it); NotFound if the copy is gone."""
        ...


class LocalBackupExport:
    """A `BackupExport` over a backup in this process's object store, with its DEKs unwrapped by its own region.

    `check()` is called before the first chunk and every CHECK_EVERY chunks: it raises if the backup went away or its
    key stopped being usable, so a copy does not go on reading under a disabled key (D1). `close()` drops the DEKs.
    """

    def __init__(
        self,
        objects: ObjectStore,
        manifest: Manifest,
        deks: Mapping[str, bytes],
        check: Callable[[], None],
    ) -> None:
        self._objects, self._manifest, self._check = objects, manifest, check
        self._deks: dict[str, bytes] | None = dict(deks)
        self._entries: dict[int, ManifestEntry] = {e.chunk_index: e for e in manifest.entries}
        self._reads = 0
        self._lock = threading.Lock()
        self._layout = BackupLayout(
            backup_id=manifest.backup_id,
            volume_id=manifest.volume_id,
            size_bytes=manifest.size_bytes,
            snapshot_seq=manifest.snapshot_seq,
            chunk_size=manifest.chunk_size,
            chunks=tuple((e.chunk_index, e.unit_mask) for e in manifest.entries),
        )

    @property
    def layout(self) -> BackupLayout:
        return self._layout

    def read_chunks(self, chunk_indexes: Sequence[int]) -> list[bytes]:
        with self._lock:
            if self._deks is None:
                raise ValueError("the export is closed")
            if self._reads // CHECK_EVERY != (self._reads + len(chunk_indexes)) // CHECK_EVERY or self._reads == 0:
                self._check()
            self._reads += len(chunk_indexes)
            deks = dict(self._deks)
        manifest = self._manifest
        found: dict[int, bytes] = {}
        stored = tuple(sorted({self._entries[i] for i in chunk_indexes if i in self._entries}, key=_index))
        if stored:
            # The engine authenticates every chunk against its manifest entry (length, tag, AAD) and decrypts it:
            # a manifest of the same backup holding only the asked-for entries gets exactly those chunks.
            restore_backup(
                self._objects,
                replace(manifest, entries=stored),
                {e.dek_id: deks[e.dek_id] for e in stored},
                lambda offset, data: found.__setitem__(offset // manifest.chunk_size, data),
            )
        return [
            found[i] if i in found else bytes(chunk_span(manifest.size_bytes, manifest.chunk_size, i)[1])
            for i in chunk_indexes
        ]

    def close(self) -> None:
        with self._lock:
            self._deks = None


def _index(entry: ManifestEntry) -> int:
    return entry.chunk_index


class ExportSource:
    """A `backup.engine.UnitSource` over a `BackupExport`, so `write_backup` can store a copy as a FULL backup.

    The copy has the source's geometry and allocated units; every unit reports seq 0 (a FULL backup has no parent
    to compare seqs with) and the snapshot seq is the source's. Reads are served from the source's chunks, fetched
    BATCH at a time ahead of the reader (at most BATCH chunks, 4 MiB, held).
    """

    def __init__(self, export: BackupExport) -> None:
        self._export = export
        layout = export.layout
        self._layout = layout
        self._cache: dict[int, bytes] = {}
        self._stored = [chunk_index for chunk_index, _ in layout.chunks]
        per_chunk = layout.chunk_size // UNIT_SIZE
        units: list[tuple[int, int]] = []
        for chunk_index, mask in layout.chunks:
            for bit in range(per_chunk):
                if mask >> bit & 1:
                    units.append((chunk_index * per_chunk + bit, 0))
        self._units = units

    @property
    def volume_id(self) -> str:
        return self._layout.volume_id

    @property
    def size(self) -> int:
        return self._layout.size_bytes

    @property
    def seq(self) -> int:
        return self._layout.snapshot_seq

    def units(self) -> list[tuple[int, int]]:
        return list(self._units)

    def _chunk(self, index: int) -> bytes:
        data = self._cache.get(index)
        if data is None:
            # write_backup reads forward, chunk after chunk: fetch this one and the next stored ones in one batch.
            at = bisect.bisect_left(self._stored, index)
            batch = [index, *(i for i in self._stored[at : at + BATCH] if i != index)][:BATCH]
            self._cache = dict(zip(batch, self._export.read_chunks(batch), strict=True))
            data = self._cache[index]
        return data

    def read(self, offset: int, length: int) -> bytes:
        """Plaintext of [offset, offset+length) of the source at its snapshot; past the end reads as zeros."""
        out = bytearray(length)
        size, chunk_size = self._layout.size_bytes, self._layout.chunk_size
        pos, end = offset, offset + length
        while pos < min(end, size):
            index = pos // chunk_size
            start = index * chunk_size
            data = self._chunk(index)
            take = min(end, start + len(data)) - pos
            out[pos - offset : pos - offset + take] = data[pos - start : pos - start + take]
            pos += take
        return bytes(out)

    def read_unit(self, index: int) -> bytes:
        return self.read(index * UNIT_SIZE, UNIT_SIZE)


class InProcessRegionClient:
    """A `RegionClient` for a region served by this same process: calls its BlockStorageService directly."""

    def __init__(self, service: BlockStorageService, groups: VolumeGroupService | None = None) -> None:
        self._service, self._groups = service, groups

    def _group_service(self) -> VolumeGroupService:
        if self._groups is None:
            from blockvault.blockstorage.service import NotImplementedYet

            raise NotImplementedYet(feature=f"Volume groups in {self._service.region.name}")
        return self._groups

    @property
    def region(self) -> str:
        return self._service.region.name

    @property
    def region_key(self) -> str:
        return self._service.region.key

    def get_backup(self, kind: str, backup_id: str) -> BackupInfo:
        backup = self._service.get_backup(kind, backup_id)
        return BackupInfo(backup, self._service.copy_source(backup.id))

    def check_exportable(self, kind: str, backup_id: str) -> Backup:
        return self._service.check_exportable(kind, backup_id)

    def open_export(self, kind: str, backup_id: str) -> BackupExport:
        return self._service.open_export(kind, backup_id)

    def availability_domains(self) -> tuple[str, ...]:
        return tuple(self._service.region.availability_domains)

    def create_replica(self, spec: ReplicaSpec) -> ReplicaInfo:
        return self._service.replication.create_replica(spec)

    def delete_replica(self, kind: str, replica_id: str) -> None:
        self._service.replication.delete_replica(kind, replica_id)

    def begin_replica_sync(self, kind: str, volume_id: str, replica_id: str, generation: int) -> ReplicaSyncPoint:
        return self._service.replication.begin_sync(kind, volume_id, replica_id, generation)

    def read_replica_units(self, kind: str, volume_id: str, snapshot: str, units: tuple[int, ...]) -> tuple[bytes, ...]:
        return self._service.replication.read_units(kind, volume_id, snapshot, units)

    def end_replica_sync(self, kind: str, volume_id: str, replica_id: str) -> None:
        self._service.replication.end_sync(kind, volume_id, replica_id)

    def create_group_replica(self, spec: GroupReplicaSpec) -> GroupReplicaInfo:
        return self._service.replication.group_replicas.create_group_replica(spec)

    def add_group_replica_members(
        self, group_replica_id: str, members: tuple[GroupMemberSpec, ...]
    ) -> tuple[ReplicaInfo, ...]:
        return self._service.replication.group_replicas.add_group_members(group_replica_id, members)

    def remove_group_replica_member(self, group_replica_id: str, replica_id: str, keep: bool) -> None:
        self._service.replication.group_replicas.remove_group_member(group_replica_id, replica_id, keep)

    def delete_group_replica(self, group_replica_id: str, keep_members: bool) -> None:
        self._service.replication.group_replicas.delete_group_replica(group_replica_id, keep_members)

    def begin_group_replica_sync(
        self, group_id: str, group_replica_id: str, members: tuple[GroupSyncMember, ...]
    ) -> GroupSyncPoint:
        return self._service.replication.group_replicas.begin_group_sync(group_id, group_replica_id, members)

    def get_group_backup(self, backup_id: str) -> GroupBackupView:
        return self._group_service().get_group_backup(backup_id)

    def create_scheduled_copy(
        self, kind: str, source_region: str, source_backup_id: str, details: dict[str, Any]
    ) -> Backup:
        svc = self._service
        name = details.get("displayName")
        if isinstance(name, str) and name:
            from blockvault.db import tables

            b = tables.backups.c
            made = svc.backups.find(b.display_name == name, b.kind == kind, b.state != TERMINATED)
            sources = svc.copy_sources([m.id for m in made])
            for backup in made:
                if sources.get(backup.id) == source_backup_id:
                    return backup  # sent again after a reply was lost: the copy already exists
        backup, _ = svc.create_copy(kind, source_region, source_backup_id, details)
        return backup

    def create_scheduled_group_copy(
        self, source_region: str, source: GroupBackupView, details: dict[str, Any]
    ) -> GroupBackupView:
        groups = self._group_service()
        name = details.get("displayName")
        if isinstance(name, str) and name:
            from blockvault.db import tables

            c = tables.volume_group_backups.c
            for found in groups.group_backups.find(
                c.source_volume_group_backup_id == source.backup.id, c.display_name == name, c.state != TERMINATED
            ):
                return groups.backup_view(found)
        return groups.create_group_backup_copy(source_region, source, details)

    def date_scheduled_copy(self, kind: str, copy_id: str, expires: datetime | None, retention_seconds: int) -> bool:
        if kind == "volumegroup":
            groups = self._group_service()
            found = groups.group_backups.get(copy_id)
            if found is None:
                raise NotFound(kind="volume group backup", ident=copy_id)
            view = groups.backup_view(found)
            if any(m.state == CREATING for m in view.members):
                return False
            when = expires or found.time_created + timedelta(seconds=retention_seconds)
            for member in view.members:
                self._service.backups.save(replace(member, expiration_time=when), expect={"state": member.state})
            groups.group_backups.save(replace(view.backup, expiration_time=when), expect={"state": view.backup.state})
            return True
        copy = self._service.backups.get(copy_id)
        if copy is None:
            raise NotFound(kind=f"{kind} backup", ident=copy_id)
        if copy.state == CREATING:
            return False
        when = expires or copy.time_created + timedelta(seconds=retention_seconds)
        self._service.backups.save(replace(copy, expiration_time=when), expect={"state": copy.state})
        return True

    def compartment_in_use(self, compartment_id: str) -> bool:
        svc = self._service
        for kind in ("volume", "bootvolume"):
            if any(v.state != TERMINATED for v in svc.list_volumes(kind, compartment_id, None, None, None)):
                return True
        return any(v.state != "DELETED" for v in svc.vault.list_vaults(compartment_id))
