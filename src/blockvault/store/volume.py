"""The encrypted volume store: sparse, authenticated per 64 KiB unit, copy-on-write snapshots, clone fall-through.

The normative description is docs/design/volume-format.md; rule numbers in comments (W1, R2, ...) point there.

A volume directory holds:

    data        physical slots of UNIT_SIZE bytes, AES-GCM ciphertext only, slot s at offset s * UNIT_SIZE (sparse)
    map.db      SQLite (WAL, synchronous=FULL): meta, the live block map, snapshots and their frozen maps

Write path:  seal each unit (fresh random nonce, AAD = volume/unit/seq) -> pwritev into FREE slots -> pending rows in
             memory. flush(): fdatasync(data) -> one SQLite transaction for all pending rows -> release dereferenced
             slots. Nothing the committed map or a snapshot references is ever overwritten, so a crash at any point
             leaves every unit either at its last flushed version or (for flushed units) the new one: never torn.
Read path:   rows for the range (pending overlaid on committed) -> preadv of coalesced slots -> decrypt; units the
             volume lacks fall through to the clone source or read as zeros.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import heapq
import itertools
import os
import re
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from blockvault.crypto import Aead
from blockvault.errors import (
    Conflict,
    DecryptionFailed,
    IntegrityError,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from blockvault.store import format as fmt
from blockvault.store.format import NONCE_SIZE, PIECE_SIZE, PIECES, TAG_SIZE, UNIT_SIZE

__all__ = ["UNIT_SIZE", "SnapshotReader", "VolumeStore", "destroy"]

DEK_SIZE: Final = 32  # AES-256; the vault issues 32-byte DEKs (docs/design/key-hierarchy.md)

# Bounded work per batch: 64 units = 4 MiB of ciphertext held at once on the write path and 4 MiB of read buffers
# (the scratch space a store keeps). Both stay far under IOV_MAX (1024 on Linux): at most one syscall per slot run.
_WRITE_BATCH_UNITS: Final = 64
_READ_BATCH_UNITS: Final = 64
try:
    _IOV_MAX: Final = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
except (ValueError, OSError):  # pragma: no cover - every POSIX system we run on defines it
    _IOV_MAX = 1024  # type: ignore[misc]

_ZERO_UNIT: Final = bytes(UNIT_SIZE)
_SEALED_SIZE: Final = UNIT_SIZE + TAG_SIZE  # a unit's ciphertext and the room to place one tag after it
_SEALED_PIECE: Final = PIECE_SIZE + TAG_SIZE
_UNIT_MASK: Final = UNIT_SIZE - 1
# Whole-unit READs of up to this many units take _fetch_run's path: one preadv (within IOV_MAX) into per-thread
# buffers of up to 4 MiB, kept while the thread and the store live.
_RUN_UNITS: Final = min(_READ_BATCH_UNITS, _IOV_MAX)
# Committed map rows kept in memory (about 250 bytes each, ~330 for a pieced row: 8-11 MiB, the rows of 2 GiB of
# recently used units), so the steady-state data path does not query map.db. Coherent by construction: only
# _flush_locked changes the committed live map, and it updates the cache with the rows it commits.
_ROW_CACHE_UNITS: Final = 32768
_MAX_SNAPSHOT_NAME: Final = 255

# slot, nonce, tag, seq: one map row without its unit index.
Row = tuple[int, bytes, bytes, int]


# --------------------------------------------------------------------------------------------------------------------
# SQLite plumbing: every sqlite3 exception is translated here (house style §2.3: adapters classify their errors).

# Primary result codes that mean "the database is fine, the environment is not" (sqlite.org/rescode.html).
_SQLITE_TRANSIENT: Final = frozenset({5, 6, 10, 13, 14})  # BUSY, LOCKED, IOERR, FULL, CANTOPEN


@contextlib.contextmanager
def _db_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _SQLITE_TRANSIENT:
            raise Unavailable(dependency=f"volume map {path}") from exc
        raise IntegrityError(what=f"volume map {path} ({exc})") from exc


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: autocommit, transactions are explicit (BEGIN IMMEDIATE) so we know exactly what commits.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        # Rule W2: a committed map transaction is durable before flush() returns.
        conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def _read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # In WAL mode a read transaction sees one consistent committed state across several statements.
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def _load_meta(conn: sqlite3.Connection, path: Path, volume_id: str, aead: Aead) -> dict[str, Any]:
    """Validate the header (magic, version, identity, unit size, key check) and return the meta rows."""
    try:
        meta: dict[str, Any] = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.OperationalError as exc:  # no meta table: not a volume map at all
        raise IntegrityError(what=f"volume map {path} (not a blockvault volume)") from exc
    if meta.get("magic") != fmt.MAGIC:
        raise IntegrityError(what=f"volume map {path} (bad magic)")
    version = meta.get("format_version")
    if version not in fmt.READABLE_VERSIONS:
        # Fail closed on a format we do not know (docs/design/volume-format.md, Versions).
        readable = ", ".join(map(str, fmt.READABLE_VERSIONS))
        raise IntegrityError(f"unsupported volume format version {version!r} in {path}; this build reads {readable}")
    if meta.get("volume_id") != volume_id:
        raise IntegrityError(what=f"volume map {path} (belongs to another volume)")
    if meta.get("unit_size") != UNIT_SIZE:
        raise IntegrityError(what=f"volume map {path} (unit size {meta.get('unit_size')!r})")
    for key in ("size", "seq"):
        if not isinstance(meta.get(key), int) or meta[key] < 0:
            raise IntegrityError(what=f"volume map {path} (bad {key})")
    check = meta.get("key_check")
    if not isinstance(check, bytes) or len(check) != NONCE_SIZE + TAG_SIZE:
        raise IntegrityError(what=f"volume map {path} (bad key check)")
    # Raises DecryptionFailed when the caller's DEK is not this volume's.
    aead.open(check[:NONCE_SIZE], check[NONCE_SIZE:], fmt.key_check_aad(volume_id))
    return meta


def _check_identity(volume_id: str, dek: bytes) -> Aead:
    if not isinstance(volume_id, str) or not volume_id:
        raise ValueError("volume_id must be a non-empty string")
    if len(dek) != DEK_SIZE:
        raise ValueError(f"a volume DEK is {DEK_SIZE} bytes")
    return Aead(bytes(dek))


def _open_data(directory: Path, flags: int, volume_id: str) -> int:
    try:
        return os.open(directory / fmt.DATA_FILE, flags | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        # The map exists (checked by the caller) but the data it references does not: refuse, never read zeros.
        raise IntegrityError(what=f"volume {volume_id} (data file missing)") from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------------------------
# Data-file I/O shared by the store and snapshot readers.


def _runs(items: Sequence[tuple[int, int]]) -> Iterator[list[tuple[int, int]]]:
    """Group (slot, position) pairs, sorted by slot, into runs of consecutive slots of at most _IOV_MAX entries."""
    run: list[tuple[int, int]] = []
    for item in items:
        if run and (item[0] != run[-1][0] + 1 or len(run) >= _IOV_MAX):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def _rest(buffers: list[memoryview], done: int) -> list[memoryview]:
    """What is left of `buffers` after the first `done` bytes (a short preadv/pwritev resumes from there)."""
    for index, buffer in enumerate(buffers):
        if done < len(buffer):
            return [buffer[done:], *buffers[index + 1 :]]
        done -= len(buffer)
    return []


def _pread_full(fd: int, buffers: list[memoryview], offset: int, volume_id: str) -> None:
    want = sum(map(len, buffers))
    got = os.preadv(fd, buffers, offset)
    while got < want:
        # Regular files only return short at EOF; retry once from where we stopped to be sure.
        more = os.preadv(fd, _rest(buffers, got), offset + got)
        if more == 0:
            # A slot the map references is missing (truncated data file): refuse, never return zeros.
            slot = (offset + got) // UNIT_SIZE
            raise IntegrityError(what=f"volume {volume_id} slot {slot} (data file truncated)")
        got += more


def _pwrite_full(fd: int, buffers: list[memoryview], offset: int) -> None:
    want = sum(map(len, buffers))
    done = os.pwritev(fd, buffers, offset)
    while done < want:
        more = os.pwritev(fd, _rest(buffers, done), offset + done)
        if more == 0:  # pragma: no cover - the kernel reports ENOSPC instead
            raise OSError(errno.EIO, "short write to volume data file")
        done += more


def _writeback_starter() -> Callable[[int], None]:
    """sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE): start writeback of the file's dirty pages, without
    waiting for it (Linux; elsewhere a no-op). Python's os module lacks it; ctypes releases the GIL for the call."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return lambda fd: None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int

    def start(fd: int) -> None:
        call(fd, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE; advisory: a failure changes nothing (flush still fdatasyncs)

    return start


_start_writeback: Final = _writeback_starter()
# Unflushed ciphertext after which the store starts writeback early (W4): a large sequential write then overlaps the
# disk with the transfer, and a writethrough client's group of 16 read-modify-writes (1 MiB of slots) overlaps it
# with the group's own CPU work, instead of leaving all of it to the next flush's fdatasync (volume-format.md W4).
_WRITEBACK_KICK: Final = 256 << 10
# Spare write-batch buffers a store keeps (4 MiB each): one per concurrent writer, as many as nbdcopy's connections.
_SPARE_BUFFERS: Final = 4
# The data file's size is kept past every slot a write may use (volume-format.md "Data file size"): a pwrite that
# extends a file makes ext4 log a size change per call while writeback runs (2x the kernel time of the same writes
# inside the file, measured). The home area is covered on open; the spill area grows by this much at a time (by
# the volume's size if that is less).
_SPILL_GROWTH: Final = 256 << 20


def _decrypt_rows(
    fd: int, aead: Aead, volume_id: str, rows: Sequence[tuple[int, Row]], buffers: list[bytearray] | None = None
) -> list[bytes]:
    """Plaintext of each (unit, row), in the given order; one preadv per run of consecutive slots (rule R1).

    `buffers` is scratch space the caller owns (grown as needed); reusing it saves zeroing fresh memory per unit.
    """
    if buffers is None:
        buffers = []
    while len(buffers) < len(rows):
        buffers.append(bytearray(_SEALED_SIZE))
    order = sorted((row[0], position) for position, (_, row) in enumerate(rows))
    for run in _runs(order):
        views = [memoryview(buffers[position])[:UNIT_SIZE] for _, position in run]
        _pread_full(fd, views, run[0][0] * UNIT_SIZE, volume_id)
    out: list[bytes] = []
    for (unit, row), buffer in zip(rows, buffers, strict=False):
        _slot, nonce, tag, seq = row
        if _row_pieces(volume_id, unit, row) == 1:  # one call, no extra copy
            buffer[UNIT_SIZE:] = tag
            try:
                out.append(aead.open(nonce, buffer, fmt.unit_aad(volume_id, unit, seq)))
            except DecryptionFailed as exc:
                raise DecryptionFailed(f"unit {unit} of volume {volume_id} failed authentication") from exc
            continue
        plaintext = bytearray(UNIT_SIZE)
        _open_pieces(aead, volume_id, unit, row, PIECES, buffer, 0, memoryview(plaintext))
        out.append(bytes(plaintext))
    return out


def _open_rows_into(
    fd: int,
    cipher: Aead,
    volume_id: str,
    rows: Sequence[tuple[int, Row]],
    dests: Sequence[memoryview],
    buffers: list[bytearray],
) -> None:
    """Like _decrypt_rows, into caller-owned memory: the plaintext of rows[i] goes to dests[i] (UNIT_SIZE bytes).

    `buffers` is the caller's ciphertext scratch space (grown as needed). On an error the destinations may hold
    unauthenticated bytes: the caller must discard them (it raises, so it does)."""
    while len(buffers) < len(rows):
        buffers.append(bytearray(_SEALED_SIZE))
    order = sorted((row[0], position) for position, (_, row) in enumerate(rows))
    for run in _runs(order):
        views = [memoryview(buffers[position])[:UNIT_SIZE] for _, position in run]
        _pread_full(fd, views, run[0][0] * UNIT_SIZE, volume_id)
    for (unit, row), buffer, dest in zip(rows, buffers, dests, strict=False):
        _open_pieces(cipher, volume_id, unit, row, _row_pieces(volume_id, unit, row), buffer, 0, dest)


def _seal_unit(
    cipher: Aead, volume_id: str, unit: int, seq: int, nonce: bytes, plaintext: memoryview | bytearray, blob: memoryview
) -> bytes:
    """Seal one unit into `blob` (_SEALED_SIZE bytes) in len(nonce) / NONCE_SIZE pieces; return the row's tag.

    The unit's ciphertext ends up contiguous in blob[:UNIT_SIZE] (one pwritev piece per unit): piece i + 1's
    ciphertext is written over piece i's tag, which is taken out first."""
    if len(nonce) == NONCE_SIZE:
        cipher.seal_into(nonce, plaintext, fmt.unit_aad(volume_id, unit, seq), blob)
        return bytes(blob[UNIT_SIZE:])
    tags: list[bytes] = []
    plaintext = memoryview(plaintext)  # slices of a view, not copies
    for piece, aad in enumerate(fmt.piece_aads(volume_id, unit, seq)):
        at = piece * PIECE_SIZE
        end = at + PIECE_SIZE
        cipher.seal_into(
            nonce[piece * NONCE_SIZE : (piece + 1) * NONCE_SIZE], plaintext[at:end], aad, blob[at : end + TAG_SIZE]
        )
        tags.append(bytes(blob[end : end + TAG_SIZE]))
    return b"".join(tags)


@dataclasses.dataclass(slots=True)
class _Batch:
    """The plan of one write batch (VolumeStore._begin_batch): per unit its slot, nonce(s) and seq."""

    buffer: bytearray  # ciphertext | tag of each unit, _SEALED_SIZE apart
    units: list[int] = dataclasses.field(default_factory=list)
    slots: list[int] = dataclasses.field(default_factory=list)
    nonces: list[bytes] = dataclasses.field(default_factory=list)
    seqs: list[int] = dataclasses.field(default_factory=list)


def _seal_and_write(
    fd: int, cipher: Aead, volume_id: str, batch: _Batch, plaintexts: Sequence[memoryview | bytearray]
) -> list[bytes]:
    """Seal plaintexts[i] as batch.units[i] into the batch's buffer and pwritev the ciphertext to its slots (one
    call per run of consecutive slots); return each unit's tag(s). Touches no store state: runs unlocked."""
    buffer = memoryview(batch.buffer)
    tags: list[bytes] = []
    views: list[memoryview] = []  # ciphertext of unit i
    for position, plaintext in enumerate(plaintexts):
        blob = buffer[position * _SEALED_SIZE : (position + 1) * _SEALED_SIZE]
        unit, seq, nonce = batch.units[position], batch.seqs[position], batch.nonces[position]
        tags.append(_seal_unit(cipher, volume_id, unit, seq, nonce, plaintext, blob))
        views.append(blob[:UNIT_SIZE])
    order = sorted((slot, position) for position, slot in enumerate(batch.slots))
    for run in _runs(order):
        _pwrite_full(fd, [views[position] for _, position in run], run[0][0] * UNIT_SIZE)
    return tags


def _row_pieces(volume_id: str, unit: int, row: Row) -> int:
    """The number of pieces of `row` (format.row_pieces); IntegrityError for a row that describes no layout."""
    pieces = fmt.row_pieces(row[1], row[2])
    if not pieces:
        raise IntegrityError(what=f"unit {unit} of volume {volume_id} (malformed map row)")
    return pieces


def _open_pieces(
    cipher: Aead, volume_id: str, unit: int, row: Row, pieces: int, sealed: bytearray, first: int, dest: memoryview
) -> None:
    """Authenticate and decrypt pieces first.. of `unit` into `dest` (len(dest) / piece size pieces); `pieces` is
    the row's layout, as _row_pieces validated it (1: whole, then first = 0 and dest is the unit).

    `sealed`, exactly _SEALED_SIZE bytes (a unit sealed whole is opened from all of it), holds their ciphertext
    contiguously from offset 0, with TAG_SIZE spare bytes after it. Pieces are opened last first: piece i's tag is
    placed over the first bytes of piece i + 1, which has already been decrypted (so one preadv of the contiguous
    slot feeds every piece, no per-piece buffers). On an error `dest` may hold
    unauthenticated bytes: the caller must discard them (it raises, so it does)."""
    _slot, nonce, tag, seq = row
    try:
        if pieces == 1:
            sealed[UNIT_SIZE:_SEALED_SIZE] = tag
            cipher.open_into(nonce, sealed, fmt.unit_aad(volume_id, unit, seq), dest)
            return
        count = len(dest) // PIECE_SIZE
        if count == 1:  # a 4 KiB read: one piece, no list of AADs
            sealed[PIECE_SIZE:_SEALED_PIECE] = tag[first * TAG_SIZE : (first + 1) * TAG_SIZE]
            cipher.open_into(
                nonce[first * NONCE_SIZE : (first + 1) * NONCE_SIZE],
                memoryview(sealed)[:_SEALED_PIECE],
                fmt.piece_aad(volume_id, unit, seq, first),
                dest,
            )
            return
        aads = fmt.piece_aads(volume_id, unit, seq)
        view = memoryview(sealed)
        for at in range((count - 1) * PIECE_SIZE, -1, -PIECE_SIZE):
            piece = first + at // PIECE_SIZE
            end = at + PIECE_SIZE
            sealed[end : end + TAG_SIZE] = tag[piece * TAG_SIZE : (piece + 1) * TAG_SIZE]
            cipher.open_into(
                nonce[piece * NONCE_SIZE : (piece + 1) * NONCE_SIZE],
                view[at : end + TAG_SIZE],
                aads[piece],
                dest[at:end],
            )
    except DecryptionFailed as exc:
        raise DecryptionFailed(f"unit {unit} of volume {volume_id} failed authentication") from exc


def _any_bit(bitmap: bytearray, first: int, last: int) -> bool:
    """Whether any bit in [first, last] may be set (whole bytes are checked: a cheap over-approximation)."""
    chunk = bitmap[first >> 3 : (last >> 3) + 1]
    return chunk.count(0) != len(chunk)


def _zero_past(plaintext: bytes, index: int, size: int) -> bytes:
    """Invariant I6: the bytes of a unit past the end of its volume (or snapshot) are zeros."""
    tail = size - index * UNIT_SIZE
    if tail >= UNIT_SIZE:
        return plaintext
    return plaintext[:tail] + bytes(UNIT_SIZE - tail)


def _unit_span(offset: int, length: int) -> tuple[int, int]:
    return offset // UNIT_SIZE, (offset + length - 1) // UNIT_SIZE


def _assemble(offset: int, length: int, first: int, plaintexts: Sequence[bytes]) -> bytes:
    """Cut [offset, offset + length) out of consecutive unit plaintexts starting at unit `first`."""
    if len(plaintexts) == 1 and length == UNIT_SIZE:
        return plaintexts[0]
    start = offset - first * UNIT_SIZE
    parts: list[bytes | memoryview] = []
    for plaintext in plaintexts:
        view = memoryview(plaintext)
        take = min(UNIT_SIZE - start, length)
        parts.append(view[start : start + take])
        length -= take
        start = 0
    return b"".join(parts)


# --------------------------------------------------------------------------------------------------------------------
# Slot bitmaps: one bit per physical slot; 2 MiB per TiB of slot space, independent of how fragmented it is.


def _bit(bitmap: bytearray, slot: int) -> bool:
    index = slot >> 3
    return index < len(bitmap) and (bitmap[index] >> (slot & 7)) & 1 == 1


def _set_bit(bitmap: bytearray, slot: int) -> None:
    index = slot >> 3
    if index >= len(bitmap):
        bitmap.extend(bytes(max(index + 1, 2 * len(bitmap)) - len(bitmap)))
    bitmap[index] |= 1 << (slot & 7)


_BYTE_RUNS: Final = re.compile(rb"\x00+|\xff+|[\x01-\xfe]")


def _bitmap_runs(bitmap: bytes | bytearray, skip: int, count: int) -> list[tuple[int, bool]]:
    """(bits, set) runs of bitmap bits skip .. skip + count - 1 (bit i is bitmap[i >> 3] >> (i & 7) & 1).

    Whole 0x00 and 0xff bytes are taken a run at a time by the regex engine; only mixed bytes go bit by bit."""
    runs: list[tuple[int, bool]] = []

    def add(bits: int, value: bool) -> None:
        if runs and runs[-1][1] == value:
            runs[-1] = (runs[-1][0] + bits, value)
        else:
            runs.append((bits, value))

    for match in _BYTE_RUNS.finditer(bitmap):
        byte = bitmap[match.start()]
        if byte in (0, 0xFF):
            add(8 * (match.end() - match.start()), byte == 0xFF)
        else:
            for bit in range(8):
                add(1, bool(byte >> bit & 1))
    # Clip the whole-byte runs to [skip, skip + count).
    out: list[tuple[int, bool]] = []
    pos, end = 0, skip + count
    for bits, value in runs:
        lo, hi = max(pos, skip), min(pos + bits, end)
        if hi > lo:
            out.append((hi - lo, value))
        pos += bits
        if pos >= end:
            break
    return out


def _clear_bit(bitmap: bytearray, slot: int) -> None:
    index = slot >> 3
    if index < len(bitmap):
        bitmap[index] &= ~(1 << (slot & 7)) & 0xFF


def _release_handles(fd: int, conn: sqlite3.Connection) -> None:
    """Finalizer of an abandoned store: close without flushing, which is exactly a crash (pending writes are lost)."""
    with contextlib.suppress(Exception):
        conn.close()
    with contextlib.suppress(OSError):
        os.close(fd)


# --------------------------------------------------------------------------------------------------------------------


class VolumeStore:
    """One open volume: read/write plaintext at byte offsets; data at rest is AES-GCM per 64 KiB unit.

    Concurrency contract: calls from any number of threads are serializable, each unit replaced all-or-nothing
    (in particular write_unit_if_absent against write). Every public method takes one per-store lock; a write of
    whole units only seals and writes each batch outside it (_write_whole: planned and recorded under it), so
    writers on several connections use several cores. Only one
    VolumeStore may have a volume open at a time, across processes too: open() takes an exclusive flock on the data
    file and raises Conflict otherwise. SnapshotReaders take no lock and may run in other threads or processes
    while the store writes (see SnapshotReader).

    Durability contract: write() returns once the ciphertext is in the page cache and the map change is pending in
    memory; flush() (or write(fua=True), snapshot(), close()) makes every earlier write durable. After a crash each
    unit reads as of some flush or later, never torn and never an IntegrityError. A store dropped without close()
    behaves like a crash (its finalizer closes the files without flushing).

    Clones: a store opened with `source` reads units it does not hold from that snapshot. The store does not
    remember its source: the caller must pass the same source on every open until hydration has copied every unit,
    or unhydrated units read as zeros. The caller owns the source reader and closes it after the store.
    """

    def __init__(
        self,
        *,
        directory: Path,
        volume_id: str,
        dek: bytes,
        aead: Aead,
        fd: int,
        conn: sqlite3.Connection,
        meta: Mapping[str, Any],
        source: SnapshotReader | None,
        random: Callable[[int], bytes],
    ) -> None:
        self._dir = directory
        self._map_path = directory / fmt.MAP_FILE
        self._volume_id = volume_id
        self._dek = dek
        self._aead = aead
        self._fd = fd
        self._conn = conn
        self._source = source
        self._source_units = fmt.unit_count(source.size) if source is not None else 0
        self._random = random
        self._lock = threading.Lock()
        self._closed = False
        self._closing = False
        self._size: int = meta["size"]
        self._seq: int = meta["seq"]  # committed + pending: a unit write sealed in k pieces adds k (I4)
        self._committed_seq: int = meta["seq"]
        self._pending: dict[int, Row] = {}  # unit -> row written to the data file but not yet in the map
        self._limbo: list[int] = []  # committed slots dereferenced by pending rows: free after the next commit
        self._used = bytearray()  # slot bits: referenced by the live map, a snapshot, a pending row or limbo
        self._pinned = bytearray()  # slot bits: referenced by some snapshot (never released until it is deleted)
        self._free: list[int] = []  # min-heap of slots known free (lazy: entries may be stale, check _used)
        self._next_spill = 0  # next never-used slot past the home area
        self._scratch: list[bytearray] = []  # read buffers, reused under the lock
        self._local = threading.local()  # per thread: _fetch_run's ciphertext | tag buffers (used unlocked)
        self._sealed = bytearray(_SEALED_SIZE)  # the ciphertext of a read inside one unit (_read_one_into)
        self._sealed_view = memoryview(self._sealed)
        self._cipher = Aead(dek)
        self._buffers: list[bytearray] = []  # spare ciphertext | tag buffers of write batches (_SPARE_BUFFERS)
        self._writing: set[int] = set()  # slots of batches begun and not ended (empty: no batch in flight)
        self._drained = threading.Condition(self._lock)  # notified when _writing becomes empty
        self._unstarted = 0  # bytes written since the last flush or writeback start (_WRITEBACK_KICK)
        self._merge = (bytearray(UNIT_SIZE), bytearray(UNIT_SIZE))  # partial units of one batch (read-modify-write)
        self._unit_buf = memoryview(bytearray(UNIT_SIZE))  # a partly read unit's plaintext
        self._held = bytearray()  # unit bits: units with a committed live row (lets lookups skip map.db)
        self._rows: dict[int, Row] = {}  # committed rows of recently used units (FIFO, _ROW_CACHE_UNITS)
        self._file_size = os.fstat(fd).st_size  # the data file's size as this store last set or saw it
        self._rebuild_allocator()
        self._cover(fmt.unit_count(self._size) * UNIT_SIZE, 0)
        # Last: if anything above raised, open() closes the handles itself and no finalizer may close them again.
        self._finalizer = weakref.finalize(self, _release_handles, fd, conn)

    # ---------------------------------------------------------------------------------------------------- lifecycle

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        volume_id: str,
        size_bytes: int,
        dek: bytes,
        random: Callable[[int], bytes] = os.urandom,
    ) -> VolumeStore:
        """Create an empty (all zeros, nothing allocated) volume in `directory` and open it.

        The map is built under a temporary name and renamed into place after it and the data file are durable,
        so a crash during create leaves either no volume or a complete empty one. Conflict if one already exists.
        """
        aead = _check_identity(volume_id, dek)
        fmt.check_size(size_bytes)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        map_path = directory / fmt.MAP_FILE
        if map_path.exists():
            raise Conflict(kind="volume", ident=volume_id, reason=f"{directory} already holds a volume")
        tmp = directory / (fmt.MAP_FILE + ".creating")
        for leftover in (tmp, Path(str(tmp) + "-journal")):
            leftover.unlink(missing_ok=True)
        nonce = random(NONCE_SIZE)
        key_check = nonce + aead.seal(nonce, b"", fmt.key_check_aad(volume_id))
        meta: dict[str, object] = {
            "magic": fmt.MAGIC,
            "format_version": fmt.FORMAT_VERSION,
            "volume_id": volume_id,
            "unit_size": UNIT_SIZE,
            "size": size_bytes,
            "seq": 0,
            "key_check": key_check,
        }
        with _db_errors(tmp):
            # Rollback-journal mode while building: a single file we can rename once it is complete.
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA synchronous = FULL")
                with _transaction(conn):
                    for statement in fmt.SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())
            finally:
                conn.close()
        data_fd = os.open(directory / fmt.DATA_FILE, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fsync(data_fd)
        finally:
            os.close(data_fd)
        for suffix in ("-wal", "-shm", "-journal"):
            # Orphans of a destroyed volume: SQLite would replay a stale WAL into the new map.
            Path(str(map_path) + suffix).unlink(missing_ok=True)
        os.replace(tmp, map_path)  # rule C1: publishing the map is what makes the volume exist
        _fsync_dir(directory)
        _fsync_dir(directory.parent)
        return cls.open(directory, volume_id=volume_id, dek=dek, random=random)

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        volume_id: str,
        dek: bytes,
        source: SnapshotReader | None = None,
        random: Callable[[int], bytes] = os.urandom,
    ) -> VolumeStore:
        """Open an existing volume. NotFound if there is none; IntegrityError/DecryptionFailed if it is not this one.

        `source` makes this store a clone of that snapshot (see the class docstring).
        """
        aead = _check_identity(volume_id, dek)
        directory = Path(directory)
        map_path = directory / fmt.MAP_FILE
        if not map_path.is_file():
            raise NotFound(kind="volume", ident=volume_id)
        if source is not None and source.volume_id == volume_id:
            raise InvalidArgument(field="source", reason="a volume cannot be its own clone source")
        fd = _open_data(directory, os.O_RDWR, volume_id)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise Conflict(kind="volume", ident=volume_id, reason="it is open in another VolumeStore") from exc
            with _db_errors(map_path):
                conn = _connect(map_path)
                try:
                    meta = _load_meta(conn, map_path, volume_id, aead)
                    if source is not None and source.size > meta["size"]:
                        # Like OCI: a clone is at least as large as its source, so the source never shows through
                        # past the clone's end (invariant I6).
                        raise InvalidArgument(field="source", reason="the clone is smaller than its source")
                    if meta["format_version"] != fmt.FORMAT_VERSION:
                        # v1 -> v2 before any write: v1 rows stay readable here, and a v1 build, which cannot read
                        # the pieced rows this store writes, now refuses the volume instead of failing their tags.
                        with _transaction(conn):
                            conn.execute(
                                "UPDATE meta SET value = ? WHERE key = 'format_version'", (fmt.FORMAT_VERSION,)
                            )
                        meta["format_version"] = fmt.FORMAT_VERSION
                    return cls(
                        directory=directory,
                        volume_id=volume_id,
                        dek=bytes(dek),
                        aead=aead,
                        fd=fd,
                        conn=conn,
                        meta=meta,
                        source=source,
                        random=random,
                    )
                except BaseException:
                    conn.close()
                    raise
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        """Flush, then release the files and the lock. Idempotent. The source reader is not closed."""
        with self._lock:
            if self._closed:
                return
            self._closing = True  # no new batch begins (_check_open) ...
            while self._writing:
                self._drained.wait()  # ... and those begun end before the handles close
            try:
                self._flush_locked()
            finally:
                self._closed = True
                self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------------------- properties

    @property
    def size(self) -> int:
        """Volume size in bytes."""
        return self._size

    @property
    def seq(self) -> int:
        """The volume-wide write counter, including writes not yet flushed."""
        return self._seq

    @property
    def volume_id(self) -> str:
        return self._volume_id

    # ---------------------------------------------------------------------------------------------------- data path

    def read(self, offset: int, length: int) -> bytes:
        """Plaintext of [offset, offset + length). InvalidArgument past the end; IntegrityError on tampered data."""
        with self._lock:
            self._check_open()
            fmt.check_range(offset, length, self._size)
            if length == 0:
                return b""
            first, last = _unit_span(offset, length)
            plaintexts: list[bytes] = []
            for start in range(first, last + 1, _READ_BATCH_UNITS):
                end = min(last, start + _READ_BATCH_UNITS - 1)
                plaintexts.extend(self._plaintexts(start, end))
            return _assemble(offset, length, first, plaintexts)

    def read_into(self, offset: int, out: bytearray | memoryview) -> None:
        """Fill `out` with the plaintext of [offset, offset + len(out)): read() into caller-owned memory.

        Whole units are decrypted straight into `out`. On an error (InvalidArgument, IntegrityError) `out` holds
        partial or unauthenticated bytes and must be discarded.
        """
        # The NBD server calls this once per READ (a 4 KiB random read: ~8 us of Python around ~6 us of preadv and
        # AES): the checks are written out instead of called, and a byte view is used as it comes.
        view = (
            out
            if isinstance(out, memoryview) and out.format == "B" and out.ndim == 1 and out.c_contiguous
            else memoryview(out).cast("B")
        )
        length = len(view)
        with self._lock:
            if self._closed or self._closing:
                self._check_open()
            if offset < 0 or offset + length > self._size:
                fmt.check_range(offset, length, self._size)
            if length == 0:
                return
            first, last = offset // UNIT_SIZE, (offset + length - 1) // UNIT_SIZE
            if first == last:
                self._read_one_into(first, offset, view)
                return
            run = None
            if not (offset | length) & _UNIT_MASK and last - first < _RUN_UNITS:
                run = self._fetch_run(first, last - first + 1)
            if run is None:
                for start in range(first, last + 1, _READ_BATCH_UNITS):
                    self._read_units_into(start, min(last, start + _READ_BATCH_UNITS - 1), offset, view)
                return
        self._open_run(first, *run, view)

    def write(self, offset: int, data: bytes | bytearray | memoryview, *, fua: bool = False) -> None:
        """Write plaintext at `offset`; with fua=True, durable on return. Each unit is replaced all-or-nothing.

        Units only partly covered are read-modify-written (their old content may come from the clone source).
        A write that fails part-way (OSError) may have replaced some units and not others.
        """
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        length = len(view)
        if length and not (offset | length) % UNIT_SIZE:
            self._write_whole(offset, view, fua)
            return
        with self._lock:
            self._check_open()
            fmt.check_range(offset, length, self._size)
            if length:
                self._write_locked(offset, view)
            if fua:
                self._flush_locked()

    def flush(self) -> None:
        """Make every earlier write durable (rules W1-W3)."""
        with self._lock:
            self._check_open()
            self._flush_locked()

    def resize(self, new_size: int) -> None:
        """Grow the volume (new bytes read as zeros). Shrinking is InvalidArgument; the same size is a no-op."""
        fmt.check_size(new_size)
        with self._lock:
            self._check_open()
            old = self._size
            if new_size < old:
                raise InvalidArgument(field="size", reason=f"volumes only grow ({new_size} < {old})")
            if new_size == old:
                return
            # The new bytes are zeros without any write: invariant I6 keeps every byte past the end zero. Flushing
            # first makes resize a barrier, so a crash never leaves a grown size over a partly flushed past.
            self._flush_locked()
            with _db_errors(self._map_path), _transaction(self._conn):
                self._conn.execute("UPDATE meta SET value = ? WHERE key = 'size'", (new_size,))
            self._size = new_size
            self._next_spill = max(self._next_spill, fmt.unit_count(new_size))
            self._cover(fmt.unit_count(new_size) * UNIT_SIZE, 0)

    def allocated_units(self) -> list[int]:
        """Units this volume holds itself (flushed or not), sorted; units only in the clone source are excluded."""
        with self._lock:
            self._check_open()
            with _db_errors(self._map_path):
                units = {unit for (unit,) in self._conn.execute("SELECT unit FROM map")}
            units.update(self._pending)
            return sorted(units)

    def has_unit(self, index: int) -> bool:
        """Whether this volume itself holds unit `index` (a clone's source does not count)."""
        with self._lock:
            self._check_open()
            return self._has_unit_locked(index)

    def held_runs(self, first: int, count: int) -> list[tuple[int, bool]]:
        """(units, held) runs covering units first .. first + count - 1: has_unit for a whole range at bitmap speed
        (base:allocation over a mostly empty 50 GB volume asks about ~800 000 units)."""
        with self._lock:
            self._check_open()
            lo = first >> 3
            chunk = bytearray(self._held[lo : (first + count + 7) >> 3])
            chunk.extend(bytes(((first + count + 7) >> 3) - lo - len(chunk)))
            base = lo << 3
            for unit in self._pending:
                if first <= unit < first + count:
                    chunk[(unit - base) >> 3] |= 1 << (unit & 7)
        return _bitmap_runs(chunk, first - base, count)

    def write_unit_if_absent(self, index: int, plaintext: bytes) -> bool:
        """Atomically write a whole unit unless the volume already holds it; True if written.

        For hydration: copying a unit from the clone source must never overwrite a user write that won the race.
        """
        if len(plaintext) != UNIT_SIZE:
            raise ValueError(f"a unit is {UNIT_SIZE} bytes, got {len(plaintext)}")
        with self._lock:
            self._check_open()
            if not 0 <= index < fmt.unit_count(self._size):
                raise InvalidArgument(field="unit", reason=f"{index} is outside the volume")
            if self._has_unit_locked(index):
                return False
            self._check_usage_bound(1)
            self._store_units([(index, memoryview(_zero_past(plaintext, index, self._size)), 1)])
            return True

    # ---------------------------------------------------------------------------------------------------- snapshots

    def snapshot(self, name: str) -> None:
        """Flush, then freeze the current map under `name`. Conflict if the name exists."""
        _check_snapshot_name(name)
        with self._lock:
            self._check_open()
            self._flush_locked()
            with _db_errors(self._map_path), _transaction(self._conn):
                if self._conn.execute("SELECT 1 FROM snapshots WHERE name = ?", (name,)).fetchone():
                    raise Conflict(kind="snapshot", ident=name, reason="a snapshot with this name exists")
                cursor = self._conn.execute(
                    "INSERT INTO snapshots(name, seq, size) VALUES (?, ?, ?)", (name, self._seq, self._size)
                )
                self._conn.execute(
                    "INSERT INTO snap_map(snap_id, unit, slot, nonce, tag, seq) "
                    "SELECT ?, unit, slot, nonce, tag, seq FROM map",
                    (cursor.lastrowid,),
                )
            # Right after a flush every used slot is referenced by the live map or an older snapshot, and now all of
            # them are referenced by some snapshot: the pinned set is exactly the used set.
            self._pinned = bytearray(self._used)
            for slot in self._writing:  # batches still being written: referenced by nothing yet
                _clear_bit(self._pinned, slot)

    def open_snapshot(self, name: str, *, dek: bytes | None = None) -> SnapshotReader:
        """A reader of snapshot `name` with its own file handles (usable after this store is closed)."""
        with self._lock:
            self._check_open()
        return SnapshotReader.open(
            self._dir, name=name, volume_id=self._volume_id, dek=self._dek if dek is None else dek
        )

    def delete_snapshot(self, name: str) -> None:
        """Drop snapshot `name` and free the slots only it referenced. Idempotent.

        Readers of the snapshot that are still open fail from then on with NotFound or IntegrityError (a freed slot
        may be rewritten), never with wrong data.
        """
        with self._lock:
            self._check_open()
            self._flush_locked()
            with _db_errors(self._map_path), _transaction(self._conn):
                row = self._conn.execute("SELECT id FROM snapshots WHERE name = ?", (name,)).fetchone()
                if row is None:
                    return
                self._conn.execute("DELETE FROM snap_map WHERE snap_id = ?", (row[0],))
                self._conn.execute("DELETE FROM snapshots WHERE id = ?", (row[0],))
            # Rule A3: slots become reusable only after the deletion is committed.
            self._rebuild_allocator()

    def snapshots(self) -> list[str]:
        """Snapshot names, oldest first."""
        with self._lock:
            self._check_open()
            with _db_errors(self._map_path):
                return [name for (name,) in self._conn.execute("SELECT name FROM snapshots ORDER BY id")]

    # ---------------------------------------------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed or self._closing:
            raise ValueError("the volume store is closed")

    def _check_usage_bound(self, units: int) -> None:
        if self._seq + units * PIECES > fmt.MAX_SEALS_PER_DEK:  # at most PIECES seals per unit
            raise Conflict(
                kind="volume",
                ident=self._volume_id,
                reason="its DEK reached the NIST SP 800-38D §8.3 bound of 2^32 seals; re-encrypt into a clone",
            )

    def _has_unit_locked(self, index: int) -> bool:
        # _held mirrors the committed map's units exactly (rebuilt from map.db, updated by each commit).
        return index in self._pending or _bit(self._held, index)

    def _committed_rows(self, first: int, last: int) -> dict[int, Row]:
        held = self._held
        if not _any_bit(held, first, last):
            return {}  # none of these units is in map.db: no query
        cache = self._rows
        found: dict[int, Row] = {}
        for unit in range(first, last + 1):
            row = cache.get(unit)
            if row is not None:
                found[unit] = row
            elif _bit(held, unit):
                break  # committed but not cached: ask map.db
        else:
            return found
        with _db_errors(self._map_path):
            cursor = self._conn.execute(
                "SELECT unit, slot, nonce, tag, seq FROM map WHERE unit BETWEEN ? AND ?", (first, last)
            )
            rows = {unit: (slot, nonce, tag, seq) for unit, slot, nonce, tag, seq in cursor}
        self._cache_rows(rows)
        return rows

    def _cache_rows(self, rows: Mapping[int, Row]) -> None:
        cache = self._rows
        cache.update(rows)
        excess = len(cache) - _ROW_CACHE_UNITS
        if excess > 0:
            for unit in list(itertools.islice(cache, excess)):  # oldest insertions first
                del cache[unit]

    def _plaintexts(self, first: int, last: int) -> list[bytes]:
        """Plaintext of units first..last: own rows (pending over committed), else the source, else zeros."""
        rows = self._committed_rows(first, last)
        if self._pending:
            for unit in range(first, last + 1):
                pending = self._pending.get(unit)
                if pending is not None:
                    rows[unit] = pending
        own = sorted(rows.items())
        decrypted: dict[int, bytes] = {}
        if own:
            plaintexts = _decrypt_rows(self._fd, self._aead, self._volume_id, own, self._scratch)
            decrypted = {unit: plaintext for (unit, _), plaintext in zip(own, plaintexts, strict=True)}
        out: list[bytes] = []
        for unit in range(first, last + 1):
            plaintext = decrypted.get(unit)
            if plaintext is None:
                plaintext = self._fallthrough(unit)
            out.append(plaintext)
        return out

    def _read_units_into(self, first: int, last: int, offset: int, out: memoryview) -> None:
        """read_into for units first..last (rule R1/R2): own rows (pending over committed) are decrypted, whole
        units straight into `out`; the others come from the clone source or are zeros."""
        rows = self._committed_rows(first, last)
        if self._pending:
            for unit in range(first, last + 1):
                pending = self._pending.get(unit)
                if pending is not None:
                    rows[unit] = pending
        end = offset + len(out)
        partial: list[tuple[int, Row]] = []
        whole: list[tuple[int, Row]] = []
        dests: list[memoryview] = []
        for unit in range(first, last + 1):
            base = unit * UNIT_SIZE
            lo, hi = max(offset, base), min(end, base + UNIT_SIZE)
            row = rows.get(unit)
            if row is None:
                source = self._fallthrough(unit)
                out[lo - offset : hi - offset] = memoryview(source)[lo - base : hi - base]
            elif hi - lo == UNIT_SIZE:
                whole.append((unit, row))
                dests.append(out[lo - offset : hi - offset])
            else:
                partial.append((unit, row))
        if whole:
            _open_rows_into(self._fd, self._cipher, self._volume_id, whole, dests, self._scratch)
        for unit, row in partial:  # at most the first and the last unit of the request
            base = unit * UNIT_SIZE
            lo, hi = max(offset, base), min(end, base + UNIT_SIZE)
            _open_rows_into(self._fd, self._cipher, self._volume_id, [(unit, row)], [self._unit_buf], self._scratch)
            out[lo - offset : hi - offset] = self._unit_buf[lo - base : hi - base]

    def _fetch_run(self, first: int, count: int) -> tuple[list[Row], list[bytearray]] | None:
        """The first step of a READ of whole units held as one run of consecutive slots, each sealed whole, rows in
        memory (a sequential 1 MiB READ of data written sequentially): their rows, and their ciphertext read with one
        preadv into the calling thread's scratch buffers. None, with nothing read, for anything else (the general
        path). Runs under the lock; _open_run, the decryption, does not (volume-format.md "Locks and concurrency")."""
        pending, cache = self._pending, self._rows
        rows: list[Row] = []
        slot = -1
        for unit in range(first, first + count):
            row = pending.get(unit) or cache.get(unit)
            if row is None or fmt.row_pieces(row[1], row[2]) != 1 or (slot >= 0 and row[0] != slot + 1):
                return None  # not held, not cached, pieced (or malformed: the general path says so), not the next slot
            rows.append(row)
            slot = row[0]
        local = self._local
        scratch: list[bytearray] | None = getattr(local, "scratch", None)
        if scratch is None:
            scratch = local.scratch = []
            local.views = []
        views: list[memoryview] = local.views
        while len(scratch) < count:
            scratch.append(bytearray(_SEALED_SIZE))
            views.append(memoryview(scratch[-1])[:UNIT_SIZE])
        views = views[:count]
        at = rows[0][0] * UNIT_SIZE
        if os.preadv(self._fd, views, at) != count * UNIT_SIZE:  # short: _pread_full finishes or raises
            _pread_full(self._fd, views, at, self._volume_id)
        return rows, scratch

    def _open_run(self, first: int, rows: list[Row], scratch: list[bytearray], out: memoryview) -> None:
        """Decrypt what _fetch_run read into `out`: one call per unit, outside the store lock. The ciphertext is
        the calling thread's private copy, taken under the lock, so writers may reuse its slots meanwhile."""
        cipher, volume_id = self._cipher, self._volume_id
        for index, (row, sealed) in enumerate(zip(rows, scratch, strict=False)):
            at = index * UNIT_SIZE
            _open_pieces(cipher, volume_id, first + index, row, 1, sealed, 0, out[at : at + UNIT_SIZE])

    def _read_one_into(self, unit: int, offset: int, out: memoryview) -> None:
        """_read_units_into for a read inside one unit (a 4 KiB READ): the same rules (R1/R2) without the
        batching machinery, whose lists, sorts and generators cost more than the 64 KiB preadv + decrypt."""
        lo = offset - unit * UNIT_SIZE
        hi = lo + len(out)
        row = self._pending.get(unit)
        if row is None:
            held, index = self._held, unit >> 3  # _bit(self._held, unit), written out
            if index < len(held) and held[index] >> (unit & 7) & 1:
                row = self._rows.get(unit) or self._committed_rows(unit, unit).get(unit)
            if row is None:
                out[:] = memoryview(self._fallthrough(unit))[lo:hi]
                return
        # Only the pieces [lo, hi) touches are read and opened (one for an aligned 4 KiB read of a v2 row).
        pieces = fmt.row_pieces(row[1], row[2]) or _row_pieces(self._volume_id, unit, row)
        size = UNIT_SIZE // pieces
        first = lo // size
        start, stop = first * size, -(-hi // size) * size
        sealed = self._sealed
        want = stop - start
        buffers = [self._sealed_view[:want]]
        if os.preadv(self._fd, buffers, row[0] * UNIT_SIZE + start) != want:  # short: _pread_full finishes or raises
            _pread_full(self._fd, buffers, row[0] * UNIT_SIZE + start, self._volume_id)
        if lo == start and hi == stop:
            _open_pieces(self._cipher, self._volume_id, unit, row, pieces, sealed, first, out)
            return
        _open_pieces(self._cipher, self._volume_id, unit, row, pieces, sealed, first, self._unit_buf[:want])
        out[:] = self._unit_buf[lo - start : hi - start]

    def _fallthrough(self, unit: int) -> bytes:
        if self._source is not None and unit < self._source_units:
            return self._source.read_unit(unit)
        return _ZERO_UNIT

    def _write_locked(self, offset: int, view: memoryview) -> None:
        length = len(view)
        first, last = _unit_span(offset, length)
        self._check_usage_bound(last - first + 1)
        for start in range(first, last + 1, _WRITE_BATCH_UNITS):
            end = min(last, start + _WRITE_BATCH_UNITS - 1)
            committed = self._committed_rows(start, end)
            items: list[tuple[int, memoryview | bytearray, int]] = []
            merges = 0
            for unit in range(start, end + 1):
                base = unit * UNIT_SIZE
                lo = max(offset, base)
                hi = min(offset + length, base + UNIT_SIZE)
                piece = view[lo - offset : hi - offset]
                if hi - lo == UNIT_SIZE:
                    items.append((unit, piece, 1))  # written whole: sealed whole (the v2 layout choice)
                    continue
                # Partial unit: read-modify-write of the whole unit (the unit of authentication). Only the first
                # and the last unit of a write can be partial, so two merge buffers serve a batch.
                merged = self._merge[merges]
                merges += 1
                row = self._pending.get(unit) or committed.get(unit)
                if row is not None:
                    target = memoryview(merged)
                    _open_rows_into(self._fd, self._cipher, self._volume_id, [(unit, row)], [target], self._scratch)
                else:
                    merged[:] = self._fallthrough(unit)
                merged[lo - base : hi - base] = piece
                items.append((unit, merged, PIECES))  # written in part: sealed in pieces
            self._store_units(items)

    def _store_units(self, items: Sequence[tuple[int, memoryview | bytearray, int]]) -> None:
        """Seal whole units (unit, plaintext, pieces), write them to free slots, and record the rows as pending
        (rules A1, A2, W0). Under the lock throughout; _write_whole runs the same three steps with the sealing and
        writing outside it."""
        batch = self._begin_batch([(unit, pieces) for unit, _, pieces in items])
        try:
            tags = _seal_and_write(self._fd, self._cipher, self._volume_id, batch, [item[1] for item in items])
        except BaseException:
            self._end_batch(batch, None)
            raise
        self._end_batch(batch, tags)

    def _write_whole(self, offset: int, view: memoryview, fua: bool) -> None:
        """write() of whole units: each batch is planned under the lock (slots, nonces, seq), sealed and written
        outside it, and its rows recorded under it again. AES and pwritev release the GIL, so writers on other
        connections to this volume overlap theirs (nbd.md M1). A unit's row is replaced all-or-nothing when the
        batch is recorded: concurrent writes to one unit end with one of them whole, as NBD allows."""
        first = offset // UNIT_SIZE
        count = len(view) // UNIT_SIZE
        for start in range(0, count, _WRITE_BATCH_UNITS):
            units = range(first + start, first + min(count, start + _WRITE_BATCH_UNITS))
            with self._lock:
                self._check_open()
                if start == 0:
                    fmt.check_range(offset, len(view), self._size)
                self._check_usage_bound(len(units))
                batch = self._begin_batch([(unit, 1) for unit in units])
            plaintexts = [view[(unit - first) * UNIT_SIZE : (unit - first + 1) * UNIT_SIZE] for unit in units]
            try:
                tags = _seal_and_write(self._fd, self._cipher, self._volume_id, batch, plaintexts)
            except BaseException:
                with self._lock:
                    self._end_batch(batch, None)
                raise
            with self._lock:
                self._end_batch(batch, tags)
        if fua:
            self.flush()

    def _begin_batch(self, layout: Sequence[tuple[int, int]]) -> _Batch:
        """Under the lock: nonces, seq and a free slot for each (unit, pieces), and a ciphertext buffer. The slots
        stay marked used (and listed in _writing) until _end_batch, so no other batch, release or rebuild takes
        them meanwhile; close() waits for every batch begun."""
        total = sum(pieces for _, pieces in layout)
        nonces = self._random(total * NONCE_SIZE)  # one fresh random 96-bit nonce per piece (I4)
        if len(nonces) != total * NONCE_SIZE:
            raise ValueError("random() returned a short nonce")
        pending, held = self._pending, self._held
        batch = _Batch(self._buffers.pop() if self._buffers else bytearray(_WRITE_BATCH_UNITS * _SEALED_SIZE))
        at = 0
        for unit, pieces in layout:
            self._seq += pieces  # one per invocation: the usage meter of MAX_SEALS_PER_DEK
            first_write = unit not in pending and not _bit(held, unit)
            slot = self._take_slot(unit if first_write else None)
            self._writing.add(slot)
            batch.units.append(unit)
            batch.slots.append(slot)
            batch.seqs.append(self._seq)
            batch.nonces.append(nonces[at : at + pieces * NONCE_SIZE])
            at += pieces * NONCE_SIZE
        self._cover((max(batch.slots) + 1) * UNIT_SIZE, min(_SPILL_GROWTH, self._size))
        return batch

    def _end_batch(self, batch: _Batch, tags: Sequence[bytes] | None) -> None:
        """Under the lock: record the batch's rows as pending (tags from _seal_and_write), or give its slots back
        (None: it failed). Wakes close() when the last batch ends."""
        self._writing.difference_update(batch.slots)
        if not self._writing:
            self._drained.notify_all()
        if len(self._buffers) < _SPARE_BUFFERS:
            self._buffers.append(batch.buffer)
        if tags is None:  # it failed: its slots are recorded nowhere
            for slot in batch.slots:
                self._release(slot)
            return
        try:
            # Read now, not when the batch began: a flush in between may have committed a row it replaces.
            committed = self._committed_rows(min(batch.units), max(batch.units))
        except BaseException:
            for slot in batch.slots:  # map.db unreadable: the rows cannot be recorded either
                self._release(slot)
            raise
        for unit, slot, nonce, tag, seq in zip(batch.units, batch.slots, batch.nonces, tags, batch.seqs, strict=True):
            previous = self._pending.get(unit)
            if previous is not None:
                # Never committed, so no crash state references it: reusable at once.
                self._release(previous[0])
            elif unit in committed:
                # Rule A3: the committed map still references it until the next flush commits.
                self._limbo.append(committed[unit][0])
            self._pending[unit] = (slot, nonce, tag, seq)
        self._unstarted += len(batch.units) * UNIT_SIZE
        if self._unstarted >= _WRITEBACK_KICK:
            self._unstarted = 0
            _start_writeback(self._fd)

    def _cover(self, end: int, ahead: int) -> None:
        """Make the data file at least `end` bytes long, `ahead` more if it must grow: a sparse size change only
        (no blocks), so pwrites stay inside the file. Not made durable on its own: a flush's fdatasync carries the
        size that written slots need, and a crash that loses the rest loses only holes (the next open covers the
        home area again). Advisory: if the file cannot grow (EFBIG past ext4's 16 TiB), the pwrite reports it."""
        if end > self._file_size:
            size = end + ahead
            try:
                os.ftruncate(self._fd, size)
            except OSError:
                return
            self._file_size = size

    def _take_slot(self, home: int | None) -> int:
        """Allocate a free slot (rule A1): the unit's home slot on a first write if free, else the lowest free."""
        used = self._used
        if home is not None and not _bit(used, home):
            _set_bit(used, home)
            return home
        while self._free:
            slot = heapq.heappop(self._free)
            if not _bit(used, slot):
                _set_bit(used, slot)
                return slot
        while True:
            slot = self._next_spill
            self._next_spill += 1
            if not _bit(used, slot):
                _set_bit(used, slot)
                return slot

    def _release(self, slot: int) -> None:
        if _bit(self._pinned, slot):
            return
        _clear_bit(self._used, slot)
        heapq.heappush(self._free, slot)

    def _flush_locked(self) -> None:
        if not self._pending and self._seq == self._committed_seq:
            return
        # Rule W1: ciphertext durable before any map row that references it.
        os.fdatasync(self._fd)
        self._unstarted = 0
        rows = [(unit, slot, nonce, tag, seq) for unit, (slot, nonce, tag, seq) in self._pending.items()]
        with _db_errors(self._map_path), _transaction(self._conn):
            self._conn.executemany(
                "INSERT OR REPLACE INTO map(unit, slot, nonce, tag, seq) VALUES (?, ?, ?, ?, ?)", rows
            )
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (self._seq,))
        self._committed_seq = self._seq
        held = self._held
        for unit in self._pending:
            _set_bit(held, unit)
        self._cache_rows(self._pending)
        self._pending.clear()
        # Rule A3: only now that no committed row references them may the old slots be rewritten.
        for slot in self._limbo:
            self._release(slot)
        self._limbo.clear()

    def _rebuild_allocator(self) -> None:
        """Derive the slot bitmaps and free list from the committed map and snapshots (rule A4).

        Called on open and after a snapshot is deleted, when nothing is pending. O(rows) in Python: about a second
        per few million allocated units.
        """
        used = bytearray()
        pinned = bytearray()
        held = bytearray()
        top = -1
        with _db_errors(self._map_path), _read_transaction(self._conn):
            for unit, slot in self._conn.execute("SELECT unit, slot FROM map"):
                _set_bit(held, unit)
                _set_bit(used, slot)
                top = max(top, slot)
            for (slot,) in self._conn.execute("SELECT DISTINCT slot FROM snap_map"):
                _set_bit(used, slot)
                _set_bit(pinned, slot)
                top = max(top, slot)
            moved = [unit for (unit,) in self._conn.execute("SELECT unit FROM map WHERE slot != unit")]
            max_seq = self._conn.execute("SELECT max(seq) FROM map").fetchone()[0]
        for slot in self._writing:  # batches being written (delete_snapshot): their slots stay taken
            _set_bit(used, slot)
            top = max(top, slot)
        if max_seq is not None and max_seq > self._committed_seq:
            raise IntegrityError(what=f"volume map {self._map_path} (a row is newer than the write counter)")
        home_units = fmt.unit_count(self._size)
        # Free: unreferenced spill slots below the top, and home slots whose unit already lives elsewhere (a home
        # slot of a never-written unit stays reserved for that unit's first write: sequential layout).
        free = [slot for slot in range(home_units, top + 1) if not _bit(used, slot)]
        free.extend(unit for unit in moved if unit < home_units and not _bit(used, unit))
        heapq.heapify(free)
        self._used, self._pinned, self._free, self._held = used, pinned, free, held
        self._next_spill = max(home_units, top + 1)


def _check_snapshot_name(name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > _MAX_SNAPSHOT_NAME:
        raise InvalidArgument(field="snapshot name", reason=f"must be 1 to {_MAX_SNAPSHOT_NAME} characters")


# --------------------------------------------------------------------------------------------------------------------


class SnapshotReader:
    """Read-only view of one snapshot, with its own data fd and SQLite connection.

    Concurrency contract: thread-safe. Map lookups take a short internal lock; preadv and decryption run outside it,
    so reads from several threads proceed in parallel. close() waits for reads in flight. The reader works while the
    VolumeStore writes (the snapshot's slots are never rewritten while it exists) and after it is closed. If the
    snapshot is deleted, later reads raise NotFound, and reads racing the deletion may raise IntegrityError; a
    reader never returns another version's data.
    """

    volume_id: str
    name: str
    size: int
    seq: int

    def __init__(
        self,
        *,
        name: str,
        volume_id: str,
        snap_id: int,
        size: int,
        seq: int,
        aead: Aead,
        fd: int,
        conn: sqlite3.Connection,
        map_path: Path,
    ) -> None:
        self.name = name
        self.volume_id = volume_id
        self.size = size
        self.seq = seq
        self._snap_id = snap_id
        self._aead = aead
        self._fd = fd
        self._conn = conn
        self._map_path = map_path
        self._units = fmt.unit_count(size)
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._finalizer = weakref.finalize(self, _release_handles, fd, conn)

    @classmethod
    def open(cls, directory: Path, *, name: str, volume_id: str, dek: bytes) -> SnapshotReader:
        """Open snapshot `name` of the volume in `directory`. NotFound if the volume or the snapshot is absent."""
        aead = _check_identity(volume_id, dek)
        directory = Path(directory)
        map_path = directory / fmt.MAP_FILE
        if not map_path.is_file():
            raise NotFound(kind="volume", ident=volume_id)
        fd = _open_data(directory, os.O_RDONLY, volume_id)
        try:
            with _db_errors(map_path):
                conn = _connect(map_path)
                try:
                    conn.execute("PRAGMA query_only = 1")
                    _load_meta(conn, map_path, volume_id, aead)
                    row = conn.execute("SELECT id, seq, size FROM snapshots WHERE name = ?", (name,)).fetchone()
                    if row is None:
                        raise NotFound(kind="snapshot", ident=name)
                    snap_id, seq, size = row
                    return cls(
                        name=name,
                        volume_id=volume_id,
                        snap_id=snap_id,
                        size=size,
                        seq=seq,
                        aead=aead,
                        fd=fd,
                        conn=conn,
                        map_path=map_path,
                    )
                except BaseException:
                    conn.close()
                    raise
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        """Release the files once reads in flight finish. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.wait_for(lambda: self._in_flight == 0)
            self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def units(self) -> list[tuple[int, int]]:
        """(unit index, seq) of every unit the snapshot holds, sorted by index. Backups diff on seq."""
        with self._cond:
            self._check_open()
            with _db_errors(self._map_path), _read_transaction(self._conn):
                self._check_exists()
                return [
                    (unit, seq)
                    for unit, seq in self._conn.execute(
                        "SELECT unit, seq FROM snap_map WHERE snap_id = ? ORDER BY unit", (self._snap_id,)
                    )
                ]

    def read_unit(self, index: int) -> bytes:
        """Plaintext of one unit (UNIT_SIZE bytes; zeros if the snapshot does not hold it)."""
        if not 0 <= index < self._units:
            raise InvalidArgument(field="unit", reason=f"{index} is outside the snapshot")
        return self._plaintexts(index, index)[0]

    def read(self, offset: int, length: int) -> bytes:
        """Plaintext of [offset, offset + length) as of the snapshot. InvalidArgument past its end."""
        fmt.check_range(offset, length, self.size)
        if length == 0:
            return b""
        first, last = _unit_span(offset, length)
        plaintexts: list[bytes] = []
        for start in range(first, last + 1, _READ_BATCH_UNITS):
            plaintexts.extend(self._plaintexts(start, min(last, start + _READ_BATCH_UNITS - 1)))
        return _assemble(offset, length, first, plaintexts)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the snapshot reader is closed")

    def _check_exists(self) -> None:
        if self._conn.execute("SELECT 1 FROM snapshots WHERE id = ?", (self._snap_id,)).fetchone() is None:
            raise NotFound(kind="snapshot", ident=self.name)

    def _plaintexts(self, first: int, last: int) -> list[bytes]:
        with self._cond:
            self._check_open()
            with _db_errors(self._map_path), _read_transaction(self._conn):
                self._check_exists()
                own: list[tuple[int, Row]] = [
                    (unit, (slot, nonce, tag, seq))
                    for unit, slot, nonce, tag, seq in self._conn.execute(
                        "SELECT unit, slot, nonce, tag, seq FROM snap_map "
                        "WHERE snap_id = ? AND unit BETWEEN ? AND ? ORDER BY unit",
                        (self._snap_id, first, last),
                    )
                ]
            self._in_flight += 1
        try:
            plaintexts = _decrypt_rows(self._fd, self._aead, self.volume_id, own)
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()
        decrypted = {unit: plaintext for (unit, _), plaintext in zip(own, plaintexts, strict=True)}
        last_unit = self._units - 1
        if last in decrypted and last == last_unit:
            # I6 holds by construction in a volume; enforce it here too, because a clone larger than this snapshot
            # exposes these bytes.
            decrypted[last] = _zero_past(decrypted[last], last, self.size)
        return [decrypted.get(unit, _ZERO_UNIT) for unit in range(first, last + 1)]


# --------------------------------------------------------------------------------------------------------------------


def destroy(directory: Path) -> None:
    """Remove every file of the volume and its directory if that leaves it empty. Idempotent.

    Conflict if a VolumeStore has the volume open. Other files in the directory are left alone. The data is
    ciphertext; destroying the DEK (crypto-shredding) is what makes copies unreadable, not this.
    """
    directory = Path(directory)
    try:
        fd = os.open(directory / fmt.DATA_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until the files are gone
            except BlockingIOError as exc:
                raise Conflict(kind="volume", ident=str(directory), reason="it is open in a VolumeStore") from exc
        for name in fmt.VOLUME_FILES:
            (directory / name).unlink(missing_ok=True)
    finally:
        if fd is not None:
            os.close(fd)
    if directory.is_dir():
        with contextlib.suppress(OSError):
            _fsync_dir(directory)
        with contextlib.suppress(OSError):  # not empty: someone else's files stay
            directory.rmdir()
            _fsync_dir(directory.parent)
