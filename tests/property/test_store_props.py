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
            assert sorted(store.snapshots()) == sorted(snaps)
            for name, content in snaps.items():
                with store.open_snapshot(name) as reader:
                    assert reader.read(0, len(content)) == content
            store.flush()
            for slot_owner in store.allocated_units():
                assert 0 <= slot_owner < fmt.unit_count(len(live))
        finally:
            store.close()
