"""Backup engine over a fake volume: full, incremental, restore, delete, crash restart, tampering, compression."""

from __future__ import annotations

import os
import random as stdlib_random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from blockvault.backup.engine import (
    BackupResult,
    collect_garbage,
    dek_ids,
    delete_backup,
    objects_referenced,
    objects_written_by,
    read_manifest,
    restore_backup,
    write_backup,
)
from blockvault.backup.format import (
    CHUNK_MAGIC,
    CHUNK_SIZE,
    FLAG_ZSTD,
    UNIT_SIZE,
    BackupKind,
    Manifest,
    ManifestEntry,
    ObjectHeader,
    chunk_object_name,
    manifest_object_name,
    open_chunk,
    seal_chunk,
)
from blockvault.backup.objectstore.base import ObjectStore
from blockvault.backup.objectstore.memory import MemoryObjectStore
from blockvault.backup.planner import plan_backup
from blockvault.crypto import Aead
from blockvault.errors import Conflict, DecryptionFailed, IntegrityError, Unavailable

VOLUME = "ocid1.volume.oc1.iad.aaaavolume"
OTHER_VOLUME = "ocid1.volume.oc1.iad.aaaaother"
FULL_ID = "ocid1.volumebackup.oc1.iad.aaaafull"
INC_ID = "ocid1.volumebackup.oc1.iad.aaaainc"
INC2_ID = "ocid1.volumebackup.oc1.iad.aaaainc2"
UPC = CHUNK_SIZE // UNIT_SIZE  # units per chunk


def _dek(label: str) -> bytes:
    return (label.encode() * 32)[:32]


DEKS = {FULL_ID: _dek("full"), INC_ID: _dek("inc"), INC2_ID: _dek("inc2")}


def _text_unit(seed: int) -> bytes:
    """Compressible, text-like, different per seed."""
    line = f"unit {seed:08d}: the quick brown fox jumps over the lazy dog\n".encode()
    return (line * (UNIT_SIZE // len(line) + 1))[:UNIT_SIZE]


def _random_unit(seed: int) -> bytes:
    return stdlib_random.Random(seed).randbytes(UNIT_SIZE)


# --------------------------------------------------------------------------------------------------- fake volume


@dataclass(frozen=True)
class Snapshot:
    """A frozen UnitSource."""

    volume_id: str
    size: int
    seq: int
    data: dict[int, tuple[bytes, int]]
    reads: list[int] = field(default_factory=list)

    def units(self) -> list[tuple[int, int]]:
        return sorted((index, seq) for index, (_, seq) in self.data.items())

    def read_unit(self, index: int) -> bytes:
        self.reads.append(index)
        return self.data[index][0]

    def image(self) -> bytes:
        out = bytearray(self.size)
        for index, (data, _) in self.data.items():
            start = index * UNIT_SIZE
            out[start : start + UNIT_SIZE] = data[: max(0, self.size - start)]
        return bytes(out)


class FakeVolume:
    def __init__(self, size: int, volume_id: str = VOLUME) -> None:
        self.volume_id, self.size, self.seq = volume_id, size, 0
        self.data: dict[int, tuple[bytes, int]] = {}

    def write(self, unit: int, data: bytes) -> None:
        assert len(data) == UNIT_SIZE
        assert unit * UNIT_SIZE < self.size
        self.seq += 1
        self.data[unit] = (data, self.seq)

    def trim(self, unit: int) -> None:
        self.seq += 1
        self.data.pop(unit, None)

    def resize(self, size: int) -> None:
        self.size = size

    def snapshot(self) -> Snapshot:
        return Snapshot(self.volume_id, self.size, self.seq, dict(self.data))


def _restore(store: ObjectStore, manifest: Manifest, deks: dict[str, bytes] = DEKS) -> bytes:
    image = bytearray(manifest.size_bytes)

    def write_chunk(offset: int, data: bytes) -> None:
        assert offset % CHUNK_SIZE == 0
        assert len(data) == min(CHUNK_SIZE, manifest.size_bytes - offset)
        image[offset : offset + len(data)] = data

    restore_backup(store, manifest, deks, write_chunk)
    return bytes(image)


def _backup(
    store: ObjectStore, snap: Snapshot, backup_id: str, kind: BackupKind, parent: Manifest | None
) -> BackupResult:
    return write_backup(
        store, snap, backup_id=backup_id, volume_id=snap.volume_id, dek=DEKS[backup_id], kind=kind, parent=parent
    )


# 8 full chunks plus a short ninth (3 units): exercises the short last chunk.
SIZE = 8 * CHUNK_SIZE + 3 * UNIT_SIZE


def _populated() -> FakeVolume:
    vol = FakeVolume(SIZE)
    for unit in range(0, UPC):  # chunk 0: all text
        vol.write(unit, _text_unit(unit))
    vol.write(UPC + 1, _random_unit(17))  # chunk 1: one random unit, rest holes
    vol.write(2 * UPC + 5, bytes(UNIT_SIZE))  # chunk 2: allocated but all zeros -> never stored
    vol.write(4 * UPC, _text_unit(64))  # chunk 4
    vol.write(4 * UPC + UPC - 1, _random_unit(79))
    vol.write(8 * UPC + 1, _text_unit(129))  # chunk 8 (short)
    return vol  # chunks 3, 5, 6, 7: unallocated holes


@pytest.fixture
def store() -> MemoryObjectStore:
    return MemoryObjectStore()


# --------------------------------------------------------------------------------------------------- full + incr


def test_full_backup_stores_non_zero_chunks_and_restores_byte_for_byte(store: MemoryObjectStore) -> None:
    snap = _populated().snapshot()
    result = _backup(store, snap, FULL_ID, "FULL", None)
    manifest = result.manifest
    assert manifest.kind == "FULL"
    assert manifest.parent_backup_id is None
    assert [e.chunk_index for e in manifest.entries] == [0, 1, 4, 8]
    assert result.chunks_written == 4
    assert result.chunks_inherited == 0
    assert result.bytes_read == len(snap.data) * UNIT_SIZE
    assert store.list("chunks/") == sorted(objects_written_by(manifest))
    assert result.bytes_stored == sum(len(store.get(n)) for n in store.list(""))
    assert store.list("manifests/") == [manifest_object_name(FULL_ID)]
    assert _restore(store, manifest) == snap.image()
    assert read_manifest(store, FULL_ID, DEKS[FULL_ID]) == manifest


def test_incremental_writes_only_changed_chunks(store: MemoryObjectStore) -> None:
    vol = _populated()
    snap1 = vol.snapshot()
    full = _backup(store, snap1, FULL_ID, "FULL", None).manifest
    vol.write(3, _text_unit(1000))  # chunk 0 changes
    vol.write(6 * UPC + 2, _random_unit(6))  # chunk 6: new data in a former hole
    snap2 = vol.snapshot()
    result = _backup(store, snap2, INC_ID, "INCREMENTAL", full)
    inc = result.manifest
    assert inc.kind == "INCREMENTAL"
    assert inc.parent_backup_id == FULL_ID
    assert result.chunks_written == 2
    assert result.chunks_inherited == 3
    assert objects_written_by(inc) == {chunk_object_name(INC_ID, 0), chunk_object_name(INC_ID, 6)}
    assert store.list(f"chunks/{INC_ID}/") == sorted(objects_written_by(inc))
    assert {e.chunk_index: e.dek_id for e in inc.entries} == {0: INC_ID, 1: FULL_ID, 4: FULL_ID, 6: INC_ID, 8: FULL_ID}
    assert dek_ids(inc) == {FULL_ID, INC_ID}
    # chunk 2 (allocated zeros, absent from the parent) is re-read; unchanged stored chunks are not.
    assert sorted(snap2.reads) == [*range(UPC), 2 * UPC + 5, 6 * UPC + 2]
    assert _restore(store, full) == snap1.image()
    assert _restore(store, inc) == snap2.image()


def test_incremental_of_an_incremental_and_unchanged_volume(store: MemoryObjectStore) -> None:
    vol = _populated()
    full = _backup(store, vol.snapshot(), FULL_ID, "FULL", None).manifest
    vol.write(4 * UPC + 1, _text_unit(7))
    inc = _backup(store, vol.snapshot(), INC_ID, "INCREMENTAL", full).manifest
    snap3 = vol.snapshot()
    result = _backup(store, snap3, INC2_ID, "INCREMENTAL", inc)
    assert result.chunks_written == 0
    assert result.chunks_inherited == 4
    assert {e.dek_id for e in result.manifest.entries} == {FULL_ID, INC_ID}
    assert dek_ids(result.manifest) == {FULL_ID, INC_ID, INC2_ID}  # its own: the manifest is sealed with it
    assert _restore(store, result.manifest) == snap3.image()


def test_trim_in_an_otherwise_unchanged_chunk_is_seen(store: MemoryObjectStore) -> None:
    vol = _populated()
    full = _backup(store, vol.snapshot(), FULL_ID, "FULL", None).manifest
    vol.trim(4 * UPC + UPC - 1)  # chunk 4 keeps unit 64 unchanged (seq <= parent); only the unit mask reveals the trim
    vol.trim(UPC + 1)  # chunk 1 becomes empty: a hole, neither written nor inherited
    snap = vol.snapshot()
    result = _backup(store, snap, INC_ID, "INCREMENTAL", full)
    assert [(e.chunk_index, e.dek_id) for e in result.manifest.entries] == [(0, FULL_ID), (4, INC_ID), (8, FULL_ID)]
    assert _restore(store, result.manifest) == snap.image()


def test_chunk_overwritten_with_zeros_becomes_a_hole(store: MemoryObjectStore) -> None:
    vol = _populated()
    full = _backup(store, vol.snapshot(), FULL_ID, "FULL", None).manifest
    vol.write(8 * UPC + 1, bytes(UNIT_SIZE))
    snap = vol.snapshot()
    inc = _backup(store, snap, INC_ID, "INCREMENTAL", full).manifest
    assert 8 not in {e.chunk_index for e in inc.entries}
    assert _restore(store, inc) == snap.image()


def test_incremental_without_parent_is_full(store: MemoryObjectStore) -> None:
    result = _backup(store, _populated().snapshot(), FULL_ID, "INCREMENTAL", None)
    assert result.manifest.kind == "FULL"
    assert result.manifest.parent_backup_id is None


def test_resize_forces_full(store: MemoryObjectStore) -> None:
    vol = _populated()
    full = _backup(store, vol.snapshot(), FULL_ID, "FULL", None).manifest
    vol.resize(SIZE + 4 * CHUNK_SIZE)
    vol.write(11 * UPC, _text_unit(5))
    snap = vol.snapshot()
    result = _backup(store, snap, INC_ID, "INCREMENTAL", full)
    assert result.manifest.kind == "FULL"
    assert result.manifest.parent_backup_id is None
    assert result.chunks_inherited == 0
    assert {e.dek_id for e in result.manifest.entries} == {INC_ID}
    assert _restore(store, result.manifest, {INC_ID: DEKS[INC_ID]}) == snap.image()


def test_parent_of_another_volume_is_rejected(store: MemoryObjectStore) -> None:
    full = _backup(store, _populated().snapshot(), FULL_ID, "FULL", None).manifest
    other = FakeVolume(SIZE, OTHER_VOLUME).snapshot()
    with pytest.raises(ValueError, match="not"):
        _backup(store, other, INC_ID, "INCREMENTAL", full)


def test_progress_reports_every_chunk_read(store: MemoryObjectStore) -> None:
    calls: list[tuple[int, int]] = []
    write_backup(
        store,
        _populated().snapshot(),
        backup_id=FULL_ID,
        volume_id=VOLUME,
        dek=DEKS[FULL_ID],
        kind="FULL",
        parent=None,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(i, 5) for i in range(1, 6)]  # chunks 0, 1, 2 (zeros), 4, 8


def test_same_random_gives_identical_objects() -> None:
    def counter() -> Callable[[int], bytes]:
        state = iter(range(1 << 30))
        return lambda n: next(state).to_bytes(n, "big")

    stores = []
    for _ in range(2):
        store = MemoryObjectStore()
        snap = _populated().snapshot()
        write_backup(
            store,
            snap,
            backup_id=FULL_ID,
            volume_id=VOLUME,
            dek=DEKS[FULL_ID],
            kind="FULL",
            parent=None,
            random=counter(),
        )
        stores.append({name: store.get(name) for name in store.list("")})
    assert stores[0] == stores[1]


# --------------------------------------------------------------------------------------------------- delete + gc


def test_deleting_the_parent_keeps_the_child_restorable(store: MemoryObjectStore) -> None:
    vol = _populated()
    full = _backup(store, vol.snapshot(), FULL_ID, "FULL", None).manifest
    vol.write(0, _text_unit(99))
    snap = vol.snapshot()
    inc = _backup(store, snap, INC_ID, "INCREMENTAL", full).manifest
    delete_backup(store, full, still_referenced=objects_referenced(inc))
    assert not store.exists(manifest_object_name(FULL_ID))
    assert not store.exists(chunk_object_name(FULL_ID, 0))  # replaced in the child, so unreferenced
    assert store.exists(chunk_object_name(FULL_ID, 4))  # inherited by the child
    assert _restore(store, inc) == snap.image()
    # The child goes last and takes the inherited objects with it: nothing leaks.
    delete_backup(store, inc, still_referenced=set())
    assert store.list("") == []


def test_deleting_the_child_keeps_the_parent(store: MemoryObjectStore) -> None:
    vol = _populated()
    snap1 = vol.snapshot()
    full = _backup(store, snap1, FULL_ID, "FULL", None).manifest
    vol.write(0, _text_unit(99))
    inc = _backup(store, vol.snapshot(), INC_ID, "INCREMENTAL", full).manifest
    delete_backup(store, inc, still_referenced=objects_referenced(full))
    assert store.list(f"chunks/{INC_ID}/") == []
    assert not store.exists(manifest_object_name(INC_ID))
    assert _restore(store, full) == snap1.image()


class FaultyStore(MemoryObjectStore):
    """Fails the nth put (1-based) or any delete, as a crash would interrupt the sequence there."""

    def __init__(self, *, fail_put: int | None = None, fail_delete: bool = False) -> None:
        super().__init__()
        self.fail_put, self.fail_delete, self.puts = fail_put, fail_delete, 0
        self.events: list[str] = []

    def put(self, name: str, data: bytes, *, durable: bool = True) -> None:
        self.puts += 1
        if self.puts == self.fail_put:
            raise Unavailable(dependency="faulty store")
        super().put(name, data, durable=durable)
        self.events.append(f"{'put' if durable else 'put-deferred'} {name.split('/')[0]}")

    def sync(self) -> None:
        self.events.append("sync")

    def delete(self, name: str) -> None:
        if self.fail_delete and name.startswith("chunks/"):
            raise Unavailable(dependency="faulty store")
        super().delete(name)


def test_chunks_are_made_durable_before_the_manifest_commits() -> None:
    store = FaultyStore()
    _backup(store, _populated().snapshot(), FULL_ID, "FULL", None)
    last_chunk = max(i for i, e in enumerate(store.events) if e.startswith("put-deferred chunks"))
    sync = store.events.index("sync")
    assert last_chunk < sync < store.events.index("put manifests")
    assert store.events[-1] == "put manifests"


def test_crash_during_delete_leaves_garbage_never_a_dangling_manifest() -> None:
    store = FaultyStore()
    full = _backup(store, _populated().snapshot(), FULL_ID, "FULL", None).manifest
    store.fail_delete = True
    with pytest.raises(Unavailable):
        delete_backup(store, full, still_referenced=set())
    assert store.list("manifests/") == []  # manifest gone first (D1)
    assert store.list("chunks/")  # chunks remain as garbage
    store.fail_delete = False
    assert collect_garbage(store, live=[], in_progress=()) == sorted(objects_written_by(full))
    assert store.list("") == []


def test_collect_garbage_keeps_live_and_in_progress(store: MemoryObjectStore) -> None:
    vol = _populated()
    full = _backup(store, vol.snapshot(), FULL_ID, "FULL", None).manifest
    store.put(chunk_object_name(INC_ID, 3), b"uncommitted, being written")
    store.put(chunk_object_name(INC2_ID, 3), b"left by a crash")
    store.put(manifest_object_name(INC2_ID), b"orphan manifest")
    before = set(store.list(""))
    removed = collect_garbage(store, live=[full], in_progress={INC_ID})
    assert removed == [manifest_object_name(INC2_ID), chunk_object_name(INC2_ID, 3)]
    assert set(store.list("")) == before - set(removed)
    assert _restore(store, full) == vol.snapshot().image()


# --------------------------------------------------------------------------------------------------- crash restart


def test_crash_restart_removes_leftovers_and_completes() -> None:
    store = FaultyStore(fail_put=3)
    vol = _populated()
    snap = vol.snapshot()
    with pytest.raises(Unavailable):
        _backup(store, snap, FULL_ID, "FULL", None)
    assert store.list("manifests/") == []  # nothing committed
    leftovers = store.list(f"chunks/{FULL_ID}/")
    assert leftovers  # the first chunks were put before the failure
    store.put(chunk_object_name(FULL_ID, 7), b"stray object from some older attempt")
    store.fail_put = None
    result = _backup(store, snap, FULL_ID, "FULL", None)
    assert store.list(f"chunks/{FULL_ID}/") == sorted(objects_written_by(result.manifest))
    assert _restore(store, result.manifest) == snap.image()


def test_crash_before_the_manifest_commits_nothing() -> None:
    store = FaultyStore(fail_put=5)  # 4 chunks, then the manifest
    with pytest.raises(Unavailable):
        _backup(store, _populated().snapshot(), FULL_ID, "FULL", None)
    assert store.list("manifests/") == []
    assert len(store.list("chunks/")) == 4


def test_rewriting_a_committed_backup_is_a_conflict(store: MemoryObjectStore) -> None:
    snap = _populated().snapshot()
    _backup(store, snap, FULL_ID, "FULL", None)
    before = {n: store.get(n) for n in store.list("")}
    with pytest.raises(Conflict):
        _backup(store, snap, FULL_ID, "FULL", None)
    assert {n: store.get(n) for n in store.list("")} == before


def test_chunk_from_an_aborted_attempt_cannot_be_substituted() -> None:
    store = FaultyStore(fail_put=5)
    vol = _populated()
    with pytest.raises(Unavailable):
        _backup(store, vol.snapshot(), FULL_ID, "FULL", None)
    stale = store.get(chunk_object_name(FULL_ID, 0))  # a copy kept by someone with access to the store
    vol.write(0, _text_unit(4242))  # the retry sees a newer snapshot
    store.fail_put = None
    full = _backup(store, vol.snapshot(), FULL_ID, "FULL", None).manifest
    store.put(chunk_object_name(FULL_ID, 0), stale)  # same name, same DEK, same AAD: only the pinned tag differs
    with pytest.raises(IntegrityError):
        _restore(store, full)


# --------------------------------------------------------------------------------------------------- tampering


Chain = tuple[Manifest, Manifest]


@pytest.fixture
def chain(store: MemoryObjectStore) -> tuple[Manifest, Manifest]:
    vol = _populated()
    full = _backup(store, vol.snapshot(), FULL_ID, "FULL", None).manifest
    vol.write(4 * UPC + 3, _text_unit(3))
    inc = _backup(store, vol.snapshot(), INC_ID, "INCREMENTAL", full).manifest
    return full, inc


def test_wrong_dek_for_the_manifest(store: MemoryObjectStore, chain: Chain) -> None:
    with pytest.raises(DecryptionFailed):
        read_manifest(store, INC_ID, DEKS[FULL_ID])


def test_wrong_dek_for_an_inherited_chunk(store: MemoryObjectStore, chain: Chain) -> None:
    _, inc = chain
    with pytest.raises(DecryptionFailed):
        _restore(store, inc, {FULL_ID: DEKS[INC2_ID], INC_ID: DEKS[INC_ID]})


def test_missing_dek_is_an_integrity_error_naming_it(store: MemoryObjectStore, chain: Chain) -> None:
    _, inc = chain
    written: list[int] = []
    with pytest.raises(IntegrityError, match=FULL_ID) as info:
        restore_backup(store, inc, {INC_ID: DEKS[INC_ID]}, lambda offset, _data: written.append(offset))
    assert info.value.context["dek_id"] == FULL_ID
    assert written == []  # checked before anything is written


def test_tampered_chunk(store: MemoryObjectStore, chain: Chain) -> None:
    _, inc = chain
    name = chunk_object_name(FULL_ID, 1)
    blob = bytearray(store.get(name))
    blob[len(blob) // 2] ^= 0x40
    store.put(name, bytes(blob))
    with pytest.raises(IntegrityError):
        _restore(store, inc)


def test_truncated_chunk(store: MemoryObjectStore, chain: Chain) -> None:
    _, inc = chain
    name = chunk_object_name(INC_ID, 4)
    store.put(name, store.get(name)[:-1])
    with pytest.raises(IntegrityError):
        _restore(store, inc)


def test_missing_chunk_object(store: MemoryObjectStore, chain: Chain) -> None:
    _, inc = chain
    store.delete(chunk_object_name(FULL_ID, 8))
    with pytest.raises(IntegrityError, match="missing"):
        _restore(store, inc)


def test_swapped_chunk_objects(store: MemoryObjectStore, chain: Chain) -> None:
    full, _ = chain
    a, b = chunk_object_name(FULL_ID, 0), chunk_object_name(FULL_ID, 4)
    blob_a, blob_b = store.get(a), store.get(b)
    store.put(a, blob_b)
    store.put(b, blob_a)
    with pytest.raises(IntegrityError):
        _restore(store, full)


def test_chunk_aad_binds_index_object_name_and_volume(store: MemoryObjectStore, chain: Chain) -> None:
    # The manifest's pinned tag catches swaps first; the AAD is the second lock, checked here directly.
    name = chunk_object_name(FULL_ID, 4)
    blob, aead = store.get(name), Aead(DEKS[FULL_ID])
    assert open_chunk(aead, blob, backup_chain=VOLUME, chunk_index=4, object_name=name)
    for chain_id, index, object_name in [
        (VOLUME, 0, name),
        (VOLUME, 4, chunk_object_name(INC_ID, 4)),
        (OTHER_VOLUME, 4, name),
    ]:
        with pytest.raises(DecryptionFailed):
            open_chunk(aead, blob, backup_chain=chain_id, chunk_index=index, object_name=object_name)


def test_tampered_manifest(store: MemoryObjectStore, chain: Chain) -> None:
    name = manifest_object_name(INC_ID)
    blob = bytearray(store.get(name))
    blob[20] ^= 0x01
    store.put(name, bytes(blob))
    with pytest.raises(IntegrityError):
        read_manifest(store, INC_ID, DEKS[INC_ID])


def test_manifest_of_another_backup_under_this_name(store: MemoryObjectStore, chain: Chain) -> None:
    # Even with the right key for the foreign manifest, the AAD binds the backup id.
    store.put(manifest_object_name(INC2_ID), store.get(manifest_object_name(INC_ID)))
    with pytest.raises(IntegrityError):
        read_manifest(store, INC2_ID, DEKS[INC_ID])


# --------------------------------------------------------------------------------------------------- compression


def test_incompressible_chunk_stored_raw_compressible_compressed(store: MemoryObjectStore) -> None:
    vol = FakeVolume(4 * CHUNK_SIZE)
    for unit in range(UPC):
        vol.write(unit, _text_unit(unit))  # chunk 0: text
        vol.write(UPC + unit, _random_unit(unit))  # chunk 1: random
    vol.write(2 * UPC, _random_unit(1))  # chunk 2: random first unit, then zeros: the sample says raw
    snap = vol.snapshot()
    manifest = _backup(store, snap, FULL_ID, "FULL", None).manifest
    headers = {
        e.chunk_index: ObjectHeader.unpack(store.get(e.object_name), magic=CHUNK_MAGIC, what="t")
        for e in manifest.entries
    }
    assert headers[0].flags == FLAG_ZSTD
    assert headers[0].compressed
    assert headers[1].flags == 0
    assert not headers[1].compressed
    assert headers[2].flags == 0  # would compress 16:1 overall; the cheap first-unit sample decides
    stored = {e.chunk_index: e.stored_length for e in manifest.entries}
    assert stored[0] < CHUNK_SIZE // 2
    assert stored[1] == CHUNK_SIZE + 33
    assert _restore(store, manifest) == snap.image()


# --------------------------------------------------------------------------------------------------- planner


def test_planner_rejects_unsorted_or_out_of_range_units() -> None:
    with pytest.raises(ValueError, match="sorted"):
        plan_backup([(2, 1), (1, 1)], size=CHUNK_SIZE, seq=5, volume_id=VOLUME, kind="FULL", parent=None)
    with pytest.raises(ValueError, match="sorted"):
        plan_backup([(UPC, 1)], size=CHUNK_SIZE, seq=5, volume_id=VOLUME, kind="FULL", parent=None)
    with pytest.raises(ValueError, match="seq"):
        plan_backup([(0, 6)], size=CHUNK_SIZE, seq=5, volume_id=VOLUME, kind="FULL", parent=None)


def test_planner_rejects_a_parent_from_the_future(store: MemoryObjectStore) -> None:
    vol = _populated()
    full = _backup(store, vol.snapshot(), FULL_ID, "FULL", None).manifest
    with pytest.raises(ValueError, match="newer"):
        plan_backup([], size=SIZE, seq=full.snapshot_seq - 1, volume_id=VOLUME, kind="INCREMENTAL", parent=full)


def test_planner_explains_a_forced_full(store: MemoryObjectStore) -> None:
    full = _backup(store, _populated().snapshot(), FULL_ID, "FULL", None).manifest
    plan = plan_backup([], size=2 * SIZE, seq=99, volume_id=VOLUME, kind="INCREMENTAL", parent=full)
    assert plan.kind == "FULL"
    assert "R3.3" in plan.reason
    assert plan.parent_backup_id is None


def test_write_backup_argument_checks(store: MemoryObjectStore) -> None:
    snap = _populated().snapshot()
    with pytest.raises(ValueError, match="DEK"):
        write_backup(store, snap, backup_id=FULL_ID, volume_id=VOLUME, dek=b"short", kind="FULL", parent=None)
    with pytest.raises(ValueError, match="volume"):
        write_backup(
            store, snap, backup_id=FULL_ID, volume_id=OTHER_VOLUME, dek=DEKS[FULL_ID], kind="FULL", parent=None
        )
    with pytest.raises(ValueError):
        write_backup(store, snap, backup_id="a/b", volume_id=VOLUME, dek=DEKS[FULL_ID], kind="FULL", parent=None)
    assert store.list("") == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"size": -1}, "negative"),
        ({"chunk_size": 1000}, "chunk_size"),
        ({"size": (2**31 + 1) * CHUNK_SIZE}, "too large"),
        ({"kind": "DIFFERENTIAL"}, "kind"),
    ],
)
def test_planner_argument_checks(changes: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"size": CHUNK_SIZE, "seq": 1, "volume_id": VOLUME, "kind": "FULL", "parent": None}
    with pytest.raises(ValueError, match=reason):
        plan_backup([], **(args | changes))


def test_planner_chunk_size_change_forces_full(store: MemoryObjectStore) -> None:
    full = _backup(store, _populated().snapshot(), FULL_ID, "FULL", None).manifest
    plan = plan_backup(
        [(0, 1)], size=SIZE, seq=99, volume_id=VOLUME, kind="INCREMENTAL", parent=full, chunk_size=2 * CHUNK_SIZE
    )
    assert plan.kind == "FULL"
    assert "chunk size" in plan.reason
    assert plan.chunk_count == 5


def test_write_backup_more_argument_checks(store: MemoryObjectStore) -> None:
    vol = _populated()
    full = _backup(store, vol.snapshot(), FULL_ID, "FULL", None).manifest
    with pytest.raises(ValueError, match="workers"):
        write_backup(
            store,
            vol.snapshot(),
            backup_id=INC_ID,
            volume_id=VOLUME,
            dek=DEKS[INC_ID],
            kind="FULL",
            parent=None,
            workers=0,
        )
    with pytest.raises(ValueError, match="own parent"):
        write_backup(
            store,
            vol.snapshot(),
            backup_id=FULL_ID,
            volume_id=VOLUME,
            dek=DEKS[FULL_ID],
            kind="INCREMENTAL",
            parent=full,
        )
    with pytest.raises(ValueError, match="workers"):
        restore_backup(store, full, DEKS, lambda _o, _d: None, workers=0)


def test_source_returning_a_short_unit_is_rejected(store: MemoryObjectStore) -> None:
    vol = FakeVolume(CHUNK_SIZE)
    vol.data[0] = (b"short", 1)
    vol.seq = 1
    with pytest.raises(ValueError, match="read_unit"):
        _backup(store, vol.snapshot(), FULL_ID, "FULL", None)


def test_failure_in_a_sealing_worker_aborts_without_a_manifest(store: MemoryObjectStore) -> None:
    with pytest.raises(ValueError, match="nonce"):
        write_backup(
            store,
            _populated().snapshot(),
            backup_id=FULL_ID,
            volume_id=VOLUME,
            dek=DEKS[FULL_ID],
            kind="FULL",
            parent=None,
            random=lambda n: b"short",
        )
    assert store.list("manifests/") == []


def test_restore_progress_and_order(store: MemoryObjectStore) -> None:
    manifest = _backup(store, _populated().snapshot(), FULL_ID, "FULL", None).manifest
    offsets: list[int] = []
    calls: list[tuple[int, int]] = []
    restore_backup(
        store, manifest, DEKS, lambda offset, _data: offsets.append(offset), lambda d, t: calls.append((d, t))
    )
    assert offsets == [e.chunk_index * CHUNK_SIZE for e in manifest.entries]
    assert calls == [(i, 4) for i in range(1, 5)]


def test_authentic_chunk_of_the_wrong_length_is_rejected(store: MemoryObjectStore) -> None:
    # Only a DEK holder (a buggy writer) can produce this: an authentic chunk shorter than its span.
    aead, name = Aead(DEKS[FULL_ID]), chunk_object_name(FULL_ID, 0)
    blob = seal_chunk(aead, b"\x01" * 1000, backup_chain=VOLUME, chunk_index=0, object_name=name, random=os.urandom)
    store.put(name, blob)
    entry = ManifestEntry(0, name, FULL_ID, len(blob), 1, blob[-16:])
    manifest = Manifest(
        backup_id=FULL_ID,
        volume_id=VOLUME,
        size_bytes=CHUNK_SIZE,
        snapshot_seq=1,
        chunk_size=CHUNK_SIZE,
        kind="FULL",
        parent_backup_id=None,
        entries=(entry,),
    )
    with pytest.raises(IntegrityError):
        _restore(store, manifest)
