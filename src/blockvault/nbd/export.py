"""The Export contract the NBD server serves, its adapter over a volume's data session, and the errno table.

`Export` mirrors nbdkit's plugin callbacks (get_size / pread / pwrite / trim / zero / flush / extents, with FUA),
so the server never sees the block storage service and the store could later be hosted under nbdkit.
Errors leave as NBD errno through `errno_of` (the third edge table of STYLE §2.3); causes are logged, never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from blockvault.blockstorage.attachments import DataSession
from blockvault.errors import (
    BlockvaultError,
    Conflict,
    IncorrectState,
    IntegrityError,
    InvalidArgument,
    KeyUnusable,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from blockvault.nbd import protocol as p

log = logging.getLogger("blockvault.nbd")


class Export(Protocol):
    """One connection's view of an export. Calls come from one thread at a time, in request order."""

    def size(self) -> int: ...
    def read_only(self) -> bool: ...
    def pread(self, offset: int, length: int) -> bytes: ...
    def pwrite(self, offset: int, data: bytes | memoryview, *, fua: bool) -> None: ...
    def trim(self, offset: int, length: int, *, fua: bool) -> None: ...
    def zero(self, offset: int, length: int, *, fua: bool, fast: bool) -> bool:
        """False: `fast` was asked and zeroing is not faster than writing zeros (the client falls back)."""
        ...

    def flush(self) -> None: ...
    def cache(self, offset: int, length: int) -> None: ...
    def extents(self, offset: int, length: int) -> Sequence[tuple[int, bool]]:
        """(length, is_hole) runs from `offset`; may cover less than `length`, never more."""
        ...

    def close(self) -> None: ...


# Most specific first. Every BlockvaultError maps; anything else is EIO (and logged with its traceback).
ERRNO: list[tuple[type[BaseException], int]] = [
    (KeyUnusable, p.EIO),  # D1: a disabled key stops I/O; the client sees a device error, not a permission one
    (IntegrityError, p.EIO),  # authentication failure of stored data (never retried, never wrong data)
    (InvalidArgument, p.EINVAL),
    (PermissionDenied, p.EPERM),
    (NotFound, p.ESHUTDOWN),  # the export was detached (or the volume went away) under the connection
    (IncorrectState, p.EIO),
    (Conflict, p.EIO),  # e.g. the store's nonce usage bound, a FAULTY volume
    (Unavailable, p.EIO),
    (MemoryError, p.ENOMEM),
    (BlockvaultError, p.EIO),
]


def errno_of(exc: BaseException) -> int:
    for cls, code in ERRNO:
        if isinstance(exc, cls):
            return code
    return p.EIO


class VolumeExport:
    """An Export over a DataSession (the volume's shared, leased store: all connections see one store).

    Flush semantics for multi-conn: every connection's writes go to the same VolumeStore, and its flush() makes
    every write acknowledged before it durable, whichever connection sent it (nbd.md F2), so CAN_MULTI_CONN holds.
    TRIM is advisory in NBD and the v1 store cannot deallocate (volume-format.md I8): it succeeds without effect.
    """

    def __init__(self, session: DataSession) -> None:
        self._session = session
        self._size = session.size

    def size(self) -> int:
        return self._size

    def read_only(self) -> bool:
        return self._session.read_only

    def pread(self, offset: int, length: int) -> bytes:
        return self._session.read(offset, length)

    def pread_into(self, offset: int, out: memoryview) -> None:
        """pread into the connection's reply buffer (server.py uses it when an export has it; no allocation)."""
        self._session.read_into(offset, out)

    def pwrite(self, offset: int, data: bytes | memoryview, *, fua: bool) -> None:
        self._session.write(offset, data, fua=fua)

    def trim(self, offset: int, length: int, *, fua: bool) -> None:
        self._session.check()  # a detached export or an unusable key fails trims too
        if fua:
            self._session.flush()

    def zero(self, offset: int, length: int, *, fua: bool, fast: bool) -> bool:
        return self._session.zero(offset, length, fua=fua, fast=fast)

    def flush(self) -> None:
        self._session.flush()

    def cache(self, offset: int, length: int) -> None:
        self._session.check()  # nothing to prefetch: reads go to the page cache of the data file anyway

    def extents(self, offset: int, length: int) -> Sequence[tuple[int, bool]]:
        return self._session.allocation(offset, length)

    def close(self) -> None:
        """Nothing to release: the session holds the store only for the duration of each request."""


__all__ = ["ERRNO", "Export", "VolumeExport", "errno_of"]
