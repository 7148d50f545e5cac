"""Block and boot volume replication (oci-behaviour.md §5, R5.1-R5.22; D1, D4, D13): replicas, sync, activation.

The normative description is docs/design/replication.md. In short:

- A replica lives in its DESTINATION region (another region, or another AD of the same region) with its own DEK,
  wrapped by `xrrKmsKeyId` (a key of that region) or that region's provider-managed key, never by a source key.
  Its data is a volume store of its own (`ads/<AD>/replicas/<id>`), encrypted under that DEK.
- The source keeps only a link (`replica_links`): what GET volume shows in `blockVolumeReplicas`, and what refuses
  a resize (R5.4).
- Sync N is a durable job (SyncReplica) in the destination: the source snapshots the volume and lists the seq of
  each unit; the units written since the last completed sync travel as PLAINTEXT through the RegionClient (the
  source decrypts with its DEK, the destination re-encrypts with the replica's), then the replica store freezes
  the result as snapshot `sync-N` (flushed, durable) and only then the database records sync N as complete
  (`sync_count`, `synced_seq`, `timeLastSynced` = when the source snapshot was taken). A crash anywhere before that
  commit makes the job redo sync N; nothing ever reports a sync point whose data is not all there.
- A scheduler (one thread per region) enqueues the next sync when `next_sync_at` (sync point + interval, on the
  domain clock) has passed: RPO <= interval + the time one sync takes.
- Activation (CreateVolume with sourceDetails blockVolumeReplica) copies snapshot `sync-N` of the last completed
  sync into a new volume with a new DEK under `kmsKeyId` or, by D4, the replica's key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, select

from blockvault import ids
from blockvault.blockstorage import jobs as jobmod
from blockvault.blockstorage.model import (
    ACTIVATING,
    AVAILABLE,
    FAULTY,
    GIB,
    PROVISIONING,
    TERMINATED,
    TERMINATING,
    Job,
    Volume,
)
from blockvault.blockstorage.regions import (
    InProcessRegionClient,
    RegionClient,
    ReplicaInfo,
    ReplicaSpec,
    ReplicaSyncPoint,
)
from blockvault.clock import Clock
from blockvault.db import tables
from blockvault.db.engine import reading
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
from blockvault.store.volume import UNIT_SIZE, SnapshotReader, VolumeStore, destroy
from blockvault.vault.lifecycle import DELETED
from blockvault.vault.model import WrappedDek

if TYPE_CHECKING:
    from blockvault.blockstorage.service import BlockStorageService

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 60.0  # sync cadence: RPO <= interval + one sync's duration (replication.md, RPO)
# Units per read_replica_units call: 64 x 64 KiB = 4 MiB of plaintext in flight, one HTTP request's worth later.
BATCH_UNITS = 64
TICK_SECONDS = 0.5  # how often the scheduler looks for due syncs (real time)
SOURCE_SNAPSHOT_PREFIX = "replica-"
FIELD = {"volume": "blockVolumeReplicas", "bootvolume": "bootVolumeReplicas"}
OCID_TYPE = {"volume": "blockvolumereplica", "bootvolume": "bootvolumereplica"}
SOURCE_TYPE = {"volume": "blockVolumeReplica", "bootvolume": "bootVolumeReplica"}


@dataclass
class Replica:
    """A block or boot volume replica, as its destination region records it."""

    id: str
    kind: str
    compartment_id: str
    availability_domain: str
    display_name: str
    source_region: str
    source_volume_id: str
    size_gb: int
    state: str
    kms_key_id: str | None
    key_version_id: str
    wrapped_dek: bytes
    time_created: datetime
    next_sync_at: datetime
    sync_count: int = 0
    synced_seq: int = 0
    bytes_transferred: int = 0
    activating_volume_id: str | None = None
    faulty_reason: str | None = None
    time_last_synced: datetime | None = None
    freeform_tags: dict[str, str] = field(default_factory=dict)
    defined_tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    volume_group_replica_id: str | None = None  # a member of a group replica: only the group's sync syncs it

    @property
    def wrapped(self) -> WrappedDek:
        return WrappedDek(self.kms_key_id, self.key_version_id, self.wrapped_dek)

    @property
    def size_bytes(self) -> int:
        return self.size_gb * GIB

    def dek_context(self) -> dict[str, str]:
        return {"resource": self.id, "purpose": f"{self.kind}replica"}


@dataclass
class ReplicaLink:
    """The source region's record of one replica of one of its volumes."""

    id: str
    volume_id: str
    region: str
    availability_domain: str
    display_name: str
    kms_key_id: str | None
    time_created: datetime
    volume_group_replica_id: str | None = None  # set: replicating through a volume group replica (R5.20)


# --- pure helpers ------------------------------------------------------------------------------------------------


def parse_replica_details(value: Any, field_name: str) -> list[dict[str, str]]:
    """Validate `blockVolumeReplicas` / `bootVolumeReplicas` (BlockVolumeReplicaDetails[]): a list of at most one
    {availabilityDomain (required), displayName?, xrrKmsKeyId?}; OCI replicates to one destination (R5.1)."""
    if not isinstance(value, list):
        raise InvalidArgument(field=field_name, reason="must be a list")
    if len(value) > 1:
        raise InvalidArgument(field=field_name, reason="a volume replicates to one destination; give at most one")
    out: list[dict[str, str]] = []
    for item in value:
        if not isinstance(item, dict):
            raise InvalidArgument(field=field_name, reason="each entry must be an object")
        ad = item.get("availabilityDomain")
        if not ad:
            raise MissingParameter(field=f"{field_name}[0].availabilityDomain")
        entry = {"availabilityDomain": ad}
        for name in ("availabilityDomain", "displayName", "xrrKmsKeyId"):
            got = item.get(name)
            if got is not None and not isinstance(got, str):
                raise InvalidArgument(field=f"{field_name}[0].{name}", reason="must be a string")
            if got:
                entry[name] = got
        out.append(entry)
    return out


def changed_units(units: Sequence[tuple[int, int]], synced_seq: int) -> list[int]:
    """Units a sync must ship: those written after the last completed sync (a unit's seq is the volume's write
    counter when it was written, and the sync point recorded the counter at its snapshot)."""
    return [index for index, seq in units if seq > synced_seq]


def batches(items: Sequence[int], size: int) -> Iterator[list[int]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def sync_snapshot(generation: int) -> str:
    """The replica store's snapshot holding completed sync `generation` (what activation reads)."""
    return f"sync-{generation}"


def source_snapshot(replica_id: str, generation: int) -> str:
    """The source volume's snapshot taken for sync `generation` of a replica (dropped when the sync ends)."""
    return f"{SOURCE_SNAPSHOT_PREFIX}{replica_id}-{generation}"


def next_sync_time(sync_point: datetime, interval_seconds: float) -> datetime:
    """Syncs start one interval after the previous sync point (back to back when a sync outlasts the interval)."""
    return sync_point + timedelta(seconds=interval_seconds)


def same_ad(a: str, b: str) -> bool:
    return a.lower() == b.lower() or a.upper().split(":")[-1] == b.upper().split(":")[-1]


# --- the service -------------------------------------------------------------------------------------------------


class ReplicationService:
    """Replication of one region's Block Volume service, both as a source and as a destination.

    Concurrency: one SyncReplica job per replica at a time (the scheduler enqueues only when none is pending), and
    it alone opens the replica store for writing; activation reads a frozen snapshot of it (SnapshotReaders take no
    lock). State changes of a replica are compare-and-set on its row.
    """

    def __init__(
        self,
        service: BlockStorageService,
        *,
        engine: Engine,
        clock: Clock,
        runner: jobmod.JobRunner,
        random: Callable[[int], bytes],
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        self._svc, self._engine, self._clock, self._runner, self._random = service, engine, clock, runner, random
        self.interval_seconds = interval_seconds
        self.replicas = TableRepo(engine, tables.volume_replicas, Replica)
        self.links = TableRepo(engine, tables.replica_links, ReplicaLink)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        runner.register("SyncReplica", self._job_sync, self._fail_sync)
        runner.register("DeleteReplica", self._job_delete, self._fail_delete)
        runner.register("ActivateReplica", self._job_activate, self._fail_activate)
        service.vault.subscribe(self._on_key_change)
        # Volume group replicas (group_replication.py): members are replicas of this service, synced together.
        from blockvault.blockstorage.group_replication import GroupReplicationService

        self.group_replicas = GroupReplicationService(
            self, service, engine=engine, clock=clock, runner=runner, random=random
        )

    # --- plumbing ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler thread (serve does; unit tests call `tick()` themselves)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"replication-{self._svc.region.key}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.tick()
            except Exception:
                log.exception("replication scheduler of %s failed", self._svc.region.name)

    def tick(self) -> list[str]:
        """Enqueue a sync for every replica whose next sync is due and that has none pending; returns their ids."""
        now = self._clock.now()
        due = [
            r
            for r in self.replicas.find(
                tables.volume_replicas.c.state.in_([PROVISIONING, AVAILABLE]),
                tables.volume_replicas.c.volume_group_replica_id.is_(None),  # members sync with their group
            )
            if r.next_sync_at <= now
        ]
        group_enqueued = self.group_replicas.tick(now)
        if not due:
            return group_enqueued
        pending = self._pending_syncs()
        enqueued: list[str] = []
        for replica in due:
            if replica.id in pending:
                continue
            job = self._runner.new(
                "SyncReplica", replica.id, replica.compartment_id, {"generation": replica.sync_count + 1}
            )
            self._runner.repo.insert(job)
            enqueued.append(replica.id)
        if enqueued:
            self._runner.wake()
        return enqueued + group_enqueued

    def _pending_syncs(self, operation: str = "SyncReplica") -> set[str]:
        stmt = select(tables.jobs.c.resource_id).where(
            tables.jobs.c.operation == operation,
            tables.jobs.c.state.in_([jobmod.ACCEPTED, jobmod.IN_PROGRESS]),
        )
        with reading(self._engine) as conn:
            return {r.resource_id for r in conn.execute(stmt)}

    def client(self, region: str) -> RegionClient:
        return self._client(region)

    def pending(self, operation: str) -> set[str]:
        return self._pending_syncs(operation)

    def _client(self, region: str) -> RegionClient:
        if region == self._svc.region.name:
            return InProcessRegionClient(self._svc)
        peer = self._svc.peers.get(region)
        if peer is None:
            raise Conflict(kind="region", ident=region, reason="this blockvault does not serve it")
        return peer

    def _clients(self) -> list[RegionClient]:
        return [InProcessRegionClient(self._svc), *self._svc.peers.values()]

    def replica_dir(self, replica: Replica) -> Path:
        ad = replica.availability_domain.split(":")[-1]
        return self._svc.region.root / "ads" / ad / "replicas" / replica.id

    def get_replica(self, kind: str, replica_id: str) -> Replica:
        replica = self.replicas.get(replica_id)
        if replica is None or replica.kind != kind:
            raise NotFound(kind=OCID_TYPE[kind], ident=replica_id)
        return replica

    def list_replicas(
        self,
        kind: str,
        compartment_id: str | None,
        ad: str | None,
        state: str | None,
        display_name: str | None,
        volume_group_replica_id: str | None = None,
    ) -> list[Replica]:
        c = tables.volume_replicas.c
        cond = [c.kind == kind]
        for column, value in (
            ("compartment_id", compartment_id),
            ("availability_domain", ad),
            ("state", state),
            ("display_name", display_name),
            ("volume_group_replica_id", volume_group_replica_id),
        ):
            if value:
                cond.append(c[column] == value)
        return self.replicas.find(*cond, order_by=[c.time_created, c.id])

    def links_of(self, volume_id: str) -> list[ReplicaLink]:
        return self.links.find(tables.replica_links.c.volume_id == volume_id, order_by=[tables.replica_links.c.id])

    def links_of_many(self, volume_ids: Sequence[str]) -> dict[str, list[ReplicaLink]]:
        out: dict[str, list[ReplicaLink]] = {}
        if volume_ids:
            for link in self.links.find(tables.replica_links.c.volume_id.in_(list(volume_ids))):
                out.setdefault(link.volume_id, []).append(link)
        return out

    def destination_region(self, ad: str) -> str | None:
        """The region (this one or a peer) that has availability domain `ad`, or None."""
        for client in self._clients():
            if any(same_ad(ad, name) for name in client.availability_domains()):
                return client.region
        return None

    # --- source side: turning replication on and off ----------------------------------------------------------

    def set_replicas(self, volume: Volume, entries: list[dict[str, str]]) -> None:
        """UpdateVolume's `blockVolumeReplicas`: the complete desired list. [] turns replication off (and deletes the
        replica, R5.4/R5.8); a different destination while one exists must go through off first (R5.9)."""
        current = self.links_of(volume.id)
        managed = [link for link in current if link.volume_group_replica_id]
        if managed:
            link = managed[0]
            unchanged = len(entries) == 1 and same_ad(link.availability_domain, entries[0]["availabilityDomain"])
            if not unchanged:
                raise Conflict(
                    kind=volume.kind,
                    ident=volume.id,
                    reason=f"it replicates through volume group replica {link.volume_group_replica_id}; while its "
                    "volume group replicates, a member's own replication settings cannot be edited (R5.20): change "
                    "the group's volumeGroupReplicas or take the volume out of the group",
                )
            return
        if not entries:
            self.disable(volume)
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
                field=FIELD[volume.kind],
                reason="the volume already replicates to "
                f"{link.availability_domain}; to change the destination or its key, turn replication off with [] "
                "(which deletes the replica) and on again (R5.9)",
            )
        self.enable(volume, wanted)

    def enable(self, volume: Volume, entry: dict[str, str]) -> ReplicaInfo:
        """Create the replica in its destination (which validates the key there) and record the link here."""
        field_name = FIELD[volume.kind]
        ad = entry["availabilityDomain"]
        region = self.destination_region(ad)
        if region is None:
            raise InvalidArgument(
                field=f"{field_name}[0].availabilityDomain",
                reason=f"{ad!r} is not an availability domain of any region this blockvault serves",
            )
        if region == self._svc.region.name and same_ad(ad, volume.availability_domain):
            raise InvalidArgument(
                field=f"{field_name}[0].availabilityDomain",
                reason="a replica goes to another availability domain or another region than its volume (R5.1)",
            )
        self._svc.vault.require_usable(volume.kms_key_id)  # D1: replicating reads the source's data
        spec = ReplicaSpec(
            kind=volume.kind,
            source_region=self._svc.region.name,
            source_volume_id=volume.id,
            compartment_id=volume.compartment_id,
            availability_domain=ad,
            display_name=entry.get("displayName") or f"{volume.display_name}-replica",
            kms_key_id=entry.get("xrrKmsKeyId") or "",
            size_gb=volume.size_gb,
            freeform_tags=json.dumps(volume.freeform_tags, sort_keys=True),  # R5.7: tags are copied
            defined_tags=json.dumps(volume.defined_tags, sort_keys=True),
        )
        client = self._client(region)
        info = client.create_replica(spec)
        link = ReplicaLink(
            id=info.id,
            volume_id=volume.id,
            region=info.region,
            availability_domain=info.availability_domain,
            display_name=info.display_name,
            kms_key_id=info.kms_key_id or None,
            time_created=self._clock.now(),
        )
        try:
            self.links.insert(link)
        except BaseException:
            client.delete_replica(volume.kind, info.id)
            raise
        return info

    def disable(self, volume: Volume) -> None:
        """Turn replication off: terminate each replica in its region, forget the links, drop sync snapshots."""
        for link in self.links_of(volume.id):
            with contextlib.suppress(NotFound):
                self._client(link.region).delete_replica(volume.kind, link.id)
            with self._engine.begin() as conn:
                conn.execute(delete(tables.replica_links).where(tables.replica_links.c.id == link.id))
            self.end_sync(volume.kind, volume.id, link.id)

    def check_resizable(self, volume: Volume) -> None:
        """R5.4: a replicating volume cannot be resized; turn replication off ([]), resize, turn it on again."""
        links = self.links_of(volume.id)
        if links:
            raise Conflict(
                kind=volume.kind,
                ident=volume.id,
                reason=f"it replicates to {links[0].availability_domain} (replica {links[0].id}); a volume with "
                f"replication enabled cannot be resized: set {FIELD[volume.kind]} to [] first (R5.4)",
            )

    # --- source side: what a destination's sync job asks -------------------------------------------------------

    def _source_volume(self, kind: str, volume_id: str, replica_id: str) -> Volume:
        link = self.links.get(replica_id)
        if link is None or link.volume_id != volume_id:
            raise NotFound(kind=OCID_TYPE[kind], ident=replica_id)
        volume = self._svc.get_volume(kind, volume_id)
        if volume.state == PROVISIONING or not volume.is_hydrated:
            raise IncorrectState(kind=kind, ident=volume_id, state=volume.state, allowed=[AVAILABLE])
        if volume.state != AVAILABLE:
            raise Conflict(kind=kind, ident=volume_id, reason=f"it is {volume.state}; replication needs AVAILABLE")
        return volume

    def begin_sync(self, kind: str, volume_id: str, replica_id: str, generation: int) -> ReplicaSyncPoint:
        volume = self._source_volume(kind, volume_id, replica_id)
        name = source_snapshot(replica_id, generation)
        prefix = source_snapshot(replica_id, 0)[:-1]
        with self._svc.leased(volume) as store:  # D1: KeyUnusable if the source's key is not ENABLED
            for old in store.snapshots():
                if old.startswith(prefix):
                    store.delete_snapshot(old)  # a crashed attempt's: take a fresh one (its time is the RPO point)
            store.snapshot(name)
            taken = self._clock.now()
        dek = self._svc.vault.unwrap(volume.wrapped, volume.dek_context())
        with SnapshotReader.open(self._svc.volume_dir(volume), name=name, volume_id=volume.id, dek=dek) as reader:
            units = tuple(reader.units())
            seq, size = reader.seq, reader.size
        return ReplicaSyncPoint(volume.id, name, seq, size, taken.isoformat(), units)

    def read_units(self, kind: str, volume_id: str, snapshot: str, units: tuple[int, ...]) -> tuple[bytes, ...]:
        if not snapshot.startswith(SOURCE_SNAPSHOT_PREFIX):
            raise InvalidArgument(field="snapshot", reason="not a replication snapshot")
        volume = self._svc.get_volume(kind, volume_id)
        dek = self._svc.vault.unwrap(volume.wrapped, volume.dek_context())  # D1, per batch
        with SnapshotReader.open(self._svc.volume_dir(volume), name=snapshot, volume_id=volume.id, dek=dek) as reader:
            return tuple(reader.read_unit(index) for index in units)

    def end_sync(self, kind: str, volume_id: str, replica_id: str) -> None:
        volume = self._svc.volumes.get(volume_id)
        if volume is None or volume.kind != kind or volume.state in (TERMINATED, PROVISIONING):
            return
        prefix = source_snapshot(replica_id, 0)[:-1]
        try:
            with self._svc.leased(volume) as store:
                for name in store.snapshots():
                    if name.startswith(prefix):
                        store.delete_snapshot(name)
        except (KeyUnusable, Conflict, IncorrectState, NotFound) as exc:
            log.warning("replication snapshots of %s for %s left for later: %s", volume_id, replica_id, exc)

    # --- destination side: the replica resource ---------------------------------------------------------------

    def create_replica(self, spec: ReplicaSpec) -> ReplicaInfo:
        """Validate the destination key and AD, then record the replica (PROVISIONING), its DEK and its first sync
        in one transaction. The key is one of THIS region (D13, R5.14-R5.16): malformed, another region's, absent,
        not AES or not ENABLED give the usual errors, naming `xrrKmsKeyId`; none = this region's provider key."""
        replica = self.new_replica(spec)
        job = self._runner.new("SyncReplica", replica.id, replica.compartment_id, {"generation": 1})
        with self._engine.begin() as conn:
            self.replicas.insert(replica, conn)
            self._runner.repo.insert(job, conn)
        self._runner.wake()
        return ReplicaInfo(
            replica.id,
            self._svc.region.name,
            replica.availability_domain,
            replica.display_name,
            replica.kms_key_id or "",
        )

    def new_replica(self, spec: ReplicaSpec, volume_group_replica_id: str | None = None) -> Replica:
        """A replica row (PROVISIONING, not yet stored) with its own DEK, after the key and AD checks."""
        field_name = FIELD.get(spec.kind)
        if field_name is None:
            raise InvalidArgument(field="kind", reason=f"{spec.kind!r} has no replicas")
        ad = self._svc.check_ad(spec.availability_domain)
        key_id = spec.kms_key_id or None
        if key_id is not None:
            self._svc.vault.resolve_key(key_id, field="xrrKmsKeyId")
        now = self._clock.now()
        replica_id = ids.new(OCID_TYPE[spec.kind], self._svc.region.key, random=self._random)
        replica = Replica(
            id=replica_id,
            kind=spec.kind,
            compartment_id=spec.compartment_id,
            availability_domain=ad,
            display_name=spec.display_name,
            source_region=spec.source_region,
            source_volume_id=spec.source_volume_id,
            size_gb=spec.size_gb,
            state=PROVISIONING,
            kms_key_id=key_id,
            key_version_id="",
            wrapped_dek=b"",
            time_created=now,
            next_sync_at=now,
            freeform_tags=json.loads(spec.freeform_tags),
            defined_tags=json.loads(spec.defined_tags),
            volume_group_replica_id=volume_group_replica_id,
        )
        _, wrapped = self._svc.vault.new_dek(key_id, replica.dek_context())
        replica.key_version_id, replica.wrapped_dek = wrapped.key_version_id, wrapped.blob
        return replica

    def delete_replica(self, kind: str, replica_id: str) -> None:
        replica = self.replicas.get(replica_id)
        if replica is None or replica.kind != kind or replica.state in (TERMINATING, TERMINATED):
            return
        if replica.state == ACTIVATING:
            raise IncorrectState(kind=OCID_TYPE[kind], ident=replica_id, state=ACTIVATING, allowed=[AVAILABLE])
        job = self._runner.new("DeleteReplica", replica.id, replica.compartment_id)
        with self._engine.begin() as conn:
            self.replicas.save(replace(replica, state=TERMINATING), conn, expect={"state": replica.state})
            self._runner.repo.insert(job, conn)
        self._runner.wake()

    def _on_key_change(self, key_id: str, state: str) -> None:
        """D2: a destroyed key leaves the replicas only it protected FAULTY (D1 needs nothing: every use asks)."""
        if state != DELETED:
            return
        reason = f"key {key_id} was deleted; the replica's data is unrecoverable"
        with self._engine.begin() as conn:
            for replica in self.replicas.find(tables.volume_replicas.c.kms_key_id == key_id, conn=conn):
                if replica.state not in (TERMINATING, TERMINATED):
                    self.replicas.save(replace(replica, state=FAULTY, faulty_reason=reason), conn)

    # --- destination side: sync -------------------------------------------------------------------------------

    def _job_sync(self, job: Job, progress: Callable[[float], None]) -> None:
        try:
            self._sync(job, progress)
        except Unavailable as exc:
            # The source's process is unreachable (regions.md, "Failure behaviour"): its repeatable calls already
            # retried for 120 s. Park and retry, as on KeyUnusable, rather than make the replica FAULTY for good;
            # it keeps its last sync point meanwhile and the redone sync starts from a fresh source snapshot.
            raise IncorrectState(
                kind="replica", ident=job.resource_id, state="SOURCE_UNAVAILABLE", allowed=[AVAILABLE]
            ) from exc

    def _sync(self, job: Job, progress: Callable[[float], None]) -> None:
        replica = self.replicas.get(job.resource_id)
        if replica is None or replica.state not in (PROVISIONING, AVAILABLE, ACTIVATING):
            return
        generation = int(job.payload["generation"])
        if replica.sync_count >= generation:  # a crash after the commit: only the clean-up is left
            self._after_sync(replica)
            return
        if replica.volume_group_replica_id:
            return  # it became a member of a group replica meanwhile: the group's sync syncs it
        if replica.state == ACTIVATING:
            # Activation reads sync-N, which this sync would replace: wait for it (parks, retried shortly).
            raise IncorrectState(kind=OCID_TYPE[replica.kind], ident=replica.id, state=ACTIVATING, allowed=[AVAILABLE])
        dek = self._svc.vault.unwrap(replica.wrapped, replica.dek_context())  # D1 on the destination key: park
        client = self._client(replica.source_region)
        try:
            point = client.begin_replica_sync(replica.kind, replica.source_volume_id, replica.id, generation)
        except NotFound:
            return  # replication was turned off at the source: the DeleteReplica job ends this replica
        except KeyUnusable:
            raise  # D1 on the source key: park, retry
        except Conflict as exc:
            # The source cannot be read for good (FAULTY, e.g. its key was deleted, D2): the replica keeps its last
            # sync point, still activatable under its own key; try again one interval later.
            log.warning("sync %d of %s skipped: %s", generation, replica.id, exc)
            later = replace(replica, next_sync_at=next_sync_time(self._clock.now(), self.interval_seconds))
            with contextlib.suppress(Conflict):
                self.replicas.save(later, expect={"state": replica.state, "sync_count": replica.sync_count})
            return
        shipped = self.ship(replica, dek, client, point, generation, progress)
        if shipped is None:
            return
        taken = datetime.fromisoformat(point.taken_at)
        current = self.replicas.get(replica.id)
        if current is None or current.state in (TERMINATING, TERMINATED, FAULTY):
            client.end_replica_sync(replica.kind, replica.source_volume_id, replica.id)
            return
        if current.state != replica.state or current.sync_count != generation - 1:
            raise IncorrectState(
                kind=OCID_TYPE[replica.kind], ident=replica.id, state=current.state, allowed=[AVAILABLE]
            )
        done = replace(
            current,
            state=AVAILABLE if current.state == PROVISIONING else current.state,
            sync_count=generation,
            synced_seq=point.seq,
            time_last_synced=taken,
            bytes_transferred=current.bytes_transferred + shipped,
            next_sync_at=next_sync_time(taken, self.interval_seconds),
        )
        try:
            self.replicas.save(done, expect={"state": current.state, "sync_count": generation - 1})
        except Conflict as exc:  # an activation or a delete won the race: redo or drop, decided on the next run
            raise IncorrectState(
                kind=OCID_TYPE[replica.kind], ident=replica.id, state="CHANGED", allowed=[AVAILABLE]
            ) from exc
        self._after_sync(done)

    def ship(
        self,
        replica: Replica,
        dek: bytes,
        client: RegionClient,
        point: ReplicaSyncPoint,
        generation: int,
        progress: Callable[[float], None],
    ) -> int | None:
        """Steps 3-4 of a sync: copy the units changed since the last completed sync into the replica store and
        freeze them as `sync-<generation>` (durable). Returns the bytes shipped, or None if the replica went away."""
        directory = self.replica_dir(replica)
        if not (directory / "map.db").exists():
            shutil.rmtree(directory, ignore_errors=True)
            VolumeStore.create(directory, volume_id=replica.id, size_bytes=replica.size_bytes, dek=dek).close()
        name = sync_snapshot(generation)
        todo = changed_units(point.units, replica.synced_seq)
        shipped = 0
        store = VolumeStore.open(directory, volume_id=replica.id, dek=dek)
        try:
            if name in store.snapshots():
                store.delete_snapshot(name)  # an attempt that crashed before its commit: redo it
            for n, batch in enumerate(batches(todo, BATCH_UNITS)):
                if n % 4 == 0:
                    self._svc.vault.require_usable(replica.kms_key_id)  # D1: stop within 16 MiB of a disable
                    current = self.replicas.get(replica.id)
                    if current is None or current.state in (TERMINATING, TERMINATED, FAULTY):
                        return None
                    progress(100.0 * n * BATCH_UNITS / max(len(todo), 1))
                data = client.read_replica_units(replica.kind, replica.source_volume_id, point.snapshot, tuple(batch))
                for index, plaintext in zip(batch, data, strict=True):
                    store.write(index * UNIT_SIZE, plaintext)
                shipped += len(batch) * UNIT_SIZE
            store.snapshot(name)  # flush + freeze: the sync point is durable before the database says so
        finally:
            store.close()
        return shipped

    def after_sync(self, replica: Replica) -> None:
        self._after_sync(replica)

    def _after_sync(self, replica: Replica) -> None:
        """Drop what the completed sync made obsolete: older sync snapshots here, the sync snapshot at the source."""
        try:
            dek = self._svc.vault.unwrap(replica.wrapped, replica.dek_context())
            keep = sync_snapshot(replica.sync_count)
            with VolumeStore.open(self.replica_dir(replica), volume_id=replica.id, dek=dek) as store:
                for name in store.snapshots():
                    if name != keep:
                        store.delete_snapshot(name)
            self._client(replica.source_region).end_replica_sync(replica.kind, replica.source_volume_id, replica.id)
        except (KeyUnusable, Conflict, IncorrectState, NotFound) as exc:
            log.warning("clean-up after sync %d of %s left for later: %s", replica.sync_count, replica.id, exc)

    def _fail_sync(self, job: Job, reason: str) -> None:
        replica = self.replicas.get(job.resource_id)
        if replica is not None and replica.state in (PROVISIONING, AVAILABLE):
            self.replicas.save(replace(replica, state=FAULTY, faulty_reason=reason))

    def _job_delete(self, job: Job, progress: Callable[[float], None]) -> None:
        replica = self.replicas.get(job.resource_id)
        if replica is None or replica.state == TERMINATED:
            return
        try:
            destroy(self.replica_dir(replica))
        except Conflict as exc:  # its sync job still holds the store: it notices TERMINATING and lets go
            raise IncorrectState(
                kind=OCID_TYPE[replica.kind], ident=replica.id, state="SYNCING", allowed=["idle"]
            ) from exc
        self.replicas.save(replace(replica, state=TERMINATED), expect={"state": replica.state})

    def _fail_delete(self, job: Job, reason: str) -> None:
        replica = self.replicas.get(job.resource_id)
        if replica is not None and replica.state != TERMINATED:
            self.replicas.save(replace(replica, state=FAULTY, faulty_reason=reason))

    # --- destination side: activation (R5.11, R5.12, D4) ------------------------------------------------------

    def activate(
        self,
        kind: str,
        details: dict[str, Any],
        size_gb: int | None,
        replica_id: str | None,
        key_id: str | None,
        common: dict[str, Any],
    ) -> tuple[Volume, str]:
        """CreateVolume / CreateBootVolume from a replica: a new volume in the replica's AD holding the data of its
        last COMPLETED sync, under a new DEK wrapped by `kmsKeyId` or (D4) the replica's key. One at a time."""
        if not replica_id:
            raise MissingParameter(field="sourceDetails.id")
        ids.expect(replica_id, OCID_TYPE[kind], field="sourceDetails.id")
        replica = self.replicas.get(replica_id)
        if replica is None or replica.kind != kind or replica.state in (TERMINATING, TERMINATED):
            raise RelatedResourceNotFound(field="sourceDetails.id", ident=replica_id)
        if replica.state == ACTIVATING:
            raise Conflict(
                kind=OCID_TYPE[kind],
                ident=replica_id,
                reason=f"volume {replica.activating_volume_id} is being created from it; only one volume may be "
                "created from a replica at a time (R5.11)",
            )
        if replica.state == FAULTY:
            raise Conflict(kind=OCID_TYPE[kind], ident=replica_id, reason=replica.faulty_reason or "it is FAULTY")
        if replica.state == PROVISIONING or replica.sync_count == 0:
            raise IncorrectState(kind=OCID_TYPE[kind], ident=replica_id, state=replica.state, allowed=[AVAILABLE])
        ad = details.get("availabilityDomain")
        if ad and not same_ad(self._svc.check_ad(ad), replica.availability_domain):
            raise InvalidArgument(
                field="availabilityDomain",
                reason=f"a volume activated from a replica is in the replica's availability domain, "
                f"{replica.availability_domain} (R5.11)",
            )
        size = self._svc.check_size(kind, size_gb if size_gb is not None else replica.size_gb, replica.size_gb)
        self._svc.vault.require_usable(replica.kms_key_id)  # D1: the replica's data needs its key
        if key_id is not None:
            chosen: str | None = self._svc.vault.resolve_key(key_id).id
        else:
            chosen = replica.kms_key_id  # D4
            if chosen is not None:
                self._svc.vault.resolve_key(chosen)
        volume, _ = self._svc.new_volume(
            kind, replica.availability_domain, size, chosen, common, source_type=SOURCE_TYPE[kind], source_id=replica.id
        )
        volume.is_hydrated = False
        job = self._runner.new(
            "ActivateReplica",
            volume.id,
            volume.compartment_id,
            {"replicaId": replica.id, "generation": replica.sync_count},
        )
        entries = self._svc.replica_entries(kind, details)
        if entries:
            self.enable(volume, entries[0])  # failback (R5.13): the new volume replicates at once
        try:
            with self._engine.begin() as conn:
                self.replicas.save(
                    replace(replica, state=ACTIVATING, activating_volume_id=volume.id),
                    conn,
                    expect={"state": AVAILABLE, "sync_count": replica.sync_count},
                )
                self._svc.volumes.insert(volume, conn)
                self._runner.repo.insert(job, conn)
        except BaseException:
            if entries:
                self.disable(volume)
            raise
        self._runner.wake()
        return volume, job.id

    def _job_activate(self, job: Job, progress: Callable[[float], None]) -> None:
        volume = self._svc.volumes.get(job.resource_id)
        if volume is None or volume.state != PROVISIONING:
            return
        replica = self.replicas.get(str(job.payload["replicaId"]))
        if replica is None or replica.state in (TERMINATING, TERMINATED):
            raise Conflict(kind="replica", ident=str(job.payload["replicaId"]), reason="it is gone")
        replica_dek = self._svc.vault.unwrap(replica.wrapped, replica.dek_context())  # D1: park
        dek = self._svc.vault.unwrap(volume.wrapped, volume.dek_context())
        directory = self._svc.volume_dir(volume)
        destroy(directory)  # a crashed attempt restarts from nothing
        store = VolumeStore.create(directory, volume_id=volume.id, size_bytes=volume.size_bytes, dek=dek)
        try:
            with SnapshotReader.open(
                self.replica_dir(replica),
                name=sync_snapshot(int(job.payload["generation"])),
                volume_id=replica.id,
                dek=replica_dek,
            ) as reader:
                units = reader.units()
                for n, (index, _seq) in enumerate(units):
                    if n % 256 == 0:
                        self._svc.vault.require_usable(replica.kms_key_id)
                        self._svc.vault.require_usable(volume.kms_key_id)
                        progress(100.0 * n / max(len(units), 1))
                    store.write(index * UNIT_SIZE, reader.read_unit(index))
            store.flush()
        finally:
            store.close()
        with self._engine.begin() as conn:
            self._svc.volumes.save(
                replace(volume, state=AVAILABLE, is_hydrated=True), conn, expect={"state": PROVISIONING}
            )
            self._release_activation(replica.id, conn)

    def _release_activation(self, replica_id: str, conn: Any = None) -> None:
        current = self.replicas.get(replica_id, conn)
        if current is not None and current.state == ACTIVATING:
            self.replicas.save(replace(current, state=AVAILABLE, activating_volume_id=None), conn)

    def _fail_activate(self, job: Job, reason: str) -> None:
        volume = self._svc.volumes.get(job.resource_id)
        if volume is not None and volume.state != TERMINATED:
            self._svc.volumes.save(replace(volume, state=FAULTY, faulty_reason=reason))
        self._release_activation(str(job.payload.get("replicaId", "")))


__all__ = [
    "ACTIVATING",
    "DEFAULT_INTERVAL_SECONDS",
    "Replica",
    "ReplicaLink",
    "ReplicationService",
    "batches",
    "changed_units",
    "next_sync_time",
    "parse_replica_details",
    "same_ad",
]
