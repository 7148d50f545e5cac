"""VolumeStore and SnapshotReader: round trips, sparseness, snapshots, crash safety, clones and tampering.

The rules referred to (W1, A3, ...) are in docs/design/volume-format.md.
"""

from __future__ import annotations

import gc
import os
import random
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from blockvault.crypto.envelope import encode_context
from blockvault.errors import Conflict, DecryptionFailed, IntegrityError, InvalidArgument, NotFound, Unavailable
from blockvault.store import UNIT_SIZE, SnapshotReader, VolumeStore, destroy
from blockvault.store import format as fmt
from blockvault.store import volume as volume_module

DEK = bytes(range(32))
OTHER_DEK = bytes(range(100, 132))
VOLUME = "ocid1.volume.oc1..test"
U = UNIT_SIZE


def pattern(length: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(length)


@pytest.fixture
def vol_dir(tmp_path: Path) -> Path:
    return tmp_path / "vol"


@pytest.fixture
def make_store(vol_dir: Path) -> Iterator[Callable[..., VolumeStore]]:
    opened: list[VolumeStore] = []

    def make(size: int = 8 * U, *, directory: Path = vol_dir, volume_id: str = VOLUME, dek: bytes = DEK) -> VolumeStore:
        store = VolumeStore.create(directory, volume_id=volume_id, size_bytes=size, dek=dek)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def reopen(directory: Path, **kwargs: object) -> VolumeStore:
    return VolumeStore.open(directory, volume_id=VOLUME, dek=DEK, **kwargs)  # type: ignore[arg-type]


def crash_copy(directory: Path, target: Path) -> Path:
    """What survives a crash right now: the data file and the committed SQLite state (db + WAL, not the shm)."""
    target.mkdir()
    for name in (fmt.DATA_FILE, fmt.MAP_FILE, fmt.MAP_FILE + "-wal"):
        if (directory / name).exists():
            shutil.copyfile(directory / name, target / name)
    return target


def slot_of(directory: Path, unit: int) -> int:
    with sqlite3.connect(directory / fmt.MAP_FILE) as conn:
        row = conn.execute("SELECT slot FROM map WHERE unit = ?", (unit,)).fetchone()
    conn.close()
    assert row is not None
    return int(row[0])


def disk_usage(directory: Path) -> int:
    return sum(path.stat().st_blocks * 512 for path in directory.iterdir())


# ------------------------------------------------------------------------------------------------------ format


@pytest.mark.parametrize(("volume_id", "unit", "seq"), [("v", 0, 1), (VOLUME, 123456, 2**32), ("é/ü", 7, 0)])
def test_unit_aad_fast_path_matches_encode_context(volume_id: str, unit: int, seq: int) -> None:
    expected = encode_context({"volume": volume_id, "unit": str(unit), "seq": str(seq)})
    assert fmt.unit_aad(volume_id, unit, seq) == expected == fmt.unit_aad_reference(volume_id, unit, seq)


@pytest.mark.parametrize(
    ("volume_id", "unit", "seq", "piece"), [("v", 0, 1, 0), (VOLUME, 123456, 2**32, 3), ("é/ü", 7, 0, 2)]
)
def test_piece_aad_fast_path_matches_encode_context(volume_id: str, unit: int, seq: int, piece: int) -> None:
    expected = encode_context({"volume": volume_id, "unit": str(unit), "seq": str(seq), "piece": str(piece)})
    assert (
        fmt.piece_aad(volume_id, unit, seq, piece) == expected == fmt.piece_aad_reference(volume_id, unit, seq, piece)
    )
    assert expected != fmt.unit_aad(volume_id, unit, seq)  # a v2 piece never authenticates as a v1 unit


def test_row_pieces_reads_the_layout_from_the_lengths() -> None:
    n, t = fmt.NONCE_SIZE, fmt.TAG_SIZE
    assert fmt.row_pieces(bytes(n), bytes(t)) == 1
    assert fmt.row_pieces(bytes(n * fmt.PIECES), bytes(t * fmt.PIECES)) == fmt.PIECES
    for nonce, tag in [(bytes(n), bytes(t * fmt.PIECES)), (bytes(n * 2), bytes(t * 2)), (b"", b""), (bytes(n), b"x")]:
        assert fmt.row_pieces(nonce, tag) == 0


def test_unit_count_rounds_up() -> None:
    assert [fmt.unit_count(n) for n in (0, 1, U, U + 1)] == [0, 1, 1, 2]


# ------------------------------------------------------------------------------------------------------ data path


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, U), (1, 1), (U - 3, 7), (12345, 3 * U + 17), (0, 8 * U), (7 * U + 1, U - 1), (5 * U, 2 * U)],
)
def test_round_trip_at_odd_offsets_matches_a_bytearray(
    make_store: Callable[..., VolumeStore], offset: int, length: int
) -> None:
    store = make_store()
    model = bytearray(store.size)
    for seed, (off, n) in enumerate([(offset, length), (offset + length // 3, length // 2), (3, 5)], start=1):
        data = pattern(n, seed)
        store.write(off, data)
        model[off : off + n] = data
    assert store.read(0, store.size) == model
    assert store.read(offset, length) == model[offset : offset + length]
    assert read_into(store, offset, length) == model[offset : offset + length]  # pending rows
    store.flush()
    assert store.read(offset, length) == model[offset : offset + length]
    assert read_into(store, offset, length) == model[offset : offset + length]  # committed rows
    assert read_into(store, 0, store.size) == model


def read_into(store: VolumeStore, offset: int, length: int) -> bytearray:
    out = bytearray(length)
    store.read_into(offset, out)
    return out


def test_write_accepts_bytearray_and_memoryview(make_store: Callable[..., VolumeStore]) -> None:
    store = make_store()
    store.write(10, bytearray(b"abc"))
    store.write(13, memoryview(b"xdefx")[1:4])
    assert store.read(10, 6) == b"abcdef"


def test_unwritten_units_read_as_zeros(make_store: Callable[..., VolumeStore]) -> None:
    store = make_store()
    store.write(3 * U + 100, b"x" * 10)
    assert store.read(0, 3 * U) == bytes(3 * U)
    assert store.read(3 * U, 100) == bytes(100)
    assert store.read(3 * U + 110, 5 * U - 110) == bytes(5 * U - 110)
    assert store.allocated_units() == [3]


def test_out_of_range_io_is_invalid_argument(make_store: Callable[..., VolumeStore]) -> None:
    store = make_store(2 * U)
    with pytest.raises(InvalidArgument):
        store.read(2 * U - 1, 2)
    with pytest.raises(InvalidArgument):
        store.write(2 * U, b"x")
    with pytest.raises(InvalidArgument):
        store.read(-1, 1)
    assert store.read(2 * U, 0) == b""


def test_one_tib_volume_costs_nothing_until_written(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    tib = 2**40
    store = make_store(tib)
    assert disk_usage(vol_dir) < 1024 * 1024
    for offset in (0, tib // 2 + 5, tib - 3):
        store.write(offset, b"abc")
    store.flush()
    assert disk_usage(vol_dir) < 4 * 1024 * 1024
    assert store.read(tib - 3, 3) == b"abc"
    assert store.read(tib // 2, 16) == bytes(5) + b"abc" + bytes(8)
    assert store.allocated_units() == [0, (tib // 2) // U, tib // U - 1]


def test_first_writes_use_home_slots_and_overwrites_use_free_ones(
    make_store: Callable[..., VolumeStore], vol_dir: Path
) -> None:
    store = make_store(4 * U)
    store.write(0, pattern(4 * U))
    assert read_into(store, 0, 4 * U) == pattern(4 * U)  # one run of slots, pending rows
    store.flush()
    assert [slot_of(vol_dir, unit) for unit in range(4)] == [0, 1, 2, 3]
    assert read_into(store, 0, 4 * U) == pattern(4 * U)  # one run of slots, committed rows
    store.write(U, pattern(U, 2))
    store.flush()
    assert slot_of(vol_dir, 1) == 4  # rule A1: never over a committed slot
    store.write(2 * U, pattern(U, 3))
    store.flush()
    assert slot_of(vol_dir, 2) == 1  # rule A3: slot 1 was released by the committed overwrite
    # Units in slots 0, 4, 1, 3: a READ of whole units reads each from its own slot, not from a run starting at 0.
    expected = pattern(4 * U)[:U] + pattern(U, 2) + pattern(U, 3) + pattern(4 * U)[3 * U :]
    assert read_into(store, 0, 4 * U) == expected
    assert read_into(store, U, 2 * U) == expected[U : 3 * U]


def test_a_read_of_whole_units_sees_pending_rows_over_committed_ones(
    make_store: Callable[..., VolumeStore], vol_dir: Path
) -> None:
    store = make_store(4 * U)
    store.write(0, pattern(4 * U))
    store.flush()
    store.write(0, pattern(2 * U, 9))  # units 0 and 1 again: pending, in slots 4 and 5 (a run, as 0 and 1 are)
    assert read_into(store, 0, 2 * U) == pattern(2 * U, 9)
    assert read_into(store, 0, 4 * U) == pattern(2 * U, 9) + pattern(4 * U)[2 * U :]
    store.flush()
    assert [slot_of(vol_dir, unit) for unit in range(2)] == [4, 5]
    assert read_into(store, 0, 2 * U) == pattern(2 * U, 9)


def test_repeated_overwrites_reuse_space(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    store = make_store(4 * U)
    for round_ in range(20):
        store.write(0, pattern(4 * U, round_))
        if round_ % 3 == 0:
            store.flush()
    store.flush()
    # Blocks, not the size: the file's size runs ahead of the slots in use (sparse, volume-format.md).
    assert (vol_dir / fmt.DATA_FILE).stat().st_blocks * 512 <= 12 * U
    assert store.read(0, 4 * U) == pattern(4 * U, 19)


def test_seq_counts_seals_and_persists(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    store = make_store()
    store.write(U - 1, b"ab")  # two units, sealed in PIECES pieces each
    store.write(0, b"c")
    assert store.seq == 3 * fmt.PIECES
    store.close()
    with reopen(vol_dir) as again:
        assert again.seq == 3 * fmt.PIECES


def test_resize_grows_and_refuses_to_shrink(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    store = make_store(U + 10)
    store.write(0, b"\xff" * (U + 10))
    store.resize(U + 10)  # same size: no-op
    store.resize(3 * U)
    assert store.size == 3 * U
    assert store.read(U + 10, 2 * U - 10) == bytes(2 * U - 10)
    store.write(3 * U - 1, b"z")
    with pytest.raises(InvalidArgument):
        store.resize(2 * U)
    with pytest.raises(InvalidArgument):
        store.resize(fmt.MAX_VOLUME_SIZE + 1)
    store.close()
    with reopen(vol_dir) as again:
        assert again.size == 3 * U
        assert again.read(U, 11) == b"\xff" * 10 + b"\x00"
        assert again.read(3 * U - 1, 1) == b"z"


def test_grow_zeroes_bytes_past_the_old_end_of_a_whole_unit_write(make_store: Callable[..., VolumeStore]) -> None:
    store = make_store(U // 2)
    assert store.write_unit_if_absent(0, b"\x01" * U)
    store.resize(U)
    assert store.read(0, U) == b"\x01" * (U // 2) + bytes(U // 2)


def test_reopen_after_close_returns_flushed_data(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    store = make_store()
    data = pattern(3 * U + 5)
    store.write(U - 2, data)
    store.close()
    store.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        store.read(0, 1)
    with reopen(vol_dir) as again:
        assert again.read(U - 2, len(data)) == data
        assert again.allocated_units() == [0, 1, 2, 3, 4]
    with reopen(vol_dir) as again:  # units 1-3 are whole; no rows in memory yet: the general path, then the run's
        assert read_into(again, U, 3 * U) == data[2 : 3 * U + 2]
        assert read_into(again, U, 3 * U) == data[2 : 3 * U + 2]


# ------------------------------------------------------------------------------------------------------ crashes


def test_crash_before_flush_keeps_old_data_per_unit(
    make_store: Callable[..., VolumeStore], vol_dir: Path, tmp_path: Path
) -> None:
    store = make_store(4 * U)
    old = pattern(4 * U, 1)
    store.write(0, old)
    store.flush()
    store.write(U // 2, pattern(2 * U, 2))  # touches units 0..2, not flushed
    store.write(3 * U, b"new")
    copy = crash_copy(vol_dir, tmp_path / "crashed")
    # A torn or partial write can only have hit slots nothing committed references: fill those with garbage.
    referenced = {slot_of(copy, unit) for unit in range(4)}
    with open(copy / fmt.DATA_FILE, "r+b") as data:
        slots = os.fstat(data.fileno()).st_size // U
        for slot in set(range(slots + 2)) - referenced:
            data.seek(slot * U)
            data.write(pattern(U, 1000 + slot))
    with VolumeStore.open(copy, volume_id=VOLUME, dek=DEK) as recovered:
        assert recovered.read(0, 4 * U) == old
        assert recovered.seq == 4  # 4 whole-unit writes: one seal each
        recovered.write(0, b"after")  # the rebuilt allocator must not hand out a referenced slot
        recovered.flush()
        assert recovered.read(0, 4 * U) == b"after" + old[5:]


def test_unflushed_writes_vanish_after_abandon(vol_dir: Path) -> None:
    store = VolumeStore.create(vol_dir, volume_id=VOLUME, size_bytes=2 * U, dek=DEK)
    store.write(0, b"kept")
    store.flush()
    store.write(0, b"lost")
    store.write(U, b"lost too")
    del store
    gc.collect()
    with reopen(vol_dir) as again:
        assert again.read(0, 4) == b"kept"
        assert again.read(U, 8) == bytes(8)
        assert again.allocated_units() == [0]


def test_fua_write_is_durable_on_return(make_store: Callable[..., VolumeStore], vol_dir: Path, tmp_path: Path) -> None:
    store = make_store()
    store.write(5, b"forced", fua=True)
    with VolumeStore.open(crash_copy(vol_dir, tmp_path / "c"), volume_id=VOLUME, dek=DEK) as recovered:
        assert recovered.read(5, 6) == b"forced"


def test_snapshot_is_durable_at_once(make_store: Callable[..., VolumeStore], vol_dir: Path, tmp_path: Path) -> None:
    store = make_store()
    store.write(0, b"snap me")
    store.snapshot("s1")
    copy = crash_copy(vol_dir, tmp_path / "c")
    with SnapshotReader.open(copy, name="s1", volume_id=VOLUME, dek=DEK) as reader:
        assert reader.read(0, 7) == b"snap me"


# ------------------------------------------------------------------------------------------------------ snapshots


def test_writes_after_snapshot_do_not_change_it(make_store: Callable[..., VolumeStore]) -> None:
    store = make_store(4 * U)
    before = pattern(4 * U, 1)
    store.write(0, before)
    store.snapshot("s1")
    store.write(100, pattern(3 * U, 2))
    store.flush()
    store.write(3 * U + 200, b"more")  # pending only
    with store.open_snapshot("s1") as reader:
        assert reader.read(0, 4 * U) == before
        assert [reader.read_unit(i) for i in range(4)] == [before[i * U : (i + 1) * U] for i in range(4)]
        assert reader.size == 4 * U
        assert reader.seq == 4  # 4 whole-unit writes: one seal each
        assert reader.units() == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert store.read(100, 3 * U) == pattern(3 * U, 2)


def test_snapshot_units_report_seq_for_incremental_backups(make_store: Callable[..., VolumeStore]) -> None:
    store = make_store(4 * U)
    store.write(0, bytes(4 * U))
    store.snapshot("base")
    store.write(2 * U, b"changed")
    store.snapshot("next")
    with store.open_snapshot("base") as base, store.open_snapshot("next") as nxt:
        changed = [unit for unit, seq in nxt.units() if seq > base.seq]
    assert changed == [2]


def test_snapshot_survives_reopen(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    store = make_store()
    store.write(U, b"frozen")
    store.snapshot("s1")
    store.write(U, b"thawed")
    store.close()
    with SnapshotReader.open(vol_dir, name="s1", volume_id=VOLUME, dek=DEK) as reader:
        assert reader.read(U, 6) == b"frozen"
    with reopen(vol_dir) as again:
        assert again.snapshots() == ["s1"]
        assert again.read(U, 6) == b"thawed"
        again.write(U, b"later!")  # the frozen slot must still be pinned after the rebuild on open
        again.flush()
        with again.open_snapshot("s1") as reader:
            assert reader.read(U, 6) == b"frozen"


def test_snapshot_reader_outlives_the_store(make_store: Callable[..., VolumeStore]) -> None:
    store = make_store()
    store.write(0, b"abc")
    store.snapshot("s")
    reader = store.open_snapshot("s")
    store.close()
    assert reader.read(0, 3) == b"abc"
    reader.close()
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read(0, 3)


def test_snapshot_names(make_store: Callable[..., VolumeStore]) -> None:
    store = make_store()
    store.snapshot("b")
    store.snapshot("a")
    assert store.snapshots() == ["b", "a"]
    with pytest.raises(Conflict):
        store.snapshot("a")
    with pytest.raises(InvalidArgument):
        store.snapshot("")
    with pytest.raises(NotFound):
        store.open_snapshot("missing")
    store.delete_snapshot("b")
    store.delete_snapshot("b")
    assert store.snapshots() == ["a"]


def test_delete_snapshot_releases_its_slots(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    store = make_store(2 * U)
    store.write(0, pattern(2 * U, 1))
    store.snapshot("s")
    store.write(0, pattern(2 * U, 2))
    store.flush()
    with store.open_snapshot("s") as reader:
        store.delete_snapshot("s")
        with pytest.raises(NotFound):
            reader.read(0, 1)
    size_after_delete = (vol_dir / fmt.DATA_FILE).stat().st_size
    for seed in range(3, 10):
        store.write(0, pattern(2 * U, seed))
        store.flush()
    assert (vol_dir / fmt.DATA_FILE).stat().st_size == size_after_delete
    assert store.read(0, 2 * U) == pattern(2 * U, 9)


def test_snapshot_reader_is_thread_safe(make_store: Callable[..., VolumeStore]) -> None:
    store = make_store(16 * U)
    data = pattern(16 * U)
    store.write(0, data)
    store.snapshot("s")
    errors: list[BaseException] = []
    with store.open_snapshot("s") as reader:

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(30):
                    off = rng.randrange(16 * U)
                    n = rng.randrange(1, 16 * U - off + 1)
                    assert reader.read(off, n) == data[off : off + n]
            except BaseException as exc:  # noqa: BLE001 - surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for seed in range(10):
            store.write(seed * U, pattern(U, seed))  # the live volume changes meanwhile
        for thread in threads:
            thread.join()
    assert errors == []


# ------------------------------------------------------------------------------------------------------ clones


@pytest.fixture
def source(tmp_path: Path) -> Iterator[SnapshotReader]:
    with VolumeStore.create(tmp_path / "src", volume_id="src-vol", size_bytes=4 * U, dek=OTHER_DEK) as origin:
        origin.write(0, pattern(4 * U, 42))
        origin.snapshot("clone-base")
        origin.write(0, b"after the snapshot")
    with SnapshotReader.open(tmp_path / "src", name="clone-base", volume_id="src-vol", dek=OTHER_DEK) as reader:
        yield reader


def test_clone_reads_fall_through_to_the_source(
    source: SnapshotReader, make_store: Callable[..., VolumeStore], vol_dir: Path
) -> None:
    make_store(6 * U).close()
    expected = bytearray(pattern(4 * U, 42) + bytes(2 * U))
    with reopen(vol_dir, source=source) as clone:
        assert clone.read(0, 6 * U) == expected
        assert read_into(clone, 0, 6 * U) == expected
        clone.write(U - 3, b"mine!!")  # partial writes merge the source content of units 0 and 1
        expected[U - 3 : U + 3] = b"mine!!"
        assert clone.read(0, 6 * U) == expected
        assert clone.allocated_units() == [0, 1]
        assert clone.has_unit(1)
        assert not clone.has_unit(2)
    with reopen(vol_dir, source=source) as clone:
        assert clone.read(0, 6 * U) == expected
        clone.write(2 * U, pattern(U, 7))  # unit 2 the clone's own, unit 3 still the source's
        expected[2 * U : 3 * U] = pattern(U, 7)
        clone.flush()
        assert read_into(clone, 2 * U, 2 * U) == expected[2 * U : 4 * U]
        assert read_into(clone, 0, 6 * U) == expected


def test_write_unit_if_absent_never_overwrites_the_volume(
    source: SnapshotReader, make_store: Callable[..., VolumeStore], vol_dir: Path
) -> None:
    make_store(4 * U).close()
    with reopen(vol_dir, source=source) as clone:
        clone.write(2 * U + 1, b"user")
        for unit, _seq in source.units():
            clone.write_unit_if_absent(unit, source.read_unit(unit))
        assert not clone.write_unit_if_absent(2, bytes(U))
        assert not clone.write_unit_if_absent(0, bytes(U))
        with pytest.raises(ValueError, match="unit"):
            clone.write_unit_if_absent(3, b"short")
        with pytest.raises(InvalidArgument):
            clone.write_unit_if_absent(4, bytes(U))
        clone.flush()
        assert clone.allocated_units() == [0, 1, 2, 3]
    expected = bytearray(pattern(4 * U, 42))
    expected[2 * U + 1 : 2 * U + 5] = b"user"
    with reopen(vol_dir) as hydrated:  # fully hydrated: no source needed any more
        assert hydrated.read(0, 4 * U) == expected


def test_hydration_races_user_writes(
    source: SnapshotReader, make_store: Callable[..., VolumeStore], vol_dir: Path
) -> None:
    make_store(4 * U).close()
    with reopen(vol_dir, source=source) as clone:

        def hydrate() -> None:
            for _ in range(20):
                for unit, _seq in source.units():
                    clone.write_unit_if_absent(unit, source.read_unit(unit))

        thread = threading.Thread(target=hydrate)
        thread.start()
        for unit in range(4):
            clone.write(unit * U + 10, b"user wins")
        thread.join()
        for unit in range(4):
            assert clone.read(unit * U + 10, 9) == b"user wins"
            assert clone.read(unit * U, 10) == pattern(4 * U, 42)[unit * U : unit * U + 10]


# ------------------------------------------------------------------------------------------------------ lifecycle


def test_open_checks_identity_key_and_version(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    make_store().close()
    with pytest.raises(DecryptionFailed):
        VolumeStore.open(vol_dir, volume_id=VOLUME, dek=OTHER_DEK)
    with pytest.raises(IntegrityError):
        VolumeStore.open(vol_dir, volume_id="someone-else", dek=DEK)
    with pytest.raises(ValueError, match="32 bytes"):
        VolumeStore.open(vol_dir, volume_id=VOLUME, dek=b"short")
    with sqlite3.connect(vol_dir / fmt.MAP_FILE) as conn:
        conn.execute("UPDATE meta SET value = 3 WHERE key = 'format_version'")
    conn.close()
    with pytest.raises(IntegrityError, match="unsupported volume format version 3"):
        reopen(vol_dir)


def test_open_missing_and_create_existing(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    with pytest.raises(NotFound):
        reopen(vol_dir)
    store = make_store()
    with pytest.raises(Conflict):
        VolumeStore.create(vol_dir, volume_id=VOLUME, size_bytes=U, dek=DEK)
    with pytest.raises(Conflict):
        reopen(vol_dir)  # one open store per volume
    with pytest.raises(InvalidArgument):
        VolumeStore.create(vol_dir.parent / "neg", volume_id=VOLUME, size_bytes=-1, dek=DEK)
    store.close()


def test_destroy_removes_the_volume(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    store = make_store()
    store.write(0, b"x")
    with pytest.raises(Conflict):
        destroy(vol_dir)
    store.close()
    destroy(vol_dir)
    assert not vol_dir.exists()
    destroy(vol_dir)


# ------------------------------------------------------------------------------------------------------ tampering

KNOWN = (b"BLOCKVAULT-KNOWN-PLAINTEXT-PATTERN-" * 4000)[: 3 * U]


@pytest.fixture
def tamper_store(make_store: Callable[..., VolumeStore]) -> VolumeStore:
    store = make_store(4 * U)
    store.write(0, KNOWN)
    store.snapshot("s")
    store.write(100, KNOWN[: U // 2])  # an overwrite too: old and new versions on disk
    store.flush()
    return store


def test_plaintext_never_reaches_disk(tamper_store: VolumeStore, vol_dir: Path) -> None:
    tamper_store.close()
    windows = [KNOWN[:64], KNOWN[1000:1016], KNOWN[U + 5 : U + 21]]
    files = [path for path in vol_dir.rglob("*") if path.is_file()]
    assert {path.name for path in files} >= {fmt.DATA_FILE, fmt.MAP_FILE}
    for path in files:
        content = path.read_bytes()
        for window in windows:
            assert window not in content, path


def test_flipped_bit_is_an_integrity_error(tamper_store: VolumeStore, vol_dir: Path) -> None:
    slot = slot_of(vol_dir, 1)
    with open(vol_dir / fmt.DATA_FILE, "r+b") as data:
        data.seek(slot * U + 777)
        byte = data.read(1)[0]
        data.seek(slot * U + 777)
        data.write(bytes([byte ^ 0x10]))
    with pytest.raises(IntegrityError):
        tamper_store.read(U, 1)
    with pytest.raises(IntegrityError, match=f"unit 1 of volume {tamper_store.volume_id}"):
        tamper_store.read_into(U, bytearray(2 * U))  # units 1 and 2: sealed whole
    assert tamper_store.read(0, U) == KNOWN[:100] + KNOWN[: U // 2] + KNOWN[100 + U // 2 : U]
    with pytest.raises(IntegrityError):
        tamper_store.write(U + 1, b"partial writes must not launder it")
    tamper_store.write(U, bytes(U))  # a whole-unit overwrite repairs it
    assert tamper_store.read(U, U) == bytes(U)


def test_swapped_slots_are_an_integrity_error(tamper_store: VolumeStore, vol_dir: Path) -> None:
    a, b = slot_of(vol_dir, 1), slot_of(vol_dir, 2)
    with open(vol_dir / fmt.DATA_FILE, "r+b") as data:
        data.seek(a * U)
        first = data.read(U)
        data.seek(b * U)
        second = data.read(U)
        data.seek(a * U)
        data.write(second)
        data.seek(b * U)
        data.write(first)
    for unit in (1, 2):
        with pytest.raises(IntegrityError):
            tamper_store.read(unit * U, 1)


def test_slot_from_another_volume_is_an_integrity_error(
    tamper_store: VolumeStore, vol_dir: Path, tmp_path: Path
) -> None:
    other_dir = tmp_path / "other"
    with VolumeStore.create(other_dir, volume_id="other", size_bytes=4 * U, dek=OTHER_DEK) as other:
        other.write(0, KNOWN)
    slot = slot_of(vol_dir, 2)
    foreign = (other_dir / fmt.DATA_FILE).read_bytes()[2 * U : 3 * U]
    with open(vol_dir / fmt.DATA_FILE, "r+b") as data:
        data.seek(slot * U)
        data.write(foreign)
    with pytest.raises(IntegrityError):
        tamper_store.read(2 * U, U)


def test_moved_or_renumbered_map_rows_are_an_integrity_error(tamper_store: VolumeStore, vol_dir: Path) -> None:
    tamper_store.close()
    with sqlite3.connect(vol_dir / fmt.MAP_FILE) as conn:
        conn.execute("UPDATE map SET unit = 3 WHERE unit = 2")  # moved to another unit
        conn.execute("UPDATE map SET seq = seq - 1 WHERE unit = 1")  # hide a change from an incremental backup
    conn.close()
    with reopen(vol_dir) as store:
        for unit in (1, 3):
            with pytest.raises(IntegrityError):
                store.read(unit * U, 1)


def test_replayed_old_slot_content_is_an_integrity_error(tamper_store: VolumeStore, vol_dir: Path) -> None:
    with sqlite3.connect(vol_dir / fmt.MAP_FILE) as conn:
        old_slot = conn.execute("SELECT slot FROM snap_map WHERE unit = 0").fetchone()[0]
    conn.close()
    new_slot = slot_of(vol_dir, 0)
    assert old_slot != new_slot
    with open(vol_dir / fmt.DATA_FILE, "r+b") as data:
        data.seek(old_slot * U)
        old = data.read(U)
        data.seek(new_slot * U)
        data.write(old)
    with pytest.raises(IntegrityError):
        tamper_store.read(0, 1)


def piece_bytes(unit_bytes: bytes, piece: int) -> bytes:
    return unit_bytes[piece * fmt.PIECE_SIZE : (piece + 1) * fmt.PIECE_SIZE]


def test_a_piece_authenticates_alone_and_only_in_its_place(tamper_store: VolumeStore, vol_dir: Path) -> None:
    """Pieces swapped within a unit fail, with or without their nonces and tags (the AAD binds the piece index);
    a read of only an untouched piece of the same unit still returns its data (it is authenticated on its own)."""
    p = fmt.PIECE_SIZE
    tamper_store.write(U + 1, KNOWN[U + 1 : 2 * U])  # unit 1 rewritten in part: sealed in pieces
    tamper_store.flush()
    slot = slot_of(vol_dir, 1)
    with open(vol_dir / fmt.DATA_FILE, "r+b") as data:
        data.seek(slot * U)
        sealed = data.read(U)
        data.seek(slot * U)
        data.write(piece_bytes(sealed, 1) + piece_bytes(sealed, 0) + sealed[2 * p :])
    for piece in (0, 1):
        with pytest.raises(IntegrityError):
            tamper_store.read(U + piece * p, 4096)
    out = bytearray(4096)  # read_into inside one unit opens only the pieces it returns (the NBD READ path)
    tamper_store.read_into(U + 2 * p, out)
    assert out == KNOWN[U + 2 * p : U + 2 * p + 4096]
    with pytest.raises(IntegrityError):
        tamper_store.read_into(U + p - 2048, out)  # straddles pieces 0 and 1
    tamper_store.close()
    with sqlite3.connect(vol_dir / fmt.MAP_FILE) as conn:
        nonce, tag = conn.execute("SELECT nonce, tag FROM map WHERE unit = 1").fetchone()
        n, t = fmt.NONCE_SIZE, fmt.TAG_SIZE
        conn.execute(
            "UPDATE map SET nonce = ?, tag = ? WHERE unit = 1",
            (nonce[n : 2 * n] + nonce[:n] + nonce[2 * n :], tag[t : 2 * t] + tag[:t] + tag[2 * t :]),
        )
    conn.close()
    with reopen(vol_dir) as store:
        for piece in (0, 1):
            with pytest.raises(IntegrityError):
                store.read(U + piece * p, 4096)
        with pytest.raises(IntegrityError):
            store.read(U, U)


def test_units_written_whole_are_sealed_whole_and_parts_in_pieces(
    make_store: Callable[..., VolumeStore], vol_dir: Path
) -> None:
    with make_store(4 * U) as store:
        store.write(0, pattern(2 * U))  # units 0 and 1 whole
        store.write(2 * U + 4096, pattern(4096))  # unit 2 in part
        store.write(3 * U, pattern(U - 1))  # unit 3 in part (one byte short)
        store.write(U + 100, b"x")  # unit 1 rewritten in part
        assert store.seq == 2 + 3 * fmt.PIECES  # the usage meter counts seals
    with sqlite3.connect(vol_dir / fmt.MAP_FILE) as conn:
        rows = dict(conn.execute("SELECT unit, length(tag) / 16 FROM map").fetchall())
    conn.close()
    assert rows == {0: 1, 1: fmt.PIECES, 2: fmt.PIECES, 3: fmt.PIECES}


def lengthen_tag(directory: Path, unit: int) -> None:
    """Make the unit's map row describe no layout: a 20-byte tag (a blob, as the store writes them)."""
    with sqlite3.connect(directory / fmt.MAP_FILE) as conn:
        (tag,) = conn.execute("SELECT tag FROM map WHERE unit = ?", (unit,)).fetchone()
        conn.execute("UPDATE map SET tag = ? WHERE unit = ?", (tag + bytes(4), unit))
    conn.close()


def test_a_map_row_of_no_known_layout_is_an_integrity_error(tamper_store: VolumeStore, vol_dir: Path) -> None:
    tamper_store.close()
    lengthen_tag(vol_dir, 1)
    with reopen(vol_dir) as store:
        for offset, length in ((U, 1), (U, U), (0, 2 * U)):
            with pytest.raises(IntegrityError):
                store.read(offset, length)


def test_a_malformed_row_among_whole_units_is_an_integrity_error(
    make_store: Callable[..., VolumeStore], vol_dir: Path
) -> None:
    store = make_store(4 * U)
    store.write(0, pattern(4 * U))  # four units sealed whole in slots 0-3: one run
    store.close()
    lengthen_tag(vol_dir, 1)
    with reopen(vol_dir) as again:
        for _ in range(2):  # the second time the rows are in memory: the whole-unit READ path meets the row
            with pytest.raises(IntegrityError, match="malformed map row"):
                again.read_into(0, bytearray(4 * U))
        assert read_into(again, 2 * U, 2 * U) == pattern(4 * U)[2 * U :]


def test_v1_volumes_stay_readable_and_are_upgraded_on_open(
    make_store: Callable[..., VolumeStore], vol_dir: Path
) -> None:
    """A map written by format v1 (one AES-GCM seal per unit) reads the same in this build, snapshots too; the
    first open for writing marks it v2 (so a v1 build refuses it) and rewritten units are sealed in pieces."""
    content = pattern(3 * U, 5)
    with make_store(3 * U) as store:
        store.write(0, content)
        store.snapshot("s")
    # Re-seal unit 1 as v1 did, in place: one nonce, one tag, the v1 AAD (shared by the live row and the snapshot's).
    with sqlite3.connect(vol_dir / fmt.MAP_FILE) as conn:
        slot, seq = conn.execute("SELECT slot, seq FROM map WHERE unit = 1").fetchone()
        nonce = os.urandom(fmt.NONCE_SIZE)
        sealed = AESGCM(DEK).encrypt(nonce, content[U : 2 * U], fmt.unit_aad_reference(VOLUME, 1, seq))
        for table in ("map", "snap_map"):
            conn.execute(f"UPDATE {table} SET nonce = ?, tag = ? WHERE unit = 1", (nonce, sealed[U:]))
        conn.execute("UPDATE meta SET value = 1 WHERE key = 'format_version'")
    conn.close()
    with open(vol_dir / fmt.DATA_FILE, "r+b") as data:
        data.seek(slot * U)
        data.write(sealed[:U])
    with reopen(vol_dir) as store:
        assert store.read(0, 3 * U) == content
        out = bytearray(4096)
        store.read_into(U + 8192, out)  # the single-unit path, v1 row
        assert out == content[U + 8192 : U + 12288]
        with store.open_snapshot("s") as reader:
            assert reader.read_unit(1) == content[U : 2 * U]
        store.write(U + 5, b"new")  # read-modify-write of the v1 unit
        store.flush()
        assert store.read(U, 8) == content[U : U + 5] + b"new"
    with sqlite3.connect(vol_dir / fmt.MAP_FILE) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0]
        live_tag, snap_tag = (
            conn.execute(f"SELECT tag FROM {t} WHERE unit = 1").fetchone()[0] for t in ("map", "snap_map")
        )
    conn.close()
    assert version == fmt.FORMAT_VERSION == 2
    assert (len(live_tag), len(snap_tag)) == (fmt.PIECES * fmt.TAG_SIZE, fmt.TAG_SIZE)


def test_truncated_data_file_is_an_integrity_error(tamper_store: VolumeStore, vol_dir: Path) -> None:
    os.truncate(vol_dir / fmt.DATA_FILE, U + 10)
    with pytest.raises(IntegrityError):
        tamper_store.read(0, 4 * U)
    with pytest.raises(IntegrityError, match="truncated"):  # the whole-unit READ path (NBD's 1 MiB READ)
        tamper_store.read_into(U, bytearray(2 * U))
    # The one-unit read path (NBD's 4 KiB READ) too: a slot cut short (unit 1: 10 bytes left) or gone (unit 2).
    for unit in (1, 2):
        with pytest.raises(IntegrityError, match="truncated"):
            tamper_store.read_into(unit * U + 4096, bytearray(4096))


def test_clone_must_be_at_least_as_large_as_its_source(
    source: SnapshotReader, make_store: Callable[..., VolumeStore], vol_dir: Path
) -> None:
    make_store(4 * U - 1).close()
    with pytest.raises(InvalidArgument):
        reopen(vol_dir, source=source)


def test_nonce_usage_bound_is_enforced(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    make_store(4 * U).close()
    with sqlite3.connect(vol_dir / fmt.MAP_FILE) as conn:
        # Room for one more unit: a unit write is PIECES seals.
        conn.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (fmt.MAX_SEALS_PER_DEK - fmt.PIECES,))
    conn.close()
    with reopen(vol_dir) as store:
        with pytest.raises(Conflict, match="2\\^32"):
            store.write(U - 1, b"xy")  # two units: one over the bound, and nothing is written
        assert store.allocated_units() == []
        store.write(0, b"last")
        assert store.seq == fmt.MAX_SEALS_PER_DEK
        with pytest.raises(Conflict):
            store.write(0, b"one more")
        assert store.read(0, 4) == b"last"


def test_recreate_after_destroy_starts_empty(vol_dir: Path) -> None:
    with VolumeStore.create(vol_dir, volume_id=VOLUME, size_bytes=2 * U, dek=DEK) as store:
        store.write(0, b"old volume")
        store.snapshot("s")
    destroy(vol_dir)
    with VolumeStore.create(vol_dir, volume_id=VOLUME, size_bytes=2 * U, dek=OTHER_DEK) as store:
        assert store.read(0, 10) == bytes(10)
        assert store.snapshots() == []
        assert store.seq == 0


def test_snapshot_reader_checks_its_arguments(make_store: Callable[..., VolumeStore], vol_dir: Path) -> None:
    store = make_store(U + 5)
    store.write(0, b"x")
    store.snapshot("s")
    with pytest.raises(DecryptionFailed):
        store.open_snapshot("s", dek=OTHER_DEK)
    with pytest.raises(NotFound):
        SnapshotReader.open(vol_dir.parent / "nothing", name="s", volume_id=VOLUME, dek=DEK)
    with store.open_snapshot("s") as reader:
        with pytest.raises(InvalidArgument):
            reader.read_unit(2)
        with pytest.raises(InvalidArgument):
            reader.read(U, 6)
        assert reader.read_unit(1) == bytes(U)
        assert reader.name == "s"
        assert reader.volume_id == VOLUME


# ------------------------------------------------------------------------------------------- concurrent writers


class Pause:
    """Makes the next unlocked seal-and-write (a whole-unit write's middle step) wait until released, once armed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()
        real = volume_module._seal_and_write

        def paused(*args: Any) -> list[bytes]:
            if self.armed:
                self.armed = False
                self.entered.set()
                assert self.release.wait(10)
            return real(*args)

        monkeypatch.setattr(volume_module, "_seal_and_write", paused)


@pytest.fixture
def pause(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pause]:
    p = Pause(monkeypatch)
    yield p
    p.release.set()


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_concurrent_writers_lose_nothing_and_tear_nothing(
    make_store: Callable[..., VolumeStore], vol_dir: Path
) -> None:
    """Threads write whole and partial units, each in its own region and all in one shared region, with flushes
    between: every region ends as its model says, and every shared unit holds one writer's unit whole."""
    regions, span, shared = 4, 80, 320  # units; the shared region is units shared..shared+15
    store = make_store((shared + 16) * U)
    models = [bytearray(span * U) for _ in range(regions)]
    written: dict[int, set[bytes]] = {unit: {bytes(U)} for unit in range(shared, shared + 16)}

    def worker(k: int) -> None:
        rng = random.Random(k)
        base = k * span * U
        for i in range(40):
            count = rng.choice((1, 2, 16, 70))  # 70 units: more than one batch
            first = rng.randrange(0, span - count + 1)
            if i % 3 == 0:  # a partial write: read-modify-write of its edge units
                offset, length = first * U + rng.randrange(U), rng.randrange(1, count * U)
                length = min(length, span * U - offset)
            else:
                offset, length = first * U, count * U
            data = pattern(length, seed=k * 1000 + i)
            store.write(base + offset, data)
            models[k][offset : offset + length] = data
            unit = shared + rng.randrange(16)
            whole = pattern(U, seed=10_000 + k * 1000 + i)
            written[unit].add(whole)
            store.write(unit * U, whole)
            if i % 7 == 0:
                store.flush()

    threads = [in_thread(lambda k=k: worker(k)) for k in range(regions)]
    for thread, errors in threads:
        thread.join()
        assert not errors, errors

    def check(s: VolumeStore) -> None:
        for k in range(regions):
            assert s.read(k * span * U, span * U) == models[k], f"region {k}"
        for unit, values in written.items():
            assert s.read(unit * U, U) in values, f"shared unit {unit}"

    check(store)
    store.close()
    with reopen(vol_dir) as again:
        check(again)


def test_whole_unit_reads_in_threads_see_whole_versions_while_writers_replace_units(
    make_store: Callable[..., VolumeStore],
) -> None:
    """Readers of whole units (each thread decrypts its own copy of the ciphertext outside the lock) race a writer
    that replaces the units and flushes, which frees and reuses their slots: every unit a reader returns is one
    version the writer wrote, whole."""
    units, versions = 16, 12
    store = make_store(units * U)
    store.write(0, b"".join(pattern(U, seed=unit * 100) for unit in range(units)))
    store.flush()
    allowed = {unit: {pattern(U, seed=unit * 100 + v) for v in range(versions)} for unit in range(units)}

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(60):
            first = rng.randrange(units)
            count = rng.randrange(2, units - first + 1) if first < units - 1 else 1
            out = bytearray(count * U)
            store.read_into(first * U, out)
            for i in range(count):
                assert bytes(out[i * U : (i + 1) * U]) in allowed[first + i], f"unit {first + i}"

    def writer() -> None:
        for v in range(1, versions):
            store.write(0, b"".join(pattern(U, seed=unit * 100 + v) for unit in range(units)))
            if v % 2:
                store.flush()

    threads = [in_thread(lambda k=k: reader(k)) for k in range(3)] + [in_thread(writer)]
    for thread, errors in threads:
        thread.join()
        assert not errors, errors


def test_close_waits_for_a_write_being_sealed_and_then_refuses_writes(
    make_store: Callable[..., VolumeStore], vol_dir: Path, pause: Pause
) -> None:
    store = make_store(8 * U)
    data = pattern(4 * U, seed=3)
    pause.armed = True
    writer, writer_errors = in_thread(lambda: store.write(0, data))
    assert pause.entered.wait(10)
    closer, closer_errors = in_thread(store.close)
    closer.join(0.3)
    assert closer.is_alive()  # the handles stay open while the batch is being written
    with pytest.raises(ValueError, match="closed"):
        store.write(4 * U, data)  # closing: no new batch begins
    pause.release.set()
    writer.join(10)
    closer.join(10)
    assert not writer_errors
    assert not closer_errors
    with reopen(vol_dir) as again:
        assert again.read(0, 4 * U) == data  # the write that close waited for was flushed by it


def test_a_snapshot_deleted_during_a_write_keeps_the_write_s_slot(
    make_store: Callable[..., VolumeStore], pause: Pause
) -> None:
    """delete_snapshot rebuilds the allocator while a batch is being written: the batch's slot must stay taken, or a
    later write would be given it and overwrite the batch's ciphertext (an integrity error on read)."""
    store = make_store(8 * U)
    store.write(0, pattern(8 * U, seed=1))
    store.flush()
    store.snapshot("s")
    mine = pattern(U, seed=2)
    pause.armed = True
    writer, errors = in_thread(lambda: store.write(0, mine))
    assert pause.entered.wait(10)
    store.delete_snapshot("s")
    store.write(0, pattern(U, seed=3))  # concurrent with `mine`: either may win; `mine` ends last, so it does
    store.flush()
    pause.release.set()
    writer.join(10)
    assert not errors
    store.flush()
    for unit in range(1, 8):  # rewrites take every free slot (no flush between: none is released meanwhile)
        store.write(unit * U, pattern(U, seed=100 + unit))
    store.flush()
    assert store.read(0, U) == mine
    for unit in range(1, 8):
        assert store.read(unit * U, U) == pattern(U, seed=100 + unit)


def test_the_data_file_covers_the_volume_from_the_start_without_blocks(
    make_store: Callable[..., VolumeStore], vol_dir: Path
) -> None:
    make_store(100 * U + 1)
    stat = (vol_dir / fmt.DATA_FILE).stat()
    assert stat.st_size == 101 * U  # every home slot inside the file: pwrites never grow it (volume-format.md)
    assert stat.st_blocks == 0


def test_a_write_whose_rows_cannot_be_recorded_gives_its_slots_back(
    make_store: Callable[..., VolumeStore], vol_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(4 * U)
    store.write(0, pattern(4 * U, seed=1))
    store.flush()  # units 0-3 in their home slots 0-3
    store._rows.clear()  # the next write must ask map.db for the rows it replaces

    def unreadable(*_: object) -> None:
        raise Unavailable(dependency="map.db (locked, test)")

    with monkeypatch.context() as m:
        m.setattr(VolumeStore, "_committed_rows", unreadable)
        with pytest.raises(Unavailable):
            store.write(0, pattern(U, seed=2))  # sealed and written to spill slot 4, then not recorded
    assert store.read(0, U) == pattern(U, seed=1)
    store.write(0, pattern(U, seed=3))
    store.flush()
    assert slot_of(vol_dir, 0) == 4  # slot 4 came back: the lowest free slot again
    assert store.read(0, U) == pattern(U, seed=3)
