"""Pure codec pieces of the volume format (docs/design/volume-format.md): constants, bounds, AAD, schema.

No I/O here (house style §2.5): volume.py owns the files, this module owns what the bytes mean.

A unit on disk is split in two places:

    data file, slot s:  [ s * UNIT_SIZE , (s + 1) * UNIT_SIZE )  AES-GCM ciphertext only (same length as plaintext)
    map.db, map row:    unit | slot | nonce:12*k | tag:16*k | seq

A row seals its unit in k pieces of UNIT_SIZE / k bytes, each its own AES-GCM invocation with its own nonce and tag
(k = 1 or PIECES since format v2, see below; v1 wrote only k = 1, so its rows read the same):

    k = 1:       aad = encode_context({"volume": volume_id, "unit": str(unit), "seq": str(seq)})
    k = PIECES:  aad = encode_context({"volume": volume_id, "unit": str(unit), "seq": str(seq), "piece": str(i)})

The AAD binds a ciphertext to its volume, its logical position (unit and piece) and its write generation, so a block
that was flipped, moved to another unit or piece, replayed from an older write or copied from another volume fails
authentication (IntegrityError) instead of reading as wrong data. Pieces exist for reads: a 4 KiB read authenticates
one 16 KiB piece instead of the whole 64 KiB unit. The store seals a unit written whole in one piece (sequential I/O
pays one AES-GCM call per unit) and a unit written in part in PIECES pieces (docs/design/volume-format.md, v2).
"""

from __future__ import annotations

import functools
import struct
from typing import Final

from blockvault.crypto import NONCE_SIZE, TAG_SIZE
from blockvault.crypto.envelope import encode_context
from blockvault.errors import InvalidArgument

__all__ = [
    "DATA_FILE",
    "FORMAT_VERSION",
    "KEY_CHECK_AAD_DOMAIN",
    "MAGIC",
    "MAP_FILE",
    "MAX_SEALS_PER_DEK",
    "MAX_VOLUME_SIZE",
    "NONCE_SIZE",
    "PIECES",
    "PIECE_SIZE",
    "READABLE_VERSIONS",
    "SCHEMA",
    "TAG_SIZE",
    "UNIT_SIZE",
    "VOLUME_FILES",
    "check_range",
    "check_size",
    "key_check_aad",
    "piece_aad",
    "piece_aad_reference",
    "piece_aads",
    "row_pieces",
    "unit_aad",
    "unit_aad_reference",
    "unit_count",
]

# The unit of encryption and of copy-on-write. 64 KiB keeps the per-unit metadata (a ~40-byte map row) under 0.1%
# of the data and the per-call AES-GCM overhead negligible, while a 4 KiB guest write costs at most one 64 KiB
# read-modify-write.
UNIT_SIZE: Final = 65536

# The unit of authentication inside a unit written in part (format v2, R3): a read inside one piece preads and
# decrypts 16 KiB, not 64 KiB (a 4 KiB random read cost ~28 us of its ~45 us in the server doing the whole unit),
# while sealing or opening a unit in 4 invocations instead of 1 costs ~5 us more per 64 KiB (volume-format.md, v2).
PIECE_SIZE: Final = 16384
PIECES: Final = UNIT_SIZE // PIECE_SIZE

# NIST SP 800-38D §8.3: with random 96-bit IVs (§8.2.2) the total number of invocations of the authenticated
# encryption function with one key shall not exceed 2^32. One invocation seals a whole unit or one piece, so one DEK
# may seal 64 TiB (2^32 * 16 KiB, every write partial) to 256 TiB (2^32 * 64 KiB, every write whole) over the life of
# the volume (overwrites count again). The volume-wide seq counter advances by one per invocation, so it doubles as
# the usage meter.
MAX_SEALS_PER_DEK: Final = 2**32

# OCI's largest block volume is 32 TB; 2^45 bytes (32 TiB) = 2^29 units keeps every slot offset far inside a signed
# 64-bit file offset. NB: ext4 with 4 KiB blocks caps one file at 16 TiB, and the data file needs room for
# overwrite slots beyond the volume size; volumes above ~15 TiB need XFS or btrfs underneath.
MAX_VOLUME_SIZE: Final = 2**45

MAGIC: Final = "blockvault.volume"
FORMAT_VERSION: Final = 2  # what this build writes (v2: pieced rows); a v1 map is upgraded when opened for writing
READABLE_VERSIONS: Final = (1, 2)

DATA_FILE: Final = "data"
MAP_FILE: Final = "map.db"
# Everything that belongs to a volume directory; destroy() removes exactly these, in this order: the map first, so
# that a crash half-way leaves no volume rather than a map whose slots are gone (docs: Read/Write ordering).
VOLUME_FILES: Final = (
    MAP_FILE,
    MAP_FILE + "-wal",
    MAP_FILE + "-shm",
    MAP_FILE + "-journal",
    MAP_FILE + ".creating",
    MAP_FILE + ".creating-journal",
    DATA_FILE,
)

# Domain for the key-check value stored in meta: AES-GCM over the empty plaintext, so opening a volume with the wrong
# DEK fails at open() with DecryptionFailed instead of at the first read. It reveals nothing about the DEK beyond
# what any sealed unit already does.
KEY_CHECK_AAD_DOMAIN: Final = b"blockvault.volume.keycheck.v1"

SCHEMA: Final = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value NOT NULL
) WITHOUT ROWID;
CREATE TABLE map (
    unit  INTEGER PRIMARY KEY,
    slot  INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    tag   BLOB NOT NULL,
    seq   INTEGER NOT NULL
);
CREATE TABLE snapshots (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE,
    seq   INTEGER NOT NULL,
    size  INTEGER NOT NULL
);
CREATE TABLE snap_map (
    snap_id INTEGER NOT NULL REFERENCES snapshots(id),
    unit    INTEGER NOT NULL,
    slot    INTEGER NOT NULL,
    nonce   BLOB NOT NULL,
    tag     BLOB NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (snap_id, unit)
) WITHOUT ROWID;
"""

_U32 = struct.Struct(">I")


def _part(value: str) -> bytes:
    raw = value.encode()
    return _U32.pack(len(raw)) + raw


# encode_context sorts keys, so the AAD is: count=3 | "seq" | seq | "unit" | unit | "volume" | volume_id, every part
# u32-length-prefixed. Precomputing the constant pieces saves a dict build and a sort per unit on the hot path;
# tests/unit/test_store_volume.py checks byte equality with encode_context.
_AAD_HEAD: Final = _U32.pack(3) + _part("seq")
_AAD_UNIT: Final = _part("unit")
_AAD_VOLUME: Final = _part("volume")
# A piece's AAD has a fourth key, "piece", which sorts first: count=4 | "piece" | i | "seq" | seq | "unit" | ...
_PIECE_HEADS: Final = tuple(_U32.pack(4) + _part("piece") + _part(str(i)) + _part("seq") for i in range(PIECES))


# u32 length prefixes of decimal numbers (a seq or a unit index has at most 20 digits): a table lookup per part
# instead of a struct call, and b"%d" instead of str().encode(); the AAD is built once per READ.
_LENGTHS: Final = tuple(_U32.pack(n) for n in range(64))


def unit_aad(volume_id: str, index: int, seq: int) -> bytes:
    """The AAD of one unit: encode_context({"volume": volume_id, "unit": str(index), "seq": str(seq)})."""
    return _AAD_HEAD + _tail(volume_id, index, seq)


@functools.lru_cache(maxsize=1024)
def _volume_part(volume_id: str) -> bytes:
    """The AAD's constant tail for one volume (built once: a store computes an AAD per unit it reads or writes)."""
    return _AAD_VOLUME + _part(volume_id)


def unit_aad_reference(volume_id: str, index: int, seq: int) -> bytes:
    """The normative definition of unit_aad, kept for tests and for readers of the spec."""
    return encode_context({"volume": volume_id, "unit": str(index), "seq": str(seq)})


def piece_aad(volume_id: str, index: int, seq: int, piece: int) -> bytes:
    """The AAD of piece `piece` of a unit sealed in PIECES pieces (format v2)."""
    return _PIECE_HEADS[piece] + _tail(volume_id, index, seq)


def piece_aads(volume_id: str, index: int, seq: int) -> list[bytes]:
    """piece_aad for every piece of the unit (the common tail built once)."""
    tail = _tail(volume_id, index, seq)
    return [head + tail for head in _PIECE_HEADS]


def _tail(volume_id: str, index: int, seq: int) -> bytes:
    """What follows the "seq" key in a unit's or a piece's AAD: seq | "unit" | index | "volume" | volume_id."""
    s, u = b"%d" % seq, b"%d" % index
    return b"".join((_LENGTHS[len(s)], s, _AAD_UNIT, _LENGTHS[len(u)], u, _volume_part(volume_id)))


def piece_aad_reference(volume_id: str, index: int, seq: int, piece: int) -> bytes:
    """The normative definition of piece_aad."""
    return encode_context({"volume": volume_id, "unit": str(index), "seq": str(seq), "piece": str(piece)})


def row_pieces(nonce: bytes, tag: bytes) -> int:
    """How many pieces a map row seals its unit in (1: whole, as every v1 row; PIECES: written in part, v2), from its
    nonce and tag lengths; 0 if the lengths describe neither (a damaged or forged row: an integrity error)."""
    return _LAYOUTS.get((len(nonce), len(tag)), 0)


# (nonce length, tag length) -> pieces, for the layouts a row may describe (row_pieces runs once per READ).
_LAYOUTS: Final = {(k * NONCE_SIZE, k * TAG_SIZE): k for k in (1, PIECES)}


def key_check_aad(volume_id: str) -> bytes:
    """AAD of the key-check value: binds it to this volume so it cannot be copied from another one."""
    return KEY_CHECK_AAD_DOMAIN + encode_context({"volume": volume_id})


def unit_count(size: int) -> int:
    """Number of units covering `size` bytes (the last one may be partly beyond the end and reads as zeros)."""
    return -(-size // UNIT_SIZE)


def check_size(size: int) -> None:
    """Reject sizes the format cannot hold; a caller-supplied size is an InvalidArgument, not a crash later."""
    if not 0 <= size <= MAX_VOLUME_SIZE:
        raise InvalidArgument(field="size", reason=f"must be between 0 and {MAX_VOLUME_SIZE} bytes, got {size}")


def check_range(offset: int, length: int, size: int) -> None:
    """Reject I/O outside [0, size): a range past the end is an error, never a short read or a silent grow."""
    if offset < 0 or length < 0 or offset + length > size:
        raise InvalidArgument(
            field="range", reason=f"offset {offset} + length {length} is outside the volume of {size} bytes"
        )
