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
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from blockvault.backup.engine import restore_backup
from blockvault.backup.format import UNIT_SIZE, Manifest, ManifestEntry, chunk_span
from blockvault.backup.objectstore.base import ObjectStore
from blockvault.blockstorage.model import Backup

if TYPE_CHECKING:
    from blockvault.blockstorage.service import BlockStorageService

__all__ = [
    "BackupExport",
    "BackupInfo",
    "BackupLayout",
    "ExportSource",
    "InProcessRegionClient",
    "LocalBackupExport",
    "RegionClient",
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

    def __init__(self, service: BlockStorageService) -> None:
        self._service = service

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
