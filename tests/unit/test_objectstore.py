"""ObjectStore contract suite: every adapter runs every test here (STYLE §2.12, restic backend/test).

Register a new adapter in ADAPTERS; adapter-specific behaviour (durability plumbing, temp files) is tested at the end.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from blockvault.backup.objectstore.base import ObjectMissing, ObjectStore
from blockvault.backup.objectstore.local import LocalObjectStore
from blockvault.backup.objectstore.memory import MemoryObjectStore
from blockvault.errors import NotFound, Unavailable

ADAPTERS: dict[str, Callable[[Path], ObjectStore]] = {
    "memory": lambda _tmp: MemoryObjectStore(),
    "local": lambda tmp: LocalObjectStore(tmp / "store"),
}


@pytest.fixture(params=sorted(ADAPTERS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return ADAPTERS[request.param](tmp_path)


BAD_NAMES = ["", "/abs", "a//b", "a/", "a/../b", "..", ".", "./a", "a/.hidden", "a\\b", "a\x00b", "a\nb"]
BAD_PREFIXES = ["/", "/a", "a//", "../", "a/../", ".tmp", "a\\"]


def test_put_then_get_returns_the_bytes(store: ObjectStore) -> None:
    store.put("chunks/b1/0000000001", b"payload")
    assert store.get("chunks/b1/0000000001") == b"payload"
    assert store.exists("chunks/b1/0000000001")


def test_put_replaces_an_existing_object_whole(store: ObjectStore) -> None:
    store.put("k", b"a much longer first version")
    store.put("k", b"short")
    assert store.get("k") == b"short"


def test_put_empty_object(store: ObjectStore) -> None:
    store.put("empty", b"")
    assert store.get("empty") == b""
    assert store.exists("empty")


def test_put_copies_a_mutable_buffer(store: ObjectStore) -> None:
    data = bytearray(b"abc")
    store.put("k", data)  # type: ignore[arg-type]  # bytearray is what callers may well pass
    data[0] = ord("z")
    assert store.get("k") == b"abc"


def test_get_missing_is_object_missing_and_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing) as info:
        store.get("manifests/none")
    assert isinstance(info.value, NotFound)
    assert not info.value.retryable
    assert not store.exists("manifests/none")


def test_get_of_a_prefix_is_object_missing(store: ObjectStore) -> None:
    store.put("dir/obj", b"x")
    with pytest.raises(ObjectMissing):
        store.get("dir")
    assert not store.exists("dir")


def test_get_range(store: ObjectStore) -> None:
    store.put("r", b"0123456789")
    assert store.get("r", offset=2, length=3) == b"234"
    assert store.get("r", offset=7) == b"789"
    assert store.get("r", offset=10, length=0) == b""
    assert store.get("r", length=10) == b"0123456789"


@pytest.mark.parametrize(("offset", "length"), [(8, 5), (11, None), (11, 0), (0, 11)])
def test_range_past_end_is_an_error_not_a_short_read(store: ObjectStore, offset: int, length: int | None) -> None:
    store.put("r", b"0123456789")
    with pytest.raises(ObjectMissing):
        store.get("r", offset=offset, length=length)


@pytest.mark.parametrize(("offset", "length"), [(-1, None), (0, -1)])
def test_negative_range_is_a_value_error(store: ObjectStore, offset: int, length: int | None) -> None:
    store.put("r", b"0123456789")
    with pytest.raises(ValueError, match="negative"):
        store.get("r", offset=offset, length=length)


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("a/b", b"x")
    store.delete("a/b")
    store.delete("a/b")
    store.delete("never/existed")
    assert not store.exists("a/b")
    with pytest.raises(ObjectMissing):
        store.get("a/b")
    assert store.list("") == []


def test_delete_of_a_prefix_deletes_nothing(store: ObjectStore) -> None:
    store.put("a/b", b"x")
    store.delete("a")
    assert store.get("a/b") == b"x"


def test_name_can_be_reused_after_delete_as_a_prefix(store: ObjectStore) -> None:
    store.put("a", b"x")
    store.delete("a")
    store.put("a/b", b"y")
    assert store.list("") == ["a/b"]


def test_list_by_prefix_is_sorted_and_by_string_prefix(store: ObjectStore) -> None:
    names = ["b", "a/c", "ab/x", "a/b/2", "a/b/1", "a/b/10"]
    for name in names:
        store.put(name, name.encode())
    assert store.list("") == sorted(names)
    assert store.list("a/") == ["a/b/1", "a/b/10", "a/b/2", "a/c"]
    assert store.list("a/b/") == ["a/b/1", "a/b/10", "a/b/2"]
    assert store.list("a/b/1") == ["a/b/1", "a/b/10"]
    assert store.list("a") == ["a/b/1", "a/b/10", "a/b/2", "a/c", "ab/x"]
    assert store.list("zzz/") == []
    assert store.list("b/") == []


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_rejected_everywhere(store: ObjectStore, name: str) -> None:
    with pytest.raises(ValueError):
        store.put(name, b"x")
    with pytest.raises(ValueError):
        store.get(name)
    with pytest.raises(ValueError):
        store.delete(name)
    with pytest.raises(ValueError):
        store.exists(name)


@pytest.mark.parametrize("prefix", BAD_PREFIXES)
def test_bad_prefixes_are_rejected(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ValueError):
        store.list(prefix)


def test_dots_inside_a_segment_are_fine(store: ObjectStore) -> None:
    name = "chunks/ocid1.volumebackup.oc1..aaaa/0000000000"  # global OCIDs contain ".."
    store.put(name, b"x")
    assert store.list("chunks/") == [name]


def test_an_object_cannot_also_be_a_prefix(store: ObjectStore) -> None:
    store.put("a/b", b"x")
    with pytest.raises(ValueError):
        store.put("a", b"y")
    store.put("c", b"x")
    with pytest.raises(ValueError):
        store.put("c/d", b"y")
    assert store.list("") == ["a/b", "c"]


def test_readers_never_see_a_partial_put(store: ObjectStore) -> None:
    one, two = b"A" * (256 * 1024), b"B" * (256 * 1024)
    store.put("hot", one)
    stop = threading.Event()
    seen: list[bytes] = []

    def writer() -> None:
        for i in range(60):
            store.put("hot", two if i % 2 else one)
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not stop.is_set():
        data = store.get("hot")
        if data not in (one, two):
            seen.append(data[:16])
    thread.join()
    assert seen == []


def test_concurrent_puts_of_distinct_names(store: ObjectStore) -> None:
    def worker(k: int) -> None:
        for i in range(25):
            store.put(f"chunks/w{k}/{i:010d}", bytes([k, i]))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.list("chunks/")) == 100
    assert store.get("chunks/w3/0000000007") == bytes([3, 7])


# ------------------------------------------------------------------------------------------- LocalObjectStore only


def test_local_survives_reopening(tmp_path: Path) -> None:
    LocalObjectStore(tmp_path).put("manifests/b1", b"m")
    assert LocalObjectStore(tmp_path).get("manifests/b1") == b"m"


def test_local_failed_put_keeps_the_old_object_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalObjectStore(tmp_path)
    store.put("d/k", b"old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(5, "simulated I/O error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(Unavailable) as info:
        store.put("d/k", b"new")
    assert info.value.retryable
    monkeypatch.undo()
    assert store.get("d/k") == b"old"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["k"]


def test_local_failed_fsync_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalObjectStore(tmp_path)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "simulated fsync failure")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(Unavailable):
        store.put("k", b"new")
    monkeypatch.undo()
    assert not store.exists("k")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_local_list_hides_temporaries(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put("chunks/b/0000000000", b"x")
    (tmp_path / "chunks" / "b" / ".tmp-crashed").write_bytes(b"partial")
    (tmp_path / ".tmp-dir").mkdir()
    (tmp_path / ".tmp-dir" / "y").write_bytes(b"y")
    assert store.list("") == ["chunks/b/0000000000"]


def test_local_delete_prunes_empty_directories(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put("chunks/b1/0000000000", b"x")
    store.put("chunks/b2/0000000000", b"x")
    store.delete("chunks/b1/0000000000")
    assert sorted(p.name for p in (tmp_path / "chunks").iterdir()) == ["b2"]
    store.delete("chunks/b2/0000000000")
    assert list(tmp_path.iterdir()) == []
    assert tmp_path.is_dir()


def test_local_os_errors_on_read_are_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalObjectStore(tmp_path)
    store.put("k", b"x")

    def broken_fstat(fd: int) -> os.stat_result:
        raise OSError(5, "simulated EIO")

    with monkeypatch.context() as patched:  # undone before pytest's own capture calls os.fstat
        patched.setattr(os, "fstat", broken_fstat)
        with pytest.raises(Unavailable):
            store.get("k")


def test_deferred_put_is_atomic_and_sync_makes_it_durable(store: ObjectStore) -> None:
    store.put("chunks/b/0001", b"first", durable=False)
    store.put("chunks/b/0001", b"second", durable=False)
    assert store.get("chunks/b/0001") == b"second"
    store.sync()
    assert store.list("chunks/") == ["chunks/b/0001"]


def test_local_deferred_put_skips_fsync_and_sync_flushes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalObjectStore(tmp_path)
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
    for i in range(5):
        store.put(f"chunks/b/{i:04d}", b"x" * 100, durable=False)
    deferred = len(calls)
    store.put("manifests/b", b"m")
    assert deferred <= 2  # at most the new directories' entries, never one per object
    assert len(calls) > deferred  # the durable put fsyncs its file and directory
    store.sync()
