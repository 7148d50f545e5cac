"""Block Volume control plane of one region: volumes, boot volumes, backups, clones, restores, key changes.

Key rules (oci-behaviour.md Part A and B):
- every volume, boot volume and backup has its own DEK, wrapped by its key or the region's provider key (R1.6);
- a backup inherits the volume's key (S3/R3.14); a clone keeps the source's key unless told otherwise (D3);
  a restore without kmsKeyId gets the provider key (R3.18); clones and restores get a new DEK (R1.8);
- a key change re-wraps the DEK in one compare-and-set of the metadata row, never touching data (R1.9, D9);
- a key that is not ENABLED stops every operation that needs the DEK with KeyUnusable (D1), and a destroyed key
  leaves what only it protected FAULTY (D2).
- replication (blockstorage/replication.py, docs/design/replication.md): `blockVolumeReplicas` on create/update
  creates the replica in its destination region; a replicating volume cannot be resized (R5.4); activation
  (sourceDetails blockVolumeReplica) makes a volume of the replica's last completed sync under a new DEK (D4).
Concurrency: open stores are leased; a key state change drops every idle store (and its plaintext DEK) at once and
the busy ones as soon as their current operation ends.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, select

from blockvault import ids
from blockvault.backup import engine as backup_engine
from blockvault.backup.objectstore.base import ObjectStore
from blockvault.blockstorage import jobs as jobmod
from blockvault.blockstorage.attachments import AttachmentService
from blockvault.blockstorage.model import (
    AVAILABLE,
    CREATING,
    FAULTY,
    GIB,
    PROVISIONING,
    TERMINATED,
    TERMINATING,
    Backup,
    Job,
    Volume,
)
from blockvault.blockstorage.regions import BackupInfo, ExportSource, LocalBackupExport, RegionClient
from blockvault.blockstorage.replication import DEFAULT_INTERVAL_SECONDS, ReplicationService, parse_replica_details
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
)
from blockvault.store.volume import UNIT_SIZE, SnapshotReader, VolumeStore, destroy
from blockvault.vault.lifecycle import DELETED
from blockvault.vault.model import WrappedDek
from blockvault.vault.service import VaultService

log = logging.getLogger(__name__)

MIN_SIZE_GB = 50  # R1.22 (block volumes) and R1.21 (boot volumes)
MAX_SIZE_GB = 32768
DEFAULT_SIZE_GB = {"volume": 1024, "bootvolume": 50}
VPUS = (0, 10, 20, *range(30, 121, 10))


class NotImplementedYet(InvalidArgument):
    """An OCI feature that a later blockvault release brings; answered with 501 so the CLI does not retry."""

    message = "{feature} is not available in this blockvault release yet"


@dataclass(frozen=True)
class Region:
    name: str
    key: str
    availability_domains: tuple[str, ...]
    root: Path  # the region's storage root; one directory per AD below it


class _Lease:
    __slots__ = ("source", "stale", "store", "users")

    def __init__(self, store: VolumeStore, source: SnapshotReader | None) -> None:
        self.store, self.source, self.users, self.stale = store, source, 0, False


def _equal(table: Any, **filters: str | None) -> list[Any]:
    """List filters: column == value for every filter given (None or empty: no filter)."""
    return [table.c[column] == value for column, value in filters.items() if value]


class BlockStorageService:
    def __init__(
        self,
        *,
        engine: Engine,
        vault: VaultService,
        objects: ObjectStore,
        region: Region,
        clock: Clock,
        runner: jobmod.JobRunner,
        compartment_exists: Callable[[str], bool],
        random: Callable[[int], bytes] = os.urandom,
        replication_interval: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        self.region, self.vault, self.objects, self.runner = region, vault, objects, runner
        self._engine, self._clock, self._random = engine, clock, random
        self._compartment_exists = compartment_exists
        self.peers: dict[str, RegionClient] = {}  # the other regions this process serves (connect_regions)
        self.volumes = TableRepo(engine, tables.volumes, Volume)
        self.backups = TableRepo(engine, tables.backups, Backup)
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._opening: dict[str, threading.Lock] = {}
        # Bumped on every change that can make a data session's cached checks stale (key state, a volume's key,
        # a detach): sessions re-validate only when it moved (blockstorage/attachments.py).
        self._generation = 0
        self.attachments = AttachmentService(self, random=random)
        vault.subscribe(self._on_key_change)
        for op, handler, on_fail in (
            ("CreateVolume", self._job_create, self._fail_volume),
            ("CloneVolume", self._job_hydrate, self._fail_volume),
            ("RestoreVolume", self._job_restore, self._fail_volume),
            ("DeleteVolume", self._job_delete_volume, self._fail_volume),
            ("CreateBackup", self._job_backup, self._fail_backup),
            ("DeleteBackup", self._job_delete_backup, self._fail_backup),
            ("CopyBackup", self._job_copy, self._fail_backup),
        ):
            runner.register(op, handler, on_fail)
        # Volume replication (blockstorage/replication.py): replicas, their sync jobs and activation.
        self.replication = ReplicationService(
            self, engine=engine, clock=clock, runner=runner, random=random, interval_seconds=replication_interval
        )

    # --- helpers ----------------------------------------------------------------------------------------------

    def volume_dir(self, volume: Volume) -> Path:
        ad = volume.availability_domain.split(":")[-1]
        return self.region.root / "ads" / ad / "volumes" / volume.id

    def _ocid_type(self, kind: str) -> str:
        return kind  # "volume" / "bootvolume" are the OCID types too

    def get_volume(self, kind: str, volume_id: str) -> Volume:
        volume = self.volumes.get(volume_id)
        if volume is None or volume.kind != kind:
            raise NotFound(kind=kind, ident=volume_id)
        return volume

    def get_backup(self, kind: str, backup_id: str) -> Backup:
        backup = self.backups.get(backup_id)
        if backup is None or backup.kind != kind:
            raise NotFound(kind=f"{kind} backup", ident=backup_id)
        return backup

    def _check_compartment(self, compartment_id: str) -> None:
        ids.parse(compartment_id, field="compartmentId")
        if not self._compartment_exists(compartment_id):
            raise RelatedResourceNotFound(field="compartmentId", ident=compartment_id)

    def _check_ad(self, ad: str | None) -> str:
        if not ad:
            raise InvalidArgument(field="availabilityDomain", reason="an availability domain is required")
        for name in self.region.availability_domains:
            if ad.lower() == name.lower() or ad.upper() == name.split(":")[-1]:
                return name
        raise InvalidArgument(
            field="availabilityDomain",
            reason=f"{ad!r} is not an availability domain of {self.region.name}: "
            f"{', '.join(self.region.availability_domains)}",
        )

    @staticmethod
    def _check_size(kind: str, size_gb: int | None, minimum: int) -> int:
        """R1.21/R1.22 bounds; `minimum` is the source's size for clones and restores (R3.21, R4.4)."""
        if size_gb is None:
            return max(DEFAULT_SIZE_GB[kind], minimum)
        if not isinstance(size_gb, int) or isinstance(size_gb, bool):
            raise InvalidArgument(field="sizeInGBs", reason="must be an integer")
        if size_gb < minimum:
            raise InvalidArgument(field="sizeInGBs", reason=f"must be at least the source's size, {minimum} GB")
        if not MIN_SIZE_GB <= size_gb <= MAX_SIZE_GB:
            raise InvalidArgument(field="sizeInGBs", reason=f"must be between {MIN_SIZE_GB} and {MAX_SIZE_GB} GB")
        return size_gb

    @staticmethod
    def _check_vpus(vpus: int | None) -> int:
        if vpus is None:
            return 10
        if vpus not in VPUS:
            raise InvalidArgument(field="vpusPerGB", reason="must be 0, 10, 20 or 30 to 120 in steps of 10")
        return vpus

    # Used by blockstorage/replication.py, which creates volumes and replicas with the same rules.
    def check_ad(self, ad: str | None) -> str:
        return self._check_ad(ad)

    def check_size(self, kind: str, size_gb: int | None, minimum: int) -> int:
        return self._check_size(kind, size_gb, minimum)

    def new_volume(
        self, kind: str, ad: str, size_gb: int, key_id: str | None, common: dict[str, Any], **extra: Any
    ) -> tuple[Volume, bytes]:
        return self._new_volume(kind, ad, size_gb, key_id, common, **extra)

    def leased(self, volume: Volume) -> Any:
        """The volume's open store, after checking its key is usable (D1): a context manager."""
        return self._using(volume)

    @staticmethod
    def replica_entries(kind: str, details: dict[str, Any]) -> list[dict[str, str]]:
        """The validated `blockVolumeReplicas` (volumes) / `bootVolumeReplicas` (boot volumes) of a request."""
        name = "blockVolumeReplicas" if kind == "volume" else "bootVolumeReplicas"
        value = details.get(name)
        return [] if value is None else parse_replica_details(value, name)

    def _resolve_key(self, key_id: str | None) -> str | None:
        if key_id is None:
            return None
        self.vault.resolve_key(key_id)
        return key_id

    def _enqueue(self, conn: Any, job: Job) -> None:
        self.runner.repo.insert(job, conn)

    # --- leases on open stores (the DEK cache) ----------------------------------------------------------------

    def _on_key_change(self, key_id: str, state: str) -> None:
        """D1: drop plaintext DEKs at once; D2: a destroyed key leaves what only it protected FAULTY."""
        self.bump_generation()  # first: a request starting after this returns re-checks the key (nbd.md K1)
        with self._cond:
            for volume_id, lease in list(self._leases.items()):
                lease.stale = True
                if lease.users == 0:
                    self._close(lease)
                    del self._leases[volume_id]
            self._cond.notify_all()
        if state == DELETED:
            reason = f"key {key_id} was deleted; the data it protected is unrecoverable"
            with self._engine.begin() as conn:
                for volume in self.volumes.find(tables.volumes.c.kms_key_id == key_id, conn=conn):
                    if volume.state != TERMINATED:
                        self.volumes.save(replace(volume, state=FAULTY, faulty_reason=reason), conn)
                for backup in self.backups.find(tables.backups.c.kms_key_id == key_id, conn=conn):
                    if backup.state != TERMINATED:
                        self.backups.save(replace(backup, state=FAULTY, faulty_reason=reason), conn)

    @property
    def generation(self) -> int:
        return self._generation

    def bump_generation(self) -> None:
        with self._lock:
            self._generation += 1

    @contextmanager
    def lease(self, volume: Volume) -> Iterator[VolumeStore]:
        """Like _using without asking the key state: for callers that validated it themselves (data sessions)."""
        lease = self._acquire(volume)
        try:
            yield lease.store
        finally:
            self._release(volume.id, lease)

    def has_clone_source(self, volume_id: str) -> bool:
        """Whether the volume's open store reads through to a clone source (units it lacks are not zeros)."""
        with self._lock:
            lease = self._leases.get(volume_id)
            return lease is not None and lease.source is not None

    @staticmethod
    def _close(lease: _Lease) -> None:
        lease.store.close()
        if lease.source is not None:
            lease.source.close()

    def _open(self, volume: Volume) -> _Lease:
        dek = self.vault.unwrap(volume.wrapped, volume.dek_context())
        source: SnapshotReader | None = None
        if volume.clone_snapshot is not None and volume.source_id is not None:
            src = self.volumes.get(volume.source_id)
            if src is None:
                raise Conflict(kind=volume.kind, ident=volume.id, reason="its clone source is gone")
            src_dek = self.vault.unwrap(src.wrapped, src.dek_context())
            source = SnapshotReader.open(
                self.volume_dir(src), name=volume.clone_snapshot, volume_id=src.id, dek=src_dek
            )
        store = VolumeStore.open(self.volume_dir(volume), volume_id=volume.id, dek=dek, source=source)
        return _Lease(store, source)

    @contextmanager
    def _using(self, volume: Volume) -> Iterator[VolumeStore]:
        """Lease the volume's open store. One store per volume at a time (the store holds an exclusive lock), so
        opens of one volume are serialized, and a lease made stale by a key change is closed before a new one opens.
        Leases must not nest for one volume in one thread."""
        # Ask the key's state on every use: a cached store must not outlive its key's ENABLED state.
        self.vault.require_usable(volume.kms_key_id)
        lease = self._acquire(volume)
        try:
            yield lease.store
        finally:
            self._release(volume.id, lease)

    def _acquire(self, volume: Volume) -> _Lease:
        with self._lock:
            opening = self._opening.setdefault(volume.id, threading.Lock())
        with opening:
            with self._cond:
                while True:
                    lease = self._leases.get(volume.id)
                    if lease is None:
                        break
                    if not lease.stale:
                        lease.users += 1
                        return lease
                    self._cond.wait(timeout=1.0)  # a stale lease closes when its last user leaves
            fresh = self._open(volume)  # slow: outside the global lock, inside this volume's opening lock
            with self._cond:
                fresh.users = 1
                self._leases[volume.id] = fresh
                return fresh

    def _release(self, volume_id: str, lease: _Lease) -> None:
        with self._cond:
            lease.users -= 1
            if lease.users == 0 and lease.stale:
                self._close(lease)
                if self._leases.get(volume_id) is lease:
                    del self._leases[volume_id]
                self._cond.notify_all()

    def _forget(self, volume_id: str) -> None:
        with self._cond:
            lease = self._leases.get(volume_id)
            if lease is not None:
                lease.stale = True
                if lease.users == 0:
                    self._close(lease)
                    del self._leases[volume_id]
                    self._cond.notify_all()

    def close(self) -> None:
        with self._lock:
            for lease in self._leases.values():
                self._close(lease)
            self._leases.clear()

    # --- volumes ----------------------------------------------------------------------------------------------

    def create_volume(self, kind: str, details: dict[str, Any]) -> tuple[Volume, str]:
        """CreateVolume / CreateBootVolume. Returns the volume (as stored) and the work request id."""
        source = details.get("sourceDetails")
        if source is None and details.get("volumeBackupId"):
            source = {"type": "volumeBackup", "id": details["volumeBackupId"]}  # deprecated alias
        self.replica_entries(kind, details)  # malformed replica details: 400 before anything else
        compartment_id = details.get("compartmentId")
        if not compartment_id:
            raise MissingParameter(field="compartmentId")
        self._check_compartment(compartment_id)
        vpus = self._check_vpus(details.get("vpusPerGB"))
        size_gb = details.get("sizeInGBs")
        if size_gb is None and details.get("sizeInMBs") is not None:
            size_gb = int(details["sizeInMBs"]) // 1024
        key_id = details.get("kmsKeyId")
        common = {
            "compartment_id": compartment_id,
            "display_name": details.get("displayName") or "",
            "vpus_per_gb": vpus,
            "freeform_tags": details.get("freeformTags") or {},
            "defined_tags": details.get("definedTags") or {},
        }
        if source is None:
            # An empty boot volume too: a blockvault extension (OCI makes the first one at instance launch).
            return self._create_empty(kind, details, size_gb, key_id, common)
        if not isinstance(source, dict) or "type" not in source:
            raise InvalidArgument(field="sourceDetails", reason="needs a type")
        stype = source["type"]
        source_id = source.get("id")
        if stype in ("volume", "bootVolume") and (stype == "volume") == (kind == "volume"):
            return self._create_clone(kind, details, size_gb, source_id, key_id, common)
        if stype in ("volumeBackup", "bootVolumeBackup") and (stype == "volumeBackup") == (kind == "volume"):
            return self._create_restore(kind, details, size_gb, source_id, key_id, common)
        replica_type = "blockVolumeReplica" if kind == "volume" else "bootVolumeReplica"
        if stype == replica_type:
            return self.replication.activate(kind, details, size_gb, source_id, key_id, common)
        if stype in ("volumeBackupDelta", "bootVolumeBackupDelta"):
            raise NotImplementedYet(feature="Delta restore (sourceDetails type volumeBackupDelta)")
        raise InvalidArgument(field="sourceDetails.type", reason=f"{stype!r} is not a valid source for a {kind}")

    def _new_volume(
        self, kind: str, ad: str, size_gb: int, key_id: str | None, common: dict[str, Any], **extra: Any
    ) -> tuple[Volume, bytes]:
        volume_id = ids.new(self._ocid_type(kind), self.region.key, random=self._random)
        context = {"resource": volume_id, "purpose": kind}
        dek, wrapped = self.vault.new_dek(key_id, context)
        volume = Volume(
            id=volume_id,
            kind=kind,
            availability_domain=ad,
            size_gb=size_gb,
            state=PROVISIONING,
            kms_key_id=wrapped.key_id,
            key_version_id=wrapped.key_version_id,
            wrapped_dek=wrapped.blob,
            is_hydrated=True,
            time_created=self._clock.now(),
            **common,
            **extra,
        )
        if not volume.display_name:
            volume.display_name = f"{kind}{volume.time_created:%Y%m%d%H%M%S}"
        return volume, dek

    def _insert_with_job(
        self,
        volume: Volume,
        operation: str,
        payload: dict[str, Any] | None = None,
        *,
        replicas: list[dict[str, str]] | None = None,
    ) -> str:
        """Record the volume and its job; with `replicas`, first create the replica in its destination (which
        checks its key there), so a refused replica leaves nothing behind."""
        job = self.runner.new(operation, volume.id, volume.compartment_id, payload)
        if replicas:
            self.replication.enable(volume, replicas[0])
        try:
            with self._engine.begin() as conn:
                self.volumes.insert(volume, conn)
                self._enqueue(conn, job)
        except BaseException:
            if replicas:
                self.replication.disable(volume)
            raise
        self.runner.wake()
        return job.id

    def _create_empty(
        self, kind: str, details: dict[str, Any], size_gb: int | None, key_id: str | None, common: dict[str, Any]
    ) -> tuple[Volume, str]:
        ad = self._check_ad(details.get("availabilityDomain"))
        size = self._check_size(kind, size_gb, 0)
        volume, _ = self._new_volume(kind, ad, size, self._resolve_key(key_id), common)
        return volume, self._insert_with_job(volume, "CreateVolume", replicas=self.replica_entries(kind, details))

    def _create_clone(
        self,
        kind: str,
        details: dict[str, Any],
        size_gb: int | None,
        source_id: str | None,
        key_id: str | None,
        common: dict[str, Any],
    ) -> tuple[Volume, str]:
        if not source_id:
            raise MissingParameter(field="sourceDetails.id")
        ids.expect(source_id, kind, field="sourceDetails.id")
        src = self.volumes.get(source_id)
        if src is None or src.kind != kind or src.state == TERMINATED:
            raise RelatedResourceNotFound(field="sourceDetails.id", ident=source_id)
        if src.state != AVAILABLE:
            raise Conflict(kind=kind, ident=source_id, reason=f"the source is {src.state}; cloning needs AVAILABLE")
        if not src.is_hydrated:
            raise IncorrectState(kind=kind, ident=source_id, state="hydrating", allowed=["hydrated"])
        ad = details.get("availabilityDomain")
        if ad and self._check_ad(ad) != src.availability_domain:
            raise InvalidArgument(
                field="availabilityDomain", reason="a clone must be in its source's availability domain (R4.2)"
            )
        size = self._check_size(kind, size_gb if size_gb is not None else src.size_gb, src.size_gb)
        self.vault.require_usable(src.kms_key_id)  # D1: reading the source needs its DEK
        chosen = self._resolve_key(key_id) if key_id is not None else src.kms_key_id  # D3
        if chosen is not None and key_id is None:
            self.vault.resolve_key(chosen)
        volume, _ = self._new_volume(
            kind,
            src.availability_domain,
            size,
            chosen,
            common,
            source_type=kind,
            source_id=src.id,
        )
        volume.is_hydrated = False
        volume.clone_snapshot = f"clone-{volume.id}"
        with self._using(src) as store:
            store.snapshot(volume.clone_snapshot)  # the point in time of the clone (R4.1)
        try:
            job_id = self._insert_with_job(volume, "CloneVolume", replicas=self.replica_entries(kind, details))
        except BaseException:
            with self._using(src) as store:
                store.delete_snapshot(volume.clone_snapshot)
            raise
        return volume, job_id

    def _create_restore(
        self,
        kind: str,
        details: dict[str, Any],
        size_gb: int | None,
        backup_id: str | None,
        key_id: str | None,
        common: dict[str, Any],
    ) -> tuple[Volume, str]:
        if not backup_id:
            raise MissingParameter(field="sourceDetails.id")
        ids.expect(backup_id, f"{kind}backup", field="sourceDetails.id")
        backup = self.backups.get(backup_id)
        if backup is None or backup.kind != kind or backup.state == TERMINATED:
            raise RelatedResourceNotFound(field="sourceDetails.id", ident=backup_id)
        if backup.state != AVAILABLE:
            raise Conflict(
                kind=f"{kind} backup", ident=backup_id, reason=f"it is {backup.state}; restore needs AVAILABLE"
            )
        ad = self._check_ad(details.get("availabilityDomain") or self.region.availability_domains[0])
        size = self._check_size(kind, size_gb if size_gb is not None else backup.size_gb, backup.size_gb)
        self.vault.require_usable(backup.kms_key_id)  # D1
        chosen = self._resolve_key(key_id)  # R3.18: no key named -> the provider-managed key
        volume, _ = self._new_volume(kind, ad, size, chosen, common, source_type=f"{kind}Backup", source_id=backup.id)
        volume.is_hydrated = False
        return volume, self._insert_with_job(
            volume, "RestoreVolume", {"backupId": backup.id}, replicas=self.replica_entries(kind, details)
        )

    def list_volumes(
        self, kind: str, compartment_id: str | None, ad: str | None, state: str | None, display_name: str | None
    ) -> list[Volume]:
        cond = _equal(
            tables.volumes,
            kind=kind,
            compartment_id=compartment_id,
            availability_domain=ad,
            state=state,
            display_name=display_name,
        )
        return self.volumes.find(*cond, order_by=[tables.volumes.c.time_created, tables.volumes.c.id])

    def update_volume(self, kind: str, volume_id: str, details: dict[str, Any]) -> Volume:
        volume = self.get_volume(kind, volume_id)
        field = "blockVolumeReplicas" if kind == "volume" else "bootVolumeReplicas"
        replicas = self.replica_entries(kind, details) if field in details else None
        self._require_available(volume)
        updated = replace(
            volume,
            display_name=details.get("displayName") or volume.display_name,
            freeform_tags=details.get("freeformTags", volume.freeform_tags),
            defined_tags=details.get("definedTags", volume.defined_tags),
            vpus_per_gb=self._check_vpus(details.get("vpusPerGB", volume.vpus_per_gb)),
        )
        new_size = details.get("sizeInGBs")
        if new_size is not None and new_size != volume.size_gb:
            if not isinstance(new_size, int) or new_size < volume.size_gb:
                raise InvalidArgument(field="sizeInGBs", reason=f"a volume can only grow (it is {volume.size_gb} GB)")
            self._check_size(kind, new_size, volume.size_gb)
            if not volume.is_hydrated:
                raise IncorrectState(kind=kind, ident=volume_id, state="hydrating", allowed=["hydrated"])
            self.replication.check_resizable(volume)  # R5.4 (replicas being turned on now come after the resize)
            with self._using(volume) as store:
                store.resize(new_size * GIB)
            updated.size_gb = new_size
        self.volumes.save(updated, expect={"state": volume.state, "size_gb": volume.size_gb})
        if replicas is not None:
            self.replication.set_replicas(updated, replicas)
        return updated

    def delete_volume(self, kind: str, volume_id: str) -> tuple[Volume, str]:
        volume = self.get_volume(kind, volume_id)
        if volume.state in (TERMINATING, TERMINATED):
            raise Conflict(kind=kind, ident=volume_id, reason=f"it is already {volume.state}")
        if volume.state == PROVISIONING:
            raise IncorrectState(kind=kind, ident=volume_id, state=volume.state, allowed=[AVAILABLE, FAULTY])
        busy = self.backups.find(
            tables.backups.c.volume_id == volume_id, tables.backups.c.state.in_([CREATING, "REQUEST_RECEIVED"])
        )
        if busy:
            # R3.5: not while a backup is in progress; it ends by itself, so this is transient.
            raise IncorrectState(kind=kind, ident=volume_id, state="BACKUP_IN_PROGRESS", allowed=[AVAILABLE])
        clones = self.volumes.find(
            tables.volumes.c.source_id == volume_id, tables.volumes.c.clone_snapshot.is_not(None)
        )
        if clones:
            raise IncorrectState(kind=kind, ident=volume_id, state="CLONE_HYDRATING", allowed=[AVAILABLE])
        if self.attachments.active(volume_id):
            # Permanent until someone detaches: 409 Conflict, which the CLI does not retry.
            raise Conflict(kind=kind, ident=volume_id, reason="it is attached; detach it first")
        self.replication.disable(volume)  # deleting a replicating volume deletes its replica (as `[]` does)
        job = self.runner.new("DeleteVolume", volume.id, volume.compartment_id)
        updated = replace(volume, state=TERMINATING)
        with self._engine.begin() as conn:
            self.volumes.save(updated, conn, expect={"state": volume.state})
            self._enqueue(conn, job)
        self.runner.wake()
        return updated, job.id

    @staticmethod
    def _require_available(volume: Volume) -> None:
        """PROVISIONING passes by itself (409 IncorrectState, retried); other states do not (409 Conflict)."""
        if volume.state == PROVISIONING:
            raise IncorrectState(kind=volume.kind, ident=volume.id, state=volume.state, allowed=[AVAILABLE])
        if volume.state != AVAILABLE:
            raise Conflict(kind=volume.kind, ident=volume.id, reason=f"it is {volume.state}; this needs AVAILABLE")

    # --- data -------------------------------------------------------------------------------------------------

    def _data_volume(self, kind: str, volume_id: str) -> Volume:
        volume = self.get_volume(kind, volume_id)
        if volume.state == FAULTY:
            raise (
                KeyUnusable(key_id=volume.kms_key_id, state=DELETED)
                if volume.kms_key_id
                else Conflict(kind=kind, ident=volume_id, reason=volume.faulty_reason or "it is FAULTY")
            )
        self._require_available(volume)
        return volume

    def read(self, kind: str, volume_id: str, offset: int, length: int) -> bytes:
        volume = self._data_volume(kind, volume_id)
        self._check_range(volume, offset, length)
        with self._using(volume) as store:
            return store.read(offset, length)

    def write(self, kind: str, volume_id: str, offset: int, data: bytes) -> int:
        volume = self._data_volume(kind, volume_id)
        self._check_range(volume, offset, len(data))
        with self._using(volume) as store:
            store.write(offset, data)
            store.flush()  # an acknowledged REST write is durable
        return len(data)

    @staticmethod
    def _check_range(volume: Volume, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > volume.size_bytes:
            raise InvalidArgument(
                field="offset", reason=f"range {offset}+{length} is outside the volume ({volume.size_bytes} bytes)"
            )

    # --- volume keys ------------------------------------------------------------------------------------------

    def update_volume_key(self, kind: str, volume_id: str, key_id: str | None) -> Volume:
        """PUT/DELETE .../kmsKey: one atomic re-wrap of the DEK; data untouched (R1.9, D9). None: provider key."""
        volume = self.get_volume(kind, volume_id)
        self._require_available(volume)
        if key_id is not None:
            self.vault.resolve_key(key_id)
        new = self.vault.rewrap(volume.wrapped, volume.dek_context(), key_id)
        updated = replace(volume, kms_key_id=new.key_id, key_version_id=new.key_version_id, wrapped_dek=new.blob)
        self.volumes.save(updated, expect={"wrapped_dek": volume.wrapped_dek, "state": AVAILABLE})
        self.bump_generation()  # data sessions cached the old kmsKeyId
        return updated

    # --- backups ----------------------------------------------------------------------------------------------

    def create_backup(
        self,
        kind: str,
        details: dict[str, Any],
        *,
        source_type: str = "MANUAL",
        expiration_time: datetime | None = None,
    ) -> tuple[Backup, str]:
        """`source_type`/`expiration_time`: SCHEDULED backups made by a backup policy expire (R3.8, scheduler.py)."""
        field = "volumeId" if kind == "volume" else "bootVolumeId"
        volume_id = details.get(field)
        if not volume_id:
            raise MissingParameter(field=field)
        ids.expect(volume_id, kind, field=field)
        btype = details.get("type") or "INCREMENTAL"  # R3.1
        if btype not in ("FULL", "INCREMENTAL"):
            raise InvalidArgument(field="type", reason="must be FULL or INCREMENTAL")
        volume = self.volumes.get(volume_id)
        if volume is None or volume.kind != kind or volume.state == TERMINATED:
            raise RelatedResourceNotFound(field=field, ident=volume_id)
        if volume.state != AVAILABLE:
            raise Conflict(kind=kind, ident=volume_id, reason=f"it is {volume.state}; a backup needs AVAILABLE")
        if not volume.is_hydrated:
            raise IncorrectState(kind=kind, ident=volume_id, state="hydrating", allowed=["hydrated"])
        if self.backups.find(tables.backups.c.volume_id == volume_id, tables.backups.c.state == CREATING):
            raise IncorrectState(kind=kind, ident=volume_id, state="BACKUP_IN_PROGRESS", allowed=[AVAILABLE])
        self.vault.require_usable(volume.kms_key_id)  # D1
        key_id = details.get("kmsKeyId")
        chosen = self._resolve_key(key_id) if key_id else volume.kms_key_id  # R3.14: inherit the volume's key
        now = self._clock.now()
        backup = Backup(
            id=ids.new(f"{kind}backup", self.region.key, random=self._random),
            kind=kind,
            volume_id=volume_id,
            compartment_id=volume.compartment_id,
            display_name=details.get("displayName") or "",
            type=btype,
            source_type=source_type,
            state=CREATING,
            kms_key_id=chosen,
            size_gb=volume.size_gb,
            time_created=now,
            time_request_received=now,
            freeform_tags=details.get("freeformTags") or dict(volume.freeform_tags),  # R3.9
            defined_tags=details.get("definedTags") or dict(volume.defined_tags),
            expiration_time=expiration_time,
        )
        if not backup.display_name:
            backup.display_name = f"{volume.display_name}-backup-{now:%Y%m%d%H%M%S}"
        _, wrapped = self.vault.new_dek(chosen, backup.dek_context(backup.id))
        backup.snapshot_name = f"backup-{backup.id}"
        with self._using(volume) as store:
            store.snapshot(backup.snapshot_name)
            backup.snapshot_seq = store.seq
        job = self.runner.new("CreateBackup", backup.id, backup.compartment_id)
        try:
            with self._engine.begin() as conn:
                self.backups.insert(backup, conn)
                self._put_dek(conn, backup.id, backup.id, wrapped)
                self._enqueue(conn, job)
        except BaseException:
            with self._using(volume) as store:
                store.delete_snapshot(backup.snapshot_name)
            raise
        self.runner.wake()
        return backup, job.id

    @staticmethod
    def _put_dek(conn: Any, backup_id: str, dek_id: str, wrapped: WrappedDek) -> None:
        conn.execute(
            insert(tables.backup_deks).values(
                backup_id=backup_id, dek_id=dek_id, key_version_id=wrapped.key_version_id, wrapped_dek=wrapped.blob
            )
        )

    def _backup_deks(self, backup: Backup, conn: Any = None) -> dict[str, WrappedDek]:
        stmt = select(tables.backup_deks).where(tables.backup_deks.c.backup_id == backup.id)
        if conn is None:
            with reading(self._engine) as c:
                rows = c.execute(stmt).all()
        else:
            rows = conn.execute(stmt).all()
        return {r.dek_id: WrappedDek(backup.kms_key_id, r.key_version_id, bytes(r.wrapped_dek)) for r in rows}

    def _unwrap_backup_deks(self, backup: Backup) -> dict[str, bytes]:
        return {
            dek_id: self.vault.unwrap(w, backup.dek_context(dek_id)) for dek_id, w in self._backup_deks(backup).items()
        }

    def list_backups(
        self, kind: str, compartment_id: str | None, volume_id: str | None, state: str | None, display_name: str | None
    ) -> list[Backup]:
        cond = _equal(
            tables.backups,
            kind=kind,
            compartment_id=compartment_id,
            volume_id=volume_id,
            state=state,
            display_name=display_name,
        )
        return self.backups.find(*cond, order_by=[tables.backups.c.time_created, tables.backups.c.id])

    def update_backup(self, kind: str, backup_id: str, details: dict[str, Any]) -> Backup:
        """UpdateVolumeBackup: name, tags and kmsKeyId ("" = back to the provider-managed key, D7): re-wrap only."""
        backup = self.get_backup(kind, backup_id)
        if backup.state in (TERMINATING, TERMINATED):
            raise Conflict(kind=f"{kind} backup", ident=backup_id, reason=f"it is {backup.state}")
        updated = replace(
            backup,
            display_name=details.get("displayName") or backup.display_name,
            freeform_tags=details.get("freeformTags", backup.freeform_tags),
            defined_tags=details.get("definedTags", backup.defined_tags),
        )
        if "kmsKeyId" not in details or details["kmsKeyId"] is None:
            self.backups.save(updated, expect={"state": backup.state, "kms_key_id": backup.kms_key_id})
            return updated
        if backup.state != AVAILABLE:
            raise Conflict(
                kind=f"{kind} backup", ident=backup_id, reason=f"it is {backup.state}; a key change needs AVAILABLE"
            )
        new_key = details["kmsKeyId"] or None
        if new_key is not None:
            self.vault.resolve_key(new_key)
        rewrapped = {
            dek_id: self.vault.rewrap(w, backup.dek_context(dek_id), new_key)
            for dek_id, w in self._backup_deks(backup).items()
        }
        updated.kms_key_id = new_key
        with self._engine.begin() as conn:
            self.backups.save(updated, conn, expect={"state": AVAILABLE, "kms_key_id": backup.kms_key_id})
            for dek_id, w in rewrapped.items():
                conn.execute(
                    tables.backup_deks.update()
                    .where(and_(tables.backup_deks.c.backup_id == backup.id, tables.backup_deks.c.dek_id == dek_id))
                    .values(key_version_id=w.key_version_id, wrapped_dek=w.blob)
                )
        return updated

    def delete_backup(self, kind: str, backup_id: str) -> tuple[Backup, str]:
        backup = self.get_backup(kind, backup_id)
        if backup.state in (TERMINATING, TERMINATED):
            raise Conflict(kind=f"{kind} backup", ident=backup_id, reason=f"it is already {backup.state}")
        if backup.state == CREATING:
            raise IncorrectState(
                kind=f"{kind} backup", ident=backup_id, state=backup.state, allowed=[AVAILABLE, FAULTY]
            )
        if self.backups.find(tables.backups.c.volume_id == backup.volume_id, tables.backups.c.state == CREATING):
            # A backup in progress may be building on this one's chunks (L1 in backup-format.md).
            raise IncorrectState(
                kind=f"{kind} backup", ident=backup_id, state="BACKUP_IN_PROGRESS", allowed=[AVAILABLE, FAULTY]
            )
        restoring = self.volumes.find(tables.volumes.c.source_id == backup_id, tables.volumes.c.state == PROVISIONING)
        if restoring:
            raise IncorrectState(
                kind=f"{kind} backup", ident=backup_id, state="RESTORE_IN_PROGRESS", allowed=[AVAILABLE]
            )
        job = self.runner.new("DeleteBackup", backup.id, backup.compartment_id)
        updated = replace(backup, state=TERMINATING)
        with self._engine.begin() as conn:
            self.backups.save(updated, conn, expect={"state": backup.state})
            self._enqueue(conn, job)
        self.runner.wake()
        return updated, job.id

    # --- cross-region copy (S12, S14; R3.25-R3.32, D11; blockstorage/regions.py) --------------------------------

    def connect_regions(self, peers: dict[str, RegionClient]) -> None:
        """Tell this region about the other regions it can copy from (region name -> client); composition root."""
        self.peers = {name: peer for name, peer in peers.items() if name != self.region.name}

    def _peer(self, region: str) -> RegionClient:
        peer = self.peers.get(region)
        if peer is None:
            raise InvalidArgument(
                field="destinationRegion", reason=f"{region!r} is not a region this blockvault serves"
            )
        return peer

    def owning_region(self, ocid: str) -> str | None:
        """The name of the other region whose code is in the OCID's region segment (`.phx.`), or None: this one's,
        none, unknown, or not an OCID (then the local lookup answers 404 as before)."""
        try:
            segment = ids.parse(ocid).region.split("-ad-")[0]
        except InvalidArgument:
            return None
        if segment in ("", self.region.key, self.region.name):
            return None
        for name, peer in self.peers.items():
            if segment in (peer.region_key, peer.region):
                return name
        return None

    def lookup_backup(self, kind: str, backup_id: str) -> BackupInfo:
        """GET of a backup by id from any region's endpoint: a backup of another region this process serves (by
        the OCID's region code) is read from that region. The `oci bv backup copy --wait-for-state` poll needs it:
        the CLI rebuilds its client for the destination region, but `--endpoint` still wins (oci-wire.md §1.2)."""
        owner = self.owning_region(backup_id)
        if owner is not None:
            return self.peers[owner].get_backup(kind, backup_id)
        backup = self.get_backup(kind, backup_id)
        return BackupInfo(backup, self.copy_source(backup.id))

    def copy_source(self, backup_id: str) -> str | None:
        """The backup a copy was made from (`sourceVolumeBackupId`); recorded in the copy's durable job."""
        return self.copy_sources([backup_id]).get(backup_id)

    def copy_sources(self, backup_ids: list[str]) -> dict[str, str]:
        if not backup_ids:
            return {}
        stmt = select(tables.jobs.c.resource_id, tables.jobs.c.payload).where(
            tables.jobs.c.operation == "CopyBackup", tables.jobs.c.resource_id.in_(backup_ids)
        )
        with reading(self._engine) as conn:
            rows = conn.execute(stmt).all()
        return {r.resource_id: str(json.loads(r.payload)["sourceBackupId"]) for r in rows}

    def check_exportable(self, kind: str, backup_id: str) -> Backup:
        """Source side of a copy: the backup must be AVAILABLE (CREATING passes by itself: IncorrectState, which the
        CLI retries) and its key usable (D1: 409 Conflict naming the key)."""
        backup = self.get_backup(kind, backup_id)
        if backup.state == CREATING:
            raise IncorrectState(kind=f"{kind} backup", ident=backup_id, state=backup.state, allowed=[AVAILABLE])
        if backup.state != AVAILABLE:
            raise Conflict(
                kind=f"{kind} backup", ident=backup_id, reason=f"it is {backup.state}; a copy needs AVAILABLE"
            )
        self.vault.require_usable(backup.kms_key_id)
        return backup

    def open_export(self, kind: str, backup_id: str) -> LocalBackupExport:
        """Source side of a copy: the backup's manifest, authenticated with its own DEK, and a plaintext chunk reader.
        The DEKs stay in this region's memory until the export is closed."""
        backup = self.check_exportable(kind, backup_id)
        deks = self._unwrap_backup_deks(backup)
        manifest = backup_engine.read_manifest(self.objects, backup.id, deks[backup.id])

        def still_readable() -> None:
            self.check_exportable(kind, backup_id)

        return LocalBackupExport(self.objects, manifest, deks, still_readable)

    def create_copy(
        self, kind: str, source_region: str, source_backup_id: str, details: dict[str, Any]
    ) -> tuple[Backup, str]:
        """Destination side of CopyVolumeBackup / CopyBootVolumeBackup: validate everything, then record the copy
        (CREATING), its new DEK and its job in one transaction. Nothing is created when any check fails.

        The copy is encrypted under `kmsKeyId`, a key of THIS region (resolve_key: malformed, other region, unknown,
        RSA, not ENABLED -> the usual errors), or this region's provider-managed key when none is given (R3.26),
        never the source's key. It gets a fresh DEK; the job re-encrypts every chunk (not a ciphertext copy).
        """
        peer = self._peer(source_region)
        display_name = details.get("displayName")
        if display_name is not None and not isinstance(display_name, str):
            raise InvalidArgument(field="displayName", reason="must be a string")
        key_id = details.get("kmsKeyId")
        if key_id is not None and not isinstance(key_id, str):
            raise InvalidArgument(field="kmsKeyId", reason="must be a string")
        chosen = self._resolve_key(key_id or None)  # R3.27 / D13: a key of the destination region
        src = peer.check_exportable(kind, source_backup_id)  # D1 on the source's key; AVAILABLE
        now = self._clock.now()
        backup = Backup(
            id=ids.new(f"{kind}backup", self.region.key, random=self._random),
            kind=kind,
            volume_id=src.volume_id,  # the source's volume, as OCI shows it on a copy
            compartment_id=src.compartment_id,
            display_name=display_name or src.display_name,
            type="FULL",  # a copy holds every chunk it needs (decisions.md)
            source_type=src.source_type,
            state=CREATING,
            kms_key_id=chosen,
            size_gb=src.size_gb,
            time_created=now,
            time_request_received=now,
            freeform_tags=dict(src.freeform_tags),  # R3.9: tags travel with a copy
            defined_tags=dict(src.defined_tags),
        )
        _, wrapped = self.vault.new_dek(chosen, backup.dek_context(backup.id))
        job = self.runner.new(
            "CopyBackup",
            backup.id,
            backup.compartment_id,
            {"sourceRegion": peer.region, "sourceBackupId": src.id},
        )
        with self._engine.begin() as conn:
            self.backups.insert(backup, conn)
            self._put_dek(conn, backup.id, backup.id, wrapped)
            self._enqueue(conn, job)
        self.runner.wake()
        return backup, job.id

    # --- jobs -------------------------------------------------------------------------------------------------

    def _job_volume(self, job: Job) -> Volume:
        volume = self.volumes.get(job.resource_id)
        if volume is None:
            raise NotFound(kind="volume", ident=job.resource_id)
        return volume

    def _job_create(self, job: Job, progress: Callable[[float], None]) -> None:
        volume = self._job_volume(job)
        if volume.state != PROVISIONING:
            return
        directory = self.volume_dir(volume)
        if not (directory / "map.db").exists():
            dek = self.vault.unwrap(volume.wrapped, volume.dek_context())
            shutil.rmtree(directory, ignore_errors=True)
            VolumeStore.create(directory, volume_id=volume.id, size_bytes=volume.size_bytes, dek=dek).close()
        self.volumes.save(replace(volume, state=AVAILABLE), expect={"state": PROVISIONING})

    def _job_hydrate(self, job: Job, progress: Callable[[float], None]) -> None:
        volume = self._job_volume(job)
        if volume.state == PROVISIONING:
            self._job_create(job, progress)
            volume = self._job_volume(job)
        if volume.state != AVAILABLE or volume.is_hydrated or volume.clone_snapshot is None:
            return
        src = self.volumes.get(volume.source_id or "")
        if src is None:
            raise Conflict(kind=volume.kind, ident=volume.id, reason="the clone's source is gone")
        src_dek = self.vault.unwrap(src.wrapped, src.dek_context())
        reader = SnapshotReader.open(self.volume_dir(src), name=volume.clone_snapshot, volume_id=src.id, dek=src_dek)
        try:
            units = reader.units()
            with self._using(volume) as store:
                for n, (index, _seq) in enumerate(units):
                    if n % 256 == 0:
                        self.vault.require_usable(volume.kms_key_id)
                        self.vault.require_usable(src.kms_key_id)
                        if units:
                            progress(100.0 * n / len(units))
                    if not store.has_unit(index):
                        store.write_unit_if_absent(index, reader.read_unit(index))
                store.flush()
        finally:
            reader.close()
        current = self._job_volume(job)
        self.volumes.save(
            replace(current, is_hydrated=True, clone_snapshot=None), expect={"clone_snapshot": volume.clone_snapshot}
        )
        self._forget(volume.id)  # reopen without the source: the clone is independent now
        self.bump_generation()  # data sessions re-read the record: no stale link to the source snapshot
        with self._using(src) as store:
            store.delete_snapshot(volume.clone_snapshot)

    def _job_restore(self, job: Job, progress: Callable[[float], None]) -> None:
        volume = self._job_volume(job)
        if volume.state != PROVISIONING:
            return
        backup = self.backups.get(job.payload["backupId"])
        if backup is None or backup.state != AVAILABLE:
            raise Conflict(kind="backup", ident=job.payload["backupId"], reason="it is no longer available")
        deks = self._unwrap_backup_deks(backup)
        dek = self.vault.unwrap(volume.wrapped, volume.dek_context())
        manifest = backup_engine.read_manifest(self.objects, backup.id, deks[backup.id])
        directory = self.volume_dir(volume)
        destroy(directory)  # a crashed attempt restarts from nothing
        store = VolumeStore.create(directory, volume_id=volume.id, size_bytes=volume.size_bytes, dek=dek)
        try:

            def write_chunk(offset: int, data: bytes) -> None:
                store.write(offset, data)

            backup_engine.restore_backup(
                self.objects,
                manifest,
                deks,
                write_chunk,
                progress=lambda done, total: progress(100.0 * done / max(total, 1)),
            )
            store.flush()
        finally:
            store.close()
        self.volumes.save(replace(volume, state=AVAILABLE, is_hydrated=True), expect={"state": PROVISIONING})

    def _job_delete_volume(self, job: Job, progress: Callable[[float], None]) -> None:
        volume = self._job_volume(job)
        self._forget(volume.id)
        if volume.clone_snapshot and volume.source_id:
            src = self.volumes.get(volume.source_id)
            if src is not None and src.state == AVAILABLE:
                try:
                    with self._using(src) as store:
                        store.delete_snapshot(volume.clone_snapshot)
                except KeyUnusable:
                    log.warning("snapshot %s of %s left for later", volume.clone_snapshot, src.id)
        try:
            destroy(self.volume_dir(volume))
        except Conflict as exc:  # a request still holds the store open: try again shortly
            raise IncorrectState(kind=volume.kind, ident=volume.id, state="IN_USE", allowed=["idle"]) from exc
        self.volumes.save(replace(volume, state=TERMINATED, clone_snapshot=None), expect={"state": volume.state})

    def _fail_volume(self, job: Job, reason: str) -> None:
        volume = self.volumes.get(job.resource_id)
        if volume is not None and volume.state != TERMINATED:
            self.volumes.save(replace(volume, state=FAULTY, faulty_reason=reason))

    def _job_backup(self, job: Job, progress: Callable[[float], None]) -> None:
        backup = self.backups.get(job.resource_id)
        if backup is None or backup.state != CREATING or backup.snapshot_name is None:
            return
        volume = self.volumes.get(backup.volume_id)
        if volume is None:
            raise Conflict(kind="backup", ident=backup.id, reason="its volume is gone")
        own = self._backup_deks(backup)[backup.id]
        own_dek = self.vault.unwrap(own, backup.dek_context(backup.id))
        vol_dek = self.vault.unwrap(volume.wrapped, volume.dek_context())
        manifest_name = f"manifests/{backup.id}"
        if self.objects.exists(manifest_name):
            # A crash after the manifest (the commit point) but before the metadata update: finish from it.
            manifest = backup_engine.read_manifest(self.objects, backup.id, own_dek)
            parent = self.backups.get(manifest.parent_backup_id) if manifest.parent_backup_id else None
            inherited = self._unwrap_backup_deks(parent) if parent is not None else {}
            stored = sum(e.stored_length for e in manifest.entries if e.dek_id == backup.id)
        else:
            parent, parent_manifest, inherited = (
                self._parent_for(backup) if backup.type == "INCREMENTAL" else (None, None, {})
            )
            reader = SnapshotReader.open(
                self.volume_dir(volume), name=backup.snapshot_name, volume_id=volume.id, dek=vol_dek
            )
            try:
                result = backup_engine.write_backup(
                    self.objects,
                    reader,
                    backup_id=backup.id,
                    volume_id=volume.id,
                    dek=own_dek,
                    kind="INCREMENTAL" if parent_manifest is not None else "FULL",
                    parent=parent_manifest,
                    progress=lambda done, total: progress(100.0 * done / max(total, 1)),
                )
            finally:
                reader.close()
            manifest, stored = result.manifest, result.bytes_stored
        needed = backup_engine.dek_ids(manifest) - {backup.id}
        # The child holds its own wrapped copy of every DEK its chunks need, so it stays readable (and re-keyable)
        # whatever happens to its parents and their keys.
        copies = {
            dek_id: self.vault.wrap(backup.kms_key_id, inherited[dek_id], backup.dek_context(dek_id))
            for dek_id in sorted(needed)
        }
        with self._engine.begin() as conn:
            for dek_id, wrapped in copies.items():
                self._put_dek(conn, backup.id, dek_id, wrapped)
            self.backups.save(
                replace(
                    backup,
                    state=AVAILABLE,
                    unique_size_bytes=stored,
                    type=manifest.kind,
                    parent_id=manifest.parent_backup_id,
                    snapshot_name=None,
                ),
                conn,
                expect={"state": CREATING},
            )
        try:
            with self._using(volume) as store:
                store.delete_snapshot(backup.snapshot_name)
        except (KeyUnusable, Conflict, IncorrectState):
            log.warning("snapshot %s of %s left for later", backup.snapshot_name, volume.id)

    def _parent_for(self, backup: Backup) -> tuple[Backup | None, Any, dict[str, bytes]]:
        """The newest AVAILABLE backup of the same volume whose keys are usable; None means a FULL backup."""
        candidates = self.backups.find(
            tables.backups.c.volume_id == backup.volume_id,
            tables.backups.c.state == AVAILABLE,
            order_by=[tables.backups.c.time_created.desc()],
        )
        for parent in candidates[:1]:
            if parent.size_gb != backup.size_gb:
                return None, None, {}  # R3.3: the first backup after a resize is FULL
            try:
                deks = self._unwrap_backup_deks(parent)
                manifest = backup_engine.read_manifest(self.objects, parent.id, deks[parent.id])
            except KeyUnusable:
                return None, None, {}
            return parent, manifest, deks
        return None, None, {}

    def _job_delete_backup(self, job: Job, progress: Callable[[float], None]) -> None:
        backup = self.backups.get(job.resource_id)
        if backup is None or backup.state == TERMINATED:
            return
        own_deks = set(self._backup_deks(backup)) | {backup.id}
        self.objects.delete(f"manifests/{backup.id}")
        with self._engine.begin() as conn:
            conn.execute(delete(tables.backup_deks).where(tables.backup_deks.c.backup_id == backup.id))
            self.backups.save(replace(backup, state=TERMINATED), conn, expect={"state": backup.state})
        # Chunks written by a backup live as long as some live backup still holds that backup's DEK.
        with reading(self._engine) as conn:
            for dek_id in sorted(own_deks):
                holder = conn.execute(
                    select(tables.backup_deks.c.backup_id).where(tables.backup_deks.c.dek_id == dek_id).limit(1)
                ).first()
                if holder is None:
                    for name in self.objects.list(f"chunks/{dek_id}/"):
                        self.objects.delete(name)

    def _job_copy(self, job: Job, progress: Callable[[float], None]) -> None:
        """Read the source backup chunk by chunk from its region (plaintext, decrypted there with its DEKs) and store
        it here as a FULL backup under the copy's own DEK. Idempotent: write_backup first deletes whatever a crashed
        attempt left (W2) and commits the manifest last (W1); the copy is AVAILABLE only after that commit."""
        backup = self.backups.get(job.resource_id)
        if backup is None or backup.state != CREATING:
            return
        own = self._backup_deks(backup)[backup.id]
        dek = self.vault.unwrap(own, backup.dek_context(backup.id))  # D1 on the destination key: park
        if self.objects.exists(f"manifests/{backup.id}"):
            # A crash after the commit point but before the metadata update: finish from the manifest.
            manifest = backup_engine.read_manifest(self.objects, backup.id, dek)
            stored = sum(e.stored_length for e in manifest.entries)
        else:
            peer = self._peer(str(job.payload["sourceRegion"]))
            export = peer.open_export(backup.kind, str(job.payload["sourceBackupId"]))
            try:
                result = backup_engine.write_backup(
                    self.objects,
                    ExportSource(export),
                    backup_id=backup.id,
                    volume_id=export.layout.volume_id,
                    dek=dek,
                    kind="FULL",
                    parent=None,
                    progress=lambda done, total: progress(100.0 * done / max(total, 1)),
                )
            finally:
                export.close()
            manifest, stored = result.manifest, result.bytes_stored
        self.backups.save(
            replace(backup, state=AVAILABLE, unique_size_bytes=stored, type=manifest.kind, parent_id=None),
            expect={"state": CREATING},
        )

    def _fail_backup(self, job: Job, reason: str) -> None:
        backup = self.backups.get(job.resource_id)
        if backup is not None and backup.state != TERMINATED:
            self.backups.save(replace(backup, state=FAULTY, faulty_reason=reason))

    # --- volume groups (owned by groups helper) -----------------------------------------------------------------
    # Hooks for blockstorage/groups.py (docs/design/volume-groups.md): one crash-consistent point in time across
    # several volumes, and member backups, clones and restores made at it in ONE transaction with the caller's rows.
    # Everything above this line belongs to the block storage helper; these methods only call it.

    GROUP_HOLD_SECONDS = 10.0  # the longest a group point in time waits for requests in flight (then: retry)
    # One group point in time at a time: two that shared a volume would each hold a lease the other waits out.
    _group_point = threading.Lock()

    def group_ad(self, ad: str | None) -> str:
        """The canonical name of an availability domain of this region (400 otherwise)."""
        return self._check_ad(ad)

    def group_compartment(self, compartment_id: str) -> None:
        """400 RelatedResourceNotAuthorizedOrNotFound unless the compartment exists."""
        self._check_compartment(compartment_id)

    @staticmethod
    def group_member_ready(volume: Volume) -> None:
        """A member must be AVAILABLE and hydrated; PROVISIONING and hydrating pass by themselves (IncorrectState,
        which the CLI retries), other states do not (Conflict)."""
        if volume.state == PROVISIONING or (volume.state == AVAILABLE and not volume.is_hydrated):
            state = volume.state if volume.state == PROVISIONING else "hydrating"
            raise IncorrectState(kind=volume.kind, ident=volume.id, state=state, allowed=[AVAILABLE])
        if volume.state != AVAILABLE:
            raise Conflict(kind=volume.kind, ident=volume.id, reason=f"it is {volume.state}; this needs AVAILABLE")

    def _snapshot_at_one_point(self, volumes: list[Volume], names: dict[str, str]) -> dict[str, int]:
        """Snapshot every volume at ONE point in time (R3.33 crash consistency): hold every member's opening gate,
        so no new request (REST or NBD, both lease the store through _acquire) can start on any member, wait until
        the requests in flight have ended, snapshot them all, then let requests go. A write that completed before
        the point is in every snapshot; a write that started after it is in none. One group point in time runs at
        a time and takes gates in volume id order. Returns each volume's write sequence at the point."""
        import time
        from contextlib import ExitStack

        ordered = sorted(volumes, key=lambda v: v.id)
        for volume in ordered:
            self.vault.require_usable(volume.kms_key_id)  # D1, as _using asks
        deadline = time.monotonic() + self.GROUP_HOLD_SECONDS

        def busy(volume: Volume) -> IncorrectState:
            return IncorrectState(kind=volume.kind, ident=volume.id, state="BUSY", allowed=["idle"])

        seqs: dict[str, int] = {}
        with ExitStack() as stack:
            if not self._group_point.acquire(timeout=self.GROUP_HOLD_SECONDS):
                raise busy(ordered[0])
            stack.callback(self._group_point.release)
            leases: list[_Lease] = []
            for volume in ordered:
                lease = self._acquire(volume)
                stack.callback(self._release, volume.id, lease)
                leases.append(lease)
            for volume in ordered:
                with self._lock:
                    gate = self._opening.setdefault(volume.id, threading.Lock())
                if not gate.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
                    raise busy(volume)
                stack.callback(gate.release)
            with self._cond:
                for volume, lease in zip(ordered, leases, strict=True):
                    while lease.users > 1:  # ours is the one left
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise busy(volume)
                        self._cond.wait(timeout=min(remaining, 0.005))
            taken: list[tuple[_Lease, str]] = []
            try:
                for volume, lease in zip(ordered, leases, strict=True):
                    lease.store.snapshot(names[volume.id])
                    taken.append((lease, names[volume.id]))
                    seqs[volume.id] = lease.store.seq
            except BaseException:
                for lease, name in taken:
                    lease.store.delete_snapshot(name)
                raise
        return seqs

    def snapshot_at_one_point(self, volumes: list[Volume], names: dict[str, str]) -> dict[str, int]:
        """Group replication's coordinated sync point (replication.md, "Volume group replicas"): as
        `_snapshot_at_one_point`; the caller owns the snapshots it names."""
        return self._snapshot_at_one_point(volumes, names)

    def _drop_group_snapshots(self, volumes: list[Volume], names: dict[str, str]) -> None:
        for volume in volumes:
            try:
                with self._using(volume) as store:
                    store.delete_snapshot(names[volume.id])
            except (KeyUnusable, Conflict, IncorrectState):
                log.warning("snapshot %s of %s left for later", names[volume.id], volume.id)

    def _insert_group(
        self,
        volumes: list[Volume],
        names: dict[str, str],
        write: Callable[[Any], None],
    ) -> None:
        """Run `write` in one transaction; if it fails, drop the snapshots taken for it."""
        try:
            with self._engine.begin() as conn:
                write(conn)
        except BaseException:
            self._drop_group_snapshots(volumes, names)
            raise
        self.runner.wake()

    def create_group_backups(
        self,
        volumes: list[Volume],
        btype: str,
        name_prefix: str,
        record: Callable[[Any, list[Backup]], None],
        *,
        source_type: str = "MANUAL",
        expiration_time: datetime | None = None,
    ) -> list[tuple[Backup, str]]:
        """Back up every volume at one point in time: ordinary backups (the CreateBackup job finishes each), each in
        its volume's compartment (R3.7) under its volume's key (R3.14, R3.16). `record(conn, backups)` writes the
        caller's rows in the same transaction. Returns (backup, work request id) per volume, in `volumes` order.
        `source_type`/`expiration_time`: a scheduled group backup's members are SCHEDULED and expire (scheduler.py)."""
        if btype not in ("FULL", "INCREMENTAL"):
            raise InvalidArgument(field="type", reason="must be FULL or INCREMENTAL")
        for volume in volumes:
            self.group_member_ready(volume)
            if self.backups.find(tables.backups.c.volume_id == volume.id, tables.backups.c.state == CREATING):
                raise IncorrectState(kind=volume.kind, ident=volume.id, state="BACKUP_IN_PROGRESS", allowed=[AVAILABLE])
            self.vault.require_usable(volume.kms_key_id)  # D1
        now = self._clock.now()
        planned: list[tuple[Backup, WrappedDek, Job]] = []
        for volume in volumes:
            backup = Backup(
                id=ids.new(f"{volume.kind}backup", self.region.key, random=self._random),
                kind=volume.kind,
                volume_id=volume.id,
                compartment_id=volume.compartment_id,
                display_name=f"{name_prefix}-{volume.display_name}",
                type=btype,
                source_type=source_type,
                state=CREATING,
                kms_key_id=volume.kms_key_id,
                size_gb=volume.size_gb,
                time_created=now,
                time_request_received=now,
                freeform_tags=dict(volume.freeform_tags),  # R3.9
                defined_tags=dict(volume.defined_tags),
                expiration_time=expiration_time,
            )
            backup.snapshot_name = f"backup-{backup.id}"
            _, wrapped = self.vault.new_dek(backup.kms_key_id, backup.dek_context(backup.id))
            planned.append((backup, wrapped, self.runner.new("CreateBackup", backup.id, backup.compartment_id)))
        names = {b.volume_id: f"backup-{b.id}" for b, _, _ in planned}
        seqs = self._snapshot_at_one_point(volumes, names)
        for backup, _, _ in planned:
            backup.snapshot_seq = seqs[backup.volume_id]

        def write(conn: Any) -> None:
            for backup, wrapped, job in planned:
                self.backups.insert(backup, conn)
                self._put_dek(conn, backup.id, backup.id, wrapped)
                self._enqueue(conn, job)
            record(conn, [b for b, _, _ in planned])

        self._insert_group(volumes, names, write)
        return [(b, job.id) for b, _, job in planned]

    def create_group_clones(
        self,
        sources: list[Volume],
        compartment_id: str,
        group_id: str,
        record: Callable[[Any, list[Volume]], None],
    ) -> list[tuple[Volume, str]]:
        """Clone every source at one point in time into `group_id`; each clone keeps its source's key (D12, as D3),
        AD and size, and hydrates in the background (CloneVolume job) while already usable (R4.5)."""
        self.group_compartment(compartment_id)
        for src in sources:
            self.group_member_ready(src)
            self.vault.require_usable(src.kms_key_id)  # D1: reading the source needs its DEK
            if src.kms_key_id is not None:
                self.vault.resolve_key(src.kms_key_id)
        clones: list[Volume] = []
        for src in sources:
            common = {
                "compartment_id": compartment_id,
                "display_name": f"{src.display_name}-clone",
                "vpus_per_gb": src.vpus_per_gb,
                "freeform_tags": dict(src.freeform_tags),
                "defined_tags": dict(src.defined_tags),
            }
            volume, _ = self._new_volume(
                src.kind,
                src.availability_domain,
                src.size_gb,
                src.kms_key_id,
                common,
                source_type=src.kind,
                source_id=src.id,
                volume_group_id=group_id,
            )
            volume.is_hydrated = False
            volume.clone_snapshot = f"clone-{volume.id}"
            clones.append(volume)
        names = {str(c.source_id): str(c.clone_snapshot) for c in clones}
        self._snapshot_at_one_point(sources, names)
        jobs = [self.runner.new("CloneVolume", c.id, c.compartment_id) for c in clones]

        def write(conn: Any) -> None:
            for volume, job in zip(clones, jobs, strict=True):
                self.volumes.insert(volume, conn)
                self._enqueue(conn, job)
            record(conn, clones)

        self._insert_group(sources, names, write)
        return [(c, j.id) for c, j in zip(clones, jobs, strict=True)]

    def create_group_restores(
        self,
        backups: list[Backup],
        ad: str,
        compartment_id: str,
        group_id: str,
        names: dict[str, str],
        record: Callable[[Any, list[Volume]], None],
    ) -> list[tuple[Volume, str]]:
        """Restore every backup into a new volume of `ad` in `group_id`, under the provider-managed key: a volume
        group backup cannot be restored under a Vault key (R3.19, D12). `names`: backup id -> new display name."""
        self.group_compartment(compartment_id)
        ad = self._check_ad(ad)
        for backup in backups:
            if backup.state != AVAILABLE:
                raise Conflict(
                    kind=f"{backup.kind} backup", ident=backup.id, reason=f"it is {backup.state}; restore needs it"
                )
            self.vault.require_usable(backup.kms_key_id)  # D1
        created: list[Volume] = []
        for backup in backups:
            common = {
                "compartment_id": compartment_id,
                "display_name": names.get(backup.id) or backup.display_name,
                "vpus_per_gb": 10,
                "freeform_tags": dict(backup.freeform_tags),  # R3.9
                "defined_tags": dict(backup.defined_tags),
            }
            volume, _ = self._new_volume(
                backup.kind,
                ad,
                backup.size_gb,
                None,
                common,
                source_type=f"{backup.kind}Backup",
                source_id=backup.id,
                volume_group_id=group_id,
            )
            volume.is_hydrated = False
            created.append(volume)
        jobs = [self.runner.new("RestoreVolume", v.id, v.compartment_id, {"backupId": v.source_id}) for v in created]

        def write(conn: Any) -> None:
            for volume, job in zip(created, jobs, strict=True):
                self.volumes.insert(volume, conn)
                self._enqueue(conn, job)
            record(conn, created)

        self._insert_group([], {}, write)
        return [(v, j.id) for v, j in zip(created, jobs, strict=True)]


__all__ = ["UNIT_SIZE", "BlockStorageService", "NotImplementedYet", "Region"]
