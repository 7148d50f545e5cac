"""Property: any sequence of writes, flushes, snapshots, reopens and crashes matches a bytearray model.

A crash (copying the files a crash would leave: data, map.db and its WAL) must bring back exactly the state of the
last flush; snapshots must keep reading as the model did when they were taken.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockvault.store import UNIT_SIZE, VolumeStore
from blockvault.store import format as fmt

U = UNIT_SIZE
DEK = bytes(range(32))
VOLUME = "prop-volume"

write_op = st.tuples(
    st.just("write"),
    st.floats(min_value=0, max_value=1),  # offset as a fraction of the size
    st.integers(min_value=1, max_value=int(2.5 * U)),
    st.integers(min_value=0, max_value=2**32),  # content seed
    st.booleans(),  # fua
)
ops = st.lists(
    st.one_of(
        write_op,
        write_op,
        write_op,
        st.tuples(st.just("flush")),
        # read_into inside one unit: the path that opens only the pieces it returns (NBD's 4 KiB READ)
        st.tuples(st.just("peek"), st.floats(min_value=0, max_value=1), st.integers(min_value=1, max_value=U)),
        st.tuples(st.just("snapshot")),
        st.tuples(st.just("delete_snapshot"), st.integers(min_value=0, max_value=5)),
        st.tuples(st.just("reopen")),
        st.tuples(st.just("crash")),
        st.tuples(st.just("grow"), st.integers(min_value=1, max_value=U + 3)),
    ),
    max_size=25,
)


def _crash_copy(source: Path, target: Path) -> None:
    target.mkdir()
    for name in (fmt.DATA_FILE, fmt.MAP_FILE, fmt.MAP_FILE + "-wal"):
        if (source / name).exists():
            shutil.copyfile(source / name, target / name)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(min_value=1, max_value=5 * U + 7), operations=ops)
def test_random_operations_match_a_bytearray_model(size: int, operations: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "v0"
        store = VolumeStore.create(directory, volume_id=VOLUME, size_bytes=size, dek=DEK)
        live = bytearray(size)
        durable = bytearray(size)  # the model as of the last flush: what a crash must bring back
        durable_snaps: dict[str, bytes] = {}
        snaps: dict[str, bytes] = {}
        generation = 0
        taken = 0
        try:
            for op in operations:
                kind = op[0]
                if kind == "write":
                    _, where, length, seed, fua = op
                    assert isinstance(where, float)
                    assert isinstance(length, int)
                    assert isinstance(seed, int)
                    length = min(length, len(live))
                    offset = min(int(where * len(live)), len(live) - length)
                    data = random.Random(seed).randbytes(length)
                    store.write(offset, data, fua=bool(fua))
                    live[offset : offset + length] = data
                    if fua:
                        durable = bytearray(live)
                elif kind == "flush":
                    store.flush()
                    durable = bytearray(live)
                elif kind == "peek":
                    _, where, length = op
                    assert isinstance(where, float)
                    assert isinstance(length, int)
                    offset = min(int(where * len(live)), len(live) - 1)
                    length = min(length, U - offset % U, len(live) - offset)
                    out = bytearray(length)
                    store.read_into(offset, out)
                    assert out == live[offset : offset + length]
                elif kind == "snapshot":
                    taken += 1
                    name = f"s{taken}"
                    store.snapshot(name)
                    snaps[name] = bytes(live)
                    durable = bytearray(live)
                    durable_snaps = dict(snaps)
                elif kind == "delete_snapshot":
                    if snaps:
                        assert isinstance(op[1], int)
                        name = sorted(snaps)[op[1] % len(snaps)]
                        store.delete_snapshot(name)
                        del snaps[name]
                        durable = bytearray(live)  # delete_snapshot flushes first
                        durable_snaps = dict(snaps)
                elif kind == "grow":
                    assert isinstance(op[1], int)
                    store.resize(len(live) + op[1])
                    live.extend(bytes(op[1]))
                    durable = bytearray(live)  # resize flushes first
                elif kind == "reopen":
                    store.close()
                    durable = bytearray(live)
                    store = VolumeStore.open(directory, volume_id=VOLUME, dek=DEK)
                elif kind == "crash":
                    generation += 1
                    crashed = Path(tmp) / f"v{generation}"
                    _crash_copy(directory, crashed)
                    store.close()
                    directory = crashed
                    store = VolumeStore.open(directory, volume_id=VOLUME, dek=DEK)
                    live = bytearray(durable)
                    snaps = dict(durable_snaps)
                assert store.size == len(live)
                assert store.read(0, len(live)) == live
            for offset in range(0, len(live), fmt.PIECE_SIZE):  # read_into inside each piece, and across two
                for start, length in ((offset + 7, 4096), (offset + fmt.PIECE_SIZE - 100, 200)):
                    length = min(length, U - start % U, len(live) - start)
                    if length > 0:
                        out = bytearray(length)
                        store.read_into(start, out)
                        assert out == live[start : start + length]
            assert sorted(store.snapshots()) == sorted(snaps)
            for name, content in snaps.items():
                with store.open_snapshot(name) as reader:
                    assert reader.read(0, len(content)) == content
            store.flush()
            for slot_owner in store.allocated_units():
                assert 0 <= slot_owner < fmt.unit_count(len(live))
        finally:
            store.close()


def _naive_runs(bits: list[bool]) -> list[tuple[int, bool]]:
    runs: list[tuple[int, bool]] = []
    for bit in bits:
        if runs and runs[-1][1] == bit:
            runs[-1] = (runs[-1][0] + 1, bit)
        else:
            runs.append((1, bit))
    return runs


@given(
    bitmap=st.binary(max_size=64).map(lambda b: bytes(x if x % 3 else (0, 0xFF)[x & 1] for x in b)),
    skip=st.integers(min_value=0, max_value=7),
    count=st.integers(min_value=0, max_value=512),
)
def test_bitmap_runs_match_a_bit_by_bit_scan(bitmap: bytes, skip: int, count: int) -> None:
    from blockvault.store.volume import _bitmap_runs

    count = min(count, max(0, 8 * len(bitmap) - skip))
    bits = [bool(bitmap[i >> 3] >> (i & 7) & 1) for i in range(skip, skip + count)]
    assert _bitmap_runs(bitmap, skip, count) == _naive_runs(bits)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    committed=st.sets(st.integers(min_value=0, max_value=99), max_size=30),
    pending=st.sets(st.integers(min_value=0, max_value=99), max_size=10),
    first=st.integers(min_value=0, max_value=99),
    count=st.integers(min_value=1, max_value=120),
)
def test_held_runs_agree_with_has_unit(committed: set[int], pending: set[int], first: int, count: int) -> None:
    """held_runs (the bulk path behind base:allocation and WRITE_ZEROES) says what has_unit says, unit by unit,
    for flushed and unflushed units alike (and nothing is held past the end)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = VolumeStore.create(Path(tmp) / "v", volume_id=VOLUME, size_bytes=100 * U, dek=DEK)
        try:
            for unit in sorted(committed):
                store.write(unit * U, b"c")
            store.flush()
            for unit in sorted(pending):
                store.write(unit * U + 5, b"p")
            expected = _naive_runs([store.has_unit(u) for u in range(first, first + count)])
            assert store.held_runs(first, count) == expected
        finally:
            store.close()


@given(
    volume_id=st.text(min_size=1, max_size=80),
    unit=st.integers(min_value=0, max_value=fmt.MAX_VOLUME_SIZE // U),
    seq=st.integers(min_value=0, max_value=fmt.MAX_SEALS_PER_DEK * fmt.PIECES),
    piece=st.integers(min_value=0, max_value=fmt.PIECES - 1),
)
def test_aad_builders_match_the_normative_encoding(volume_id: str, unit: int, seq: int, piece: int) -> None:
    """The hot-path AAD builders (length table, b"%d") are byte-for-byte encode_context, for every number."""
    assert fmt.unit_aad(volume_id, unit, seq) == fmt.unit_aad_reference(volume_id, unit, seq)
    assert fmt.piece_aad(volume_id, unit, seq, piece) == fmt.piece_aad_reference(volume_id, unit, seq, piece)
    assert fmt.piece_aads(volume_id, unit, seq)[piece] == fmt.piece_aad_reference(volume_id, unit, seq, piece)
