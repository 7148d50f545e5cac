"""What the processes of one data dir share besides the identity database: the bootstrap lock, the one-process-per-
region lock, the admin clock offset, and a cross-process change signal for the authorizer's directory cache."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from blockvault.clock import OffsetClock
from blockvault.errors import Conflict
from blockvault.iam.authz import Directory, DirectorySource

__all__ = ["RegionLock", "SharedDirectorySource", "SharedOffsetClock", "bootstrap_lock"]


@contextlib.contextmanager
def bootstrap_lock(data_dir: Path) -> Iterator[None]:
    """Serialize first-start work (schema, tenancy, admin key, service identity) between processes starting at once
    on one data dir. flock: released by the kernel if the holder dies."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / ".bootstrap.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


class RegionLock:
    """Held for as long as a process serves a region: a second process asked to serve it fails at start instead of
    running a second job runner on the same region database (jobs.py claims jobs in memory, one process per region)."""

    def __init__(self, region_dir: Path, region: str) -> None:
        region_dir.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] | None = open(region_dir / ".serving.lock", "ab")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            self._fh = None
            raise Conflict(
                kind="region", ident=region, reason="another blockvault serve process of this data dir serves it"
            ) from None

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class SharedOffsetClock(OffsetClock):
    """An `OffsetClock` whose offset lives in a file of the data dir, so that `serve --allow-clock-control` moves
    time for every process of the deployment at once. `now()` costs one stat; the file is re-read when it changed."""

    def __init__(self, path: Path, base: Callable[[], datetime] | None = None) -> None:
        super().__init__(base)
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._file_lock = threading.Lock()

    def _refresh(self) -> None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            with contextlib.suppress(OSError, ValueError):
                micros = int(self._path.read_text().strip() or "0")
                with self._lock:
                    self._offset = max(self._offset, timedelta(microseconds=micros))  # forward only
                self._stamp = stamp

    def now(self) -> datetime:
        self._refresh()
        return super().now()

    @property
    def offset(self) -> timedelta:
        self._refresh()
        return self._offset

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._file_lock, bootstrap_lock(self._path.parent):
            self._refresh()
            with self._lock:
                self._offset += delta
                micros = self._offset // timedelta(microseconds=1)
            tmp = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
            tmp.write_text(f"{micros}\n")
            os.replace(tmp, self._path)
        return self.now()


class SharedDirectorySource:
    """The identity service as the authorizer's `DirectorySource`, with a generation that also moves when ANOTHER
    process commits to the identity database (SQLite's `PRAGMA data_version`, read on one private connection), so a
    policy or compartment made through one process is seen by the next request to any process."""

    def __init__(self, inner: DirectorySource, db_path: Path) -> None:
        self._inner = inner
        self._conn = sqlite3.connect(db_path, check_same_thread=False)
        self._lock = threading.Lock()

    def generation(self) -> int:
        with self._lock:
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        return (self._inner.generation() << 32) + int(version)

    def directory(self) -> Directory:
        return self._inner.directory()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
