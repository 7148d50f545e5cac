"""The Export contract the NBD server serves, its adapter over a volume's data session, and the errno table.

`Export` mirrors nbdkit's plugin callbacks (get_size / pread / pwrite / trim / zero / flush / extents, with FUA),
so the server never sees the block storage service and the store could later be hosted under nbdkit.
Errors leave as NBD errno through `errno_of` (the third edge table of STYLE §2.3); causes are logged, never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
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
from blockvault.store.volume import VolumeStore

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

    Batches (nbd.md K1, K3): inside `batch()` (the server wraps a connection's whole request loop in it) READ, WRITE
    and FLUSH use one lease of the store instead of one per request. Each request still compares
    the service's generation with the one the lease was taken under; if it moved (a key state change, a detach),
    the lease is returned and the session re-validates before the request runs, exactly as a fresh request would.
    The server calls `idle()` whenever the connection is about to wait (for its client, or on a full socket), so an
    idle connection holds no store. A hydrating clone is never batched (its session re-reads the volume row on
    every request).
    """

    def __init__(self, session: DataSession, generation: Callable[[], int] | None = None) -> None:
        self._session = session
        self._size = session.size
        self._generation = generation
        self._batching = False
        self._held: ExitStack | None = None  # the lease held for the current batch
        self._store: VolumeStore | None = None
        self._held_generation = -1

    def size(self) -> int:
        return self._size

    def read_only(self) -> bool:
        return self._session.read_only

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Requests inside share one lease of the store (see the class docstring)."""
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
            self._drop()

    def _batch_store(self) -> VolumeStore | None:
        """The store leased for this batch (taken, or taken again, when needed); None outside batches."""
        if not self._batching or self._generation is None:
            return None
        generation = self._generation()  # read before the check the lease makes: a later bump is seen next time
        if self._store is not None and generation == self._held_generation:
            return self._store
        self._drop()
        if self._session.volume.clone_snapshot is not None:
            return None
        held = ExitStack()
        self._store = held.enter_context(self._session.store())
        self._held, self._held_generation = held, generation
        return self._store

    def idle(self) -> None:
        """Return the batch's lease now (the server is about to send, which can block on a slow client: K3); the
        next request of the batch takes a lease again."""
        self._drop()

    def _drop(self) -> None:
        held, self._held, self._store = self._held, None, None
        if held is not None:
            held.close()

    def pread(self, offset: int, length: int) -> bytes:
        store = self._batch_store()
        if store is not None:
            return store.read(offset, length)
        return self._session.read(offset, length)

    def pread_into(self, offset: int, out: memoryview) -> None:
        """pread into the connection's reply buffer (server.py uses it when an export has it; no allocation)."""
        store = self._batch_store()
        if store is not None:
            store.read_into(offset, out)
        else:
            self._session.read_into(offset, out)

    def pwrite(self, offset: int, data: bytes | memoryview, *, fua: bool) -> None:
        store = self._batch_store()
        if store is not None:
            store.write(offset, data, fua=fua)
        else:
            self._session.write(offset, data, fua=fua)

    def flush(self) -> None:
        store = self._batch_store()
        if store is not None:
            store.flush()
        else:
            self._session.flush()

    # The rest go through the session (they need more than the store); a held lease is returned first: a session
    # call may wait for a stale lease to close, which must not be ours.

    def trim(self, offset: int, length: int, *, fua: bool) -> None:
        self._drop()
        self._session.check()  # a detached export or an unusable key fails trims too
        if fua:
            self._session.flush()

    def zero(self, offset: int, length: int, *, fua: bool, fast: bool) -> bool:
        self._drop()
        return self._session.zero(offset, length, fua=fua, fast=fast)

    def cache(self, offset: int, length: int) -> None:
        self._drop()
        self._session.check()  # nothing to prefetch: reads go to the page cache of the data file anyway

    def extents(self, offset: int, length: int) -> Sequence[tuple[int, bool]]:
        self._drop()
        return self._session.allocation(offset, length)

    def close(self) -> None:
        """Nothing to release between batches: the lease is held only while a batch runs."""
        self._drop()


__all__ = ["ERRNO", "Export", "VolumeExport", "errno_of"]
