"""Which chunks a backup must read and store, and which it inherits from its parent. Pure: values in, a plan out.

Rules (docs/design/backup-format.md, "Incremental backups"):

- FULL: every chunk with at least one allocated unit is read; the engine stores it unless it reads as all zeros.
- INCREMENTAL: a chunk is read again if any of its units was written after the parent's snapshot
  (unit seq > parent.snapshot_seq), if the parent has no entry for it, or if its set of allocated units differs from
  the parent's (a trim leaves no seq behind, so the unit mask is what reveals it). Otherwise the parent's entry is
  inherited unchanged, still naming the object and DEK of whichever backup wrote it.
- A chunk with no allocated unit is a hole: neither read nor inherited.
- An INCREMENTAL request becomes FULL when there is no parent, when the volume size changed since the parent
  (OCI R3.3: "the first backup after a resize is FULL"), or when the parent used another chunk size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from blockvault.backup.format import (
    CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MAX_CHUNKS,
    UNIT_SIZE,
    BackupKind,
    Manifest,
    ManifestEntry,
    chunk_span,
)

__all__ = ["BackupPlan", "ChunkWrite", "plan_backup"]


@dataclass(frozen=True, slots=True)
class ChunkWrite:
    """A chunk to read from the source and store: `units` are its allocated units (volume-wide indexes), the rest
    of the chunk reads as zeros."""

    chunk_index: int
    offset: int
    length: int
    units: tuple[int, ...]
    unit_mask: int


@dataclass(frozen=True, slots=True)
class BackupPlan:
    """The outcome of planning; `kind` is what will be recorded, which may differ from what was requested."""

    kind: BackupKind
    parent_backup_id: str | None
    reason: str
    size_bytes: int
    chunk_size: int
    writes: tuple[ChunkWrite, ...]
    inherited: tuple[ManifestEntry, ...]

    @property
    def chunk_count(self) -> int:
        return -(-self.size_bytes // self.chunk_size)


def _effective_kind(
    kind: BackupKind, parent: Manifest | None, *, size: int, seq: int, volume_id: str, chunk_size: int
) -> tuple[BackupKind, str]:
    if kind not in ("FULL", "INCREMENTAL"):
        raise ValueError(f"kind must be FULL or INCREMENTAL, not {kind!r}")
    if kind == "FULL":
        return "FULL", "requested"
    if parent is None:
        return "FULL", "no parent backup"
    if parent.volume_id != volume_id:
        raise ValueError(f"parent {parent.backup_id} is a backup of {parent.volume_id}, not {volume_id}")
    if parent.snapshot_seq > seq:
        raise ValueError(f"parent {parent.backup_id} is newer (seq {parent.snapshot_seq}) than the source ({seq})")
    if parent.size_bytes != size:
        return "FULL", f"volume resized from {parent.size_bytes} to {size} bytes since the parent (R3.3)"
    if parent.chunk_size != chunk_size:
        return "FULL", f"parent chunk size {parent.chunk_size} differs from {chunk_size}"
    return "INCREMENTAL", "requested"


def plan_backup(
    units: Sequence[tuple[int, int]],
    *,
    size: int,
    seq: int,
    volume_id: str,
    kind: BackupKind,
    parent: Manifest | None,
    chunk_size: int = CHUNK_SIZE,
) -> BackupPlan:
    """Plan a backup of a volume of `size` bytes whose allocated units are `units` = [(unit index, last-write seq)].

    `units` MUST be sorted by index without duplicates, every index inside the volume and every seq <= `seq` (the
    source's counter at snapshot time); ValueError otherwise, as for a parent of another volume or from the future.
    The parent's own snapshot seq, size and chunk size come from its manifest.
    """
    if size < 0 or seq < 0:
        raise ValueError("size and seq must not be negative")
    if not 0 < chunk_size <= MAX_CHUNK_SIZE or chunk_size % UNIT_SIZE:
        raise ValueError(f"chunk_size must be a multiple of {UNIT_SIZE} up to {MAX_CHUNK_SIZE}")
    if -(-size // chunk_size) > MAX_CHUNKS:
        raise ValueError("volume too large for this chunk size")
    effective, reason = _effective_kind(kind, parent, size=size, seq=seq, volume_id=volume_id, chunk_size=chunk_size)
    base = parent if effective == "INCREMENTAL" else None
    parent_entries = {e.chunk_index: e for e in base.entries} if base is not None else {}
    parent_seq = base.snapshot_seq if base is not None else -1

    units_per_chunk = chunk_size // UNIT_SIZE
    unit_count = -(-size // UNIT_SIZE)
    writes: list[ChunkWrite] = []
    inherited: list[ManifestEntry] = []

    def close(chunk: int, members: list[int], mask: int, newest: int) -> None:
        previous = parent_entries.get(chunk)
        if base is not None and previous is not None and newest <= parent_seq and previous.unit_mask == mask:
            inherited.append(previous)
            return
        offset, length = chunk_span(size, chunk_size, chunk)
        writes.append(ChunkWrite(chunk, offset, length, tuple(members), mask))

    members: list[int] = []
    current, mask, newest, last_unit = -1, 0, -1, -1
    for unit, unit_seq in units:
        if not last_unit < unit < unit_count:
            raise ValueError(f"units must be sorted, unique and below {unit_count}; got {unit} after {last_unit}")
        if not 0 <= unit_seq <= seq:
            raise ValueError(f"unit {unit} has seq {unit_seq} outside 0..{seq}")
        last_unit = unit
        chunk = unit // units_per_chunk
        if chunk != current:
            if members:
                close(current, members, mask, newest)
            current, members, mask, newest = chunk, [], 0, -1
        members.append(unit)
        mask |= 1 << (unit % units_per_chunk)
        newest = max(newest, unit_seq)
    if members:
        close(current, members, mask, newest)

    return BackupPlan(
        kind=effective,
        parent_backup_id=base.backup_id if base is not None else None,
        reason=reason,
        size_bytes=size,
        chunk_size=chunk_size,
        writes=tuple(writes),
        inherited=tuple(inherited),
    )
