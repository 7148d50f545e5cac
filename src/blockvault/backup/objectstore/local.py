"""`ObjectStore` over a local directory: one file per object, '/' in names maps to subdirectories.

Atomic, durable put (the classic sequence; see e.g. LWN "Ensuring data reaches disk", 2011):

    mkstemp(".tmp-*", same dir) -> write -> fsync(file) -> rename over the name -> fsync(dir)

The temporary lives in the target directory so the rename never crosses a file system, and the directory fsync makes
the rename itself durable (POSIX leaves directory entries in the page cache otherwise). Temporaries start with '.',
which `validate_name` reserves, so `list` can skip them and a crash leaves at worst an unlisted `.tmp-*` file.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from blockvault.backup.objectstore.base import ObjectMissing, validate_name, validate_prefix
from blockvault.errors import Unavailable

__all__ = ["LocalObjectStore"]

# A concurrent delete may prune the directory between our mkdir and mkstemp; a few retries settle that race.
_DIR_RACE_RETRIES = 3


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return fn


_syncfs = _load_syncfs()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalObjectStore:
    """Objects as files under `root` (created if missing).

    Thread-safe: every operation is a short sequence of system calls whose only shared state is the file system, and
    each is safe against the others (see the directory-pruning race note on `_DIR_RACE_RETRIES`). Several processes
    may share a root with the same guarantees.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._root.mkdir(parents=True, exist_ok=True)
        self._where = f"local object store at {self._root}"

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, name: str) -> Path:
        return self._root.joinpath(*validate_name(name).split("/"))

    @contextlib.contextmanager
    def _io(self) -> Iterator[None]:
        """Classify OS errors at the adapter (STYLE §2.3): anything not handled explicitly is transient."""
        try:
            yield
        except OSError as exc:
            raise Unavailable(dependency=self._where) from exc

    def _make_dirs(self, directory: Path) -> None:
        """mkdir -p, fsyncing each parent whose entries changed so new directories survive a crash."""
        current = self._root
        for part in directory.relative_to(self._root).parts:
            parent, current = current, current / part
            try:
                os.mkdir(current)
            except FileExistsError:
                if not current.is_dir():
                    raise ValueError(f"{current.relative_to(self._root)} is an object, not a prefix") from None
            else:
                _fsync_dir(parent)

    def sync(self) -> None:
        """syncfs(2) on the store's file system: one flush for every deferred put (and directory entry)."""
        with self._io():
            fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _syncfs is None or _syncfs(fd) != 0:
                    os.sync()
            finally:
                os.close(fd)

    def put(self, name: str, data: bytes, *, durable: bool = True) -> None:
        path = self._path(name)
        with self._io():
            for attempt in range(_DIR_RACE_RETRIES):
                try:
                    self._make_dirs(path.parent)
                    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
                    break
                except (FileNotFoundError, NotADirectoryError):
                    if attempt == _DIR_RACE_RETRIES - 1:
                        raise
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    if durable:
                        os.fsync(handle.fileno())
                if path.is_dir():
                    raise ValueError(f"object name {name!r} is already a prefix of other objects")
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            if durable:
                _fsync_dir(path.parent)

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(name)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        with self._io():
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed below; `with` would hide the error mapping
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise ObjectMissing(name) from None
            with handle:
                size = os.fstat(handle.fileno()).st_size
                end = size if length is None else offset + length
                if offset > size or end > size:
                    raise ObjectMissing(name, reason=f"range {offset}..{end} past end {size}")
                handle.seek(offset)
                data = handle.read(end - offset)
        if len(data) != end - offset:  # the file shrank under us; objects are replaced by rename, never truncated
            raise Unavailable(dependency=self._where)
        return data

    def delete(self, name: str) -> None:
        path = self._path(name)
        with self._io():
            if path.is_dir():
                return  # a prefix, not an object: nothing to delete
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                return
            _fsync_dir(path.parent)
            self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        """Remove now-empty directories up to the root, so deleted backups leave no directory behind."""
        while directory != self._root:
            try:
                directory.rmdir()
            except OSError:  # not empty (or already gone): stop
                return
            directory = directory.parent

    def list(self, prefix: str) -> list[str]:
        validate_prefix(prefix)
        base = prefix.rpartition("/")[0]
        start = self._root.joinpath(*base.split("/")) if base else self._root
        found: list[str] = []
        with self._io():
            if not start.is_dir():
                return []
            for dirpath, dirnames, filenames in os.walk(start):
                rel_dir = Path(dirpath).relative_to(self._root).as_posix()
                rel_dir = "" if rel_dir == "." else rel_dir + "/"
                # Descend only into directories that can hold a match; skip dot-directories (reserved).
                dirnames[:] = [
                    d
                    for d in dirnames
                    if not d.startswith(".")
                    and ((rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/"))
                ]
                found.extend(
                    rel_dir + f for f in filenames if not f.startswith(".") and (rel_dir + f).startswith(prefix)
                )
        return sorted(found)

    def exists(self, name: str) -> bool:
        path = self._path(name)
        with self._io():
            return path.is_file()
