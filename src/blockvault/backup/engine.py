"""Backup I/O edge: runs a plan against a point-in-time `UnitSource` and an `ObjectStore`.

Ordering rules implemented here are specified in docs/design/backup-format.md, "Read and write ordering":

- W1 every chunk object is durable (its `put` returned) before the manifest is put; the manifest is the commit point.
- W2 a restarted backup first deletes whatever its crashed attempt left under `chunks/<backup_id>/`.
- D1 deleting a backup removes its manifest (durably) before any chunk object.

Concurrency: `write_backup` runs a two-stage pipeline on private pools, `workers` threads compressing+encrypting and
`io_workers` threads putting; `restore_backup` uses `workers` threads to get+decrypt+decompress. zstd and AES-GCM
release the GIL, so 2 sealing workers use both cores of the reference machine. The source is read, `random` drawn
and the callbacks (`progress`, `write_chunk`) called only from the calling thread, in chunk order; the store is
called from the pools, which the `ObjectStore` contract allows. Serializing backup writes and deletes per volume is
the caller's job (backup-format.md, "Locks and concurrency").
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol

from blockvault.backup.format import (
    UNIT_SIZE,
    Manifest,
    ManifestEntry,
    check_id,
    chunk_object_name,
    chunk_prefix,
    chunk_span,
    dek_ids,
    manifest_object_name,
    objects_referenced,
    objects_written_by,
    open_chunk,
    open_manifest,
    seal_chunk,
    seal_manifest,
)
from blockvault.backup.objectstore.base import ObjectMissing, ObjectStore
from blockvault.backup.planner import ChunkWrite, plan_backup
from blockvault.crypto import NONCE_SIZE, TAG_SIZE, Aead
from blockvault.errors import Conflict, IntegrityError

__all__ = [
    "DEK_SIZE",
    "BackupResult",
    "UnitSource",
    "collect_garbage",
    "dek_ids",
    "delete_backup",
    "objects_referenced",
    "objects_written_by",
    "read_manifest",
    "restore_backup",
    "write_backup",
]

DEK_SIZE = 32  # AES-256
# 2 threads: the reference machine has 2 cores and zstd and AES-GCM run without the GIL (measured: 2 workers use
# 1.7-1.8 cores, benchmarks/backup_bench.py).
DEFAULT_WORKERS = 2
# Puts mostly wait (fsync, network); two overlap one chunk's latency with the next chunk's sealing.
DEFAULT_IO_WORKERS = 2
# Chunks in flight per worker: enough to keep each worker busy while the caller reads the next chunk, few enough
# that memory stays at a handful of MiB.
_IN_FLIGHT_PER_WORKER = 2

Progress = Callable[[int, int], None]


class UnitSource(Protocol):
    """A point-in-time, read-only view of a volume (the volume store provides it; backup/ does not import the store).

    `units()` lists allocated units only, sorted by index, each with the seq of its last write; unlisted units read
    as zeros. `read_unit` returns exactly UNIT_SIZE plaintext bytes. Called from one thread only.
    """

    @property
    def volume_id(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def seq(self) -> int: ...

    def units(self) -> list[tuple[int, int]]: ...

    def read_unit(self, index: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What `write_backup` committed.

    `bytes_stored` is the backup's unique size (OCI `uniqueSizeInGBs`): the chunk objects it wrote plus its manifest.
    `bytes_read` counts plaintext read from the source (allocated units of the chunks the plan re-reads only).
    """

    manifest: Manifest
    bytes_stored: int
    chunks_written: int
    chunks_inherited: int
    bytes_read: int


def _fixed_nonce(nonce: bytes, n: int) -> bytes:
    if n != len(nonce):
        raise ValueError("unexpected nonce size")
    return nonce


@functools.lru_cache(maxsize=4)
def _zeros(length: int) -> bytes:
    return bytes(length)


def _read_chunk(source: UnitSource, write: ChunkWrite) -> bytearray:
    read_range = getattr(source, "read", None)
    if read_range is not None and len(write.units) > 1:
        # One ranged read (one map query, one preadv) instead of one per unit; holes read as zeros either way.
        data = read_range(write.offset, write.length)
        if len(data) != write.length:
            raise ValueError(f"read({write.offset}, {write.length}) returned {len(data)} bytes")
        return bytearray(data)
    buf = bytearray(write.length)
    for unit in write.units:
        data = source.read_unit(unit)
        if len(data) != UNIT_SIZE:
            raise ValueError(f"read_unit({unit}) returned {len(data)} bytes, not {UNIT_SIZE}")
        start = unit * UNIT_SIZE - write.offset
        take = min(UNIT_SIZE, write.length - start)  # the volume's last unit may extend past its size
        buf[start : start + take] = memoryview(data)[:take]
    return buf


def _seal(
    aead: Aead, plaintext: bytearray, nonce: bytes, write: ChunkWrite, *, backup_id: str, volume_id: str
) -> bytes:
    return seal_chunk(
        aead,
        plaintext,
        backup_chain=volume_id,
        chunk_index=write.chunk_index,
        object_name=chunk_object_name(backup_id, write.chunk_index),
        random=functools.partial(_fixed_nonce, nonce),
    )


def write_backup(
    store: ObjectStore,
    source: UnitSource,
    *,
    backup_id: str,
    volume_id: str,
    dek: bytes,
    kind: Literal["FULL", "INCREMENTAL"],
    parent: Manifest | None,
    random: Callable[[int], bytes] = os.urandom,
    progress: Progress | None = None,
    workers: int = DEFAULT_WORKERS,
    io_workers: int = DEFAULT_IO_WORKERS,
) -> BackupResult:
    """Back up `source` as `backup_id`, encrypting what it writes under `dek` (this backup's own 32-byte key).

    An INCREMENTAL against `parent` stores only chunks changed since the parent's snapshot and references the rest;
    it is recorded as FULL when there is no parent or the size changed (see planner; `result.manifest.kind` says
    which). Holes (all-zero chunks) are never stored. Objects: `chunks/<backup_id>/<index:010d>`, then
    `manifests/<backup_id>` last (W1). Safe to call again after a crash with the same arguments (W2); raises
    `Conflict` if the manifest is already committed, because restarting then would destroy a finished backup.
    `progress(done, total)` counts chunks read, from the calling thread. `workers` threads compress and encrypt,
    `io_workers` threads put; `random` (nonces) is called from the calling thread only.
    """
    if source.volume_id != volume_id:
        raise ValueError(f"source is volume {source.volume_id}, not {volume_id}")
    if len(dek) != DEK_SIZE:
        raise ValueError(f"a backup DEK is {DEK_SIZE} bytes")
    if workers < 1 or io_workers < 1:
        raise ValueError("workers and io_workers must be at least 1")
    check_id(backup_id, "backup_id")
    check_id(volume_id, "volume_id")
    if parent is not None and parent.backup_id == backup_id:
        raise ValueError("a backup cannot be its own parent")
    plan = plan_backup(source.units(), size=source.size, seq=source.seq, volume_id=volume_id, kind=kind, parent=parent)

    manifest_name = manifest_object_name(backup_id)
    if store.exists(manifest_name):
        raise Conflict(kind="volume backup", ident=backup_id, reason="its manifest is already committed")
    for leftover in store.list(chunk_prefix(backup_id)):  # W2: garbage of a crashed attempt
        store.delete(leftover)

    aead = Aead(dek)
    written: list[ManifestEntry] = []
    bytes_read = 0
    total = len(plan.writes)
    done = 0
    seal_cap, put_cap = workers * _IN_FLIGHT_PER_WORKER, io_workers * _IN_FLIGHT_PER_WORKER
    sealing: deque[tuple[ChunkWrite, Future[bytes]]] = deque()
    putting: deque[tuple[ManifestEntry, Future[None]]] = deque()

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def settle_puts(limit: int) -> None:
        while putting and (len(putting) > limit or putting[0][1].done()):
            entry, put = putting.popleft()
            put.result()
            written.append(entry)
            tick()

    def settle_seals(limit: int) -> None:
        while sealing and (len(sealing) > limit or sealing[0][1].done()):
            write, sealed = sealing.popleft()
            blob = sealed.result()
            name = chunk_object_name(backup_id, write.chunk_index)
            entry = ManifestEntry(write.chunk_index, name, backup_id, len(blob), write.unit_mask, blob[-TAG_SIZE:])
            putting.append((entry, io_pool.submit(store.put, name, blob, durable=False)))
            settle_puts(put_cap)

    # Two stages so that CPU work never waits on storage latency (a LocalObjectStore put is two fsyncs, ~3 ms per
    # chunk here, comparable to compressing it): `workers` threads seal, `io_workers` threads put.
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backup-seal") as seal_pool,
        ThreadPoolExecutor(max_workers=io_workers, thread_name_prefix="backup-put") as io_pool,
    ):
        try:
            for write in plan.writes:
                plaintext = _read_chunk(source, write)
                bytes_read += len(write.units) * UNIT_SIZE
                if plaintext == _zeros(write.length):
                    tick()  # a hole: never stored (invariant C3)
                    continue
                # Drawn here, in chunk order, so a deterministic `random` yields deterministic objects and `random`
                # need not be thread-safe.
                nonce = random(NONCE_SIZE)
                sealed = seal_pool.submit(
                    _seal, aead, plaintext, nonce, write, backup_id=backup_id, volume_id=volume_id
                )
                sealing.append((write, sealed))
                settle_seals(seal_cap)
                settle_puts(put_cap)
            settle_seals(0)
            settle_puts(0)
        except BaseException:
            # Objects already put stay behind as garbage; a restart removes them (W2).
            for _, sealed in sealing:
                sealed.cancel()
            for _, put in putting:
                put.cancel()
            raise

    entries = tuple(sorted([*plan.inherited, *written], key=lambda e: e.chunk_index))
    manifest = Manifest(
        backup_id=backup_id,
        volume_id=volume_id,
        size_bytes=plan.size_bytes,
        snapshot_seq=source.seq,
        chunk_size=plan.chunk_size,
        kind=plan.kind,
        parent_backup_id=plan.parent_backup_id,
        entries=entries,
    )
    blob = seal_manifest(aead, manifest, random)
    store.sync()  # W1: every chunk durable (one syncfs for all of them) ...
    store.put(manifest_name, blob)  # ... before the commit point
    return BackupResult(
        manifest=manifest,
        bytes_stored=sum(e.stored_length for e in written) + len(blob),
        chunks_written=len(written),
        chunks_inherited=len(plan.inherited),
        bytes_read=bytes_read,
    )


def read_manifest(store: ObjectStore, backup_id: str, dek: bytes) -> Manifest:
    """Fetch and authenticate the manifest of `backup_id` with its own DEK.

    `ObjectMissing` if the backup was never committed (or was deleted); IntegrityError if it is not authentic.
    """
    return open_manifest(Aead(dek), store.get(manifest_object_name(check_id(backup_id, "backup_id"))), backup_id)


def _fetch_chunk(store: ObjectStore, aead: Aead, manifest: Manifest, entry: ManifestEntry) -> bytes:
    what = f"backup {manifest.backup_id} chunk {entry.chunk_index} ({entry.object_name})"
    try:
        blob = store.get(entry.object_name)
    except ObjectMissing as exc:
        # A committed manifest pointing at a missing object is damage to the repository, not a missing resource.
        raise IntegrityError(f"integrity check failed for {what}: object missing", what=what) from exc
    # The manifest pins the exact object (length and GCM tag): an older object of the same name, e.g. left by an
    # aborted attempt, is rejected before decryption.
    if len(blob) != entry.stored_length or blob[-TAG_SIZE:] != entry.tag:
        raise IntegrityError(what=what)
    plaintext = open_chunk(
        aead, blob, backup_chain=manifest.volume_id, chunk_index=entry.chunk_index, object_name=entry.object_name
    )
    if len(plaintext) != chunk_span(manifest.size_bytes, manifest.chunk_size, entry.chunk_index)[1]:
        raise IntegrityError(what=what)
    return plaintext


def restore_backup(
    store: ObjectStore,
    manifest: Manifest,
    deks: Mapping[str, bytes],
    write_chunk: Callable[[int, bytes], None],
    progress: Progress | None = None,
    *,
    workers: int = DEFAULT_WORKERS,
) -> None:
    """Call `write_chunk(byte_offset, plaintext)` for every stored chunk of `manifest`, in offset order.

    `deks` maps dek_id -> DEK and must hold every id in `dek_ids(manifest)`; a missing one is an IntegrityError naming
    it, raised before anything is written. Holes are not written: the target MUST read as zeros beforehand (a new
    volume). The last chunk's plaintext may be shorter than the chunk size. Any missing, modified, swapped or
    foreign chunk object raises IntegrityError; chunks before it may already have been written.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    aeads: dict[str, Aead] = {}
    for dek_id in sorted(dek_ids(manifest)):
        try:
            aeads[dek_id] = Aead(deks[dek_id])
        except KeyError:
            what = f"backup {manifest.backup_id}: data key {dek_id} was not supplied"
            raise IntegrityError(f"integrity check failed for {what}", what=what, dek_id=dek_id) from None

    total = len(manifest.entries)
    done = 0
    pending: deque[tuple[ManifestEntry, Future[bytes]]] = deque()
    entries = iter(manifest.entries)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backup-open") as pool:
        try:
            while True:
                while len(pending) < workers * _IN_FLIGHT_PER_WORKER:
                    entry = next(entries, None)
                    if entry is None:
                        break
                    future = pool.submit(_fetch_chunk, store, aeads[entry.dek_id], manifest, entry)
                    pending.append((entry, future))
                if not pending:
                    break
                entry, future = pending.popleft()
                write_chunk(entry.chunk_index * manifest.chunk_size, future.result())
                done += 1
                if progress is not None:
                    progress(done, total)
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise


def delete_backup(store: ObjectStore, manifest: Manifest, still_referenced: set[str]) -> None:
    """Delete a backup: its manifest first (D1), then every chunk object it references that no live backup does.

    `still_referenced` is the union of `objects_referenced(m)` over every other live backup in this store. Deleting
    by *reference* rather than only what this backup wrote means that a chunk inherited from an already deleted
    parent goes when its last referrer goes. Also sweeps anything under `chunks/<backup_id>/` the manifest does not
    name. A crash part-way leaves only unreferenced chunk objects (garbage for `collect_garbage`), never a manifest
    whose chunks are gone.
    """
    store.delete(manifest_object_name(manifest.backup_id))  # D1: durable before any chunk goes
    doomed = objects_referenced(manifest) | set(store.list(chunk_prefix(manifest.backup_id)))
    for name in sorted(doomed - still_referenced):
        store.delete(name)


def collect_garbage(store: ObjectStore, *, live: Iterable[Manifest], in_progress: Collection[str]) -> list[str]:
    """Delete every manifest and chunk object not needed by `live` and not owned by a backup in `in_progress`.

    `live` MUST be the manifests of every committed backup whose data is kept in this store (all volumes, since the
    listing covers the whole store) and `in_progress` the ids of every backup being written or about to be, or their
    uncommitted chunks would be removed under them. Manifests go before chunks (D1). Returns the deleted names.
    """
    live = list(live)
    keep: set[str] = set()
    for manifest in live:
        keep |= objects_referenced(manifest)
        keep.add(manifest_object_name(manifest.backup_id))
    protected = set(in_progress)
    removed: list[str] = []
    for prefix in ("manifests/", "chunks/"):
        for name in store.list(prefix):
            owner = name.split("/")[1]
            if name not in keep and owner not in protected:
                store.delete(name)
                removed.append(name)
    return removed
