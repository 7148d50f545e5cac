"""Backup byte formats: chunk objects and manifests (docs/design/backup-format.md is normative). Pure codecs.

Chunk object, `chunks/<writer backup_id>/<chunk_index:010d>`:

    magic "BVC1":4 | flags:1 | nonce:12 | AES-256-GCM(DEK of the writing backup, body): len(body)+16
    ^------------- header: 17 bytes ------^
    flags   bit0 = body is one zstd frame (level 1, content size recorded) of the plaintext, else body = plaintext;
            bits 1-7 MUST be zero
    aad     = header | encode_context({"backup_chain": <volume OCID>, "chunk_index": <decimal>,
                                      "object_name": <the object's own name>})

Manifest object, `manifests/<backup_id>`:

    magic "BVM1":4 | flags:1 | nonce:12 | AES-256-GCM(DEK of this backup, body): len(body)+16
    flags   as for chunks (bit0 = zstd)
    aad     = header | encode_context({"backup_id": <backup OCID>})
    body    = canonical JSON (sorted keys, no whitespace, ASCII only) of
              {"backup_id", "chunk_size", "entries", "parent_backup_id", "size_bytes", "snapshot_seq", "type",
               "version": 1, "volume_id"}
              entries = [[chunk_index, object_name, dek_id, stored_length, unit_mask, tag_hex], ...] by chunk_index

The header is inside the AAD, so flipping the compression flag or splicing a nonce fails authentication; the
context binds each blob to its place, so chunk objects cannot be swapped between indexes, backups or volumes, and a
manifest cannot be presented under another backup's name (STYLE §2.6, borg's AAD = header + id).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import zstandard

from blockvault.backup.objectstore.base import validate_name
from blockvault.crypto import NONCE_SIZE, TAG_SIZE, Aead
from blockvault.crypto.envelope import encode_context
from blockvault.errors import IntegrityError

__all__ = [
    "CHUNK_MAGIC",
    "CHUNK_SIZE",
    "FLAG_ZSTD",
    "HEADER_SIZE",
    "MANIFEST_MAGIC",
    "MANIFEST_VERSION",
    "UNIT_SIZE",
    "BackupKind",
    "Manifest",
    "ManifestEntry",
    "ObjectHeader",
    "check_id",
    "chunk_object_name",
    "chunk_prefix",
    "chunk_span",
    "dek_ids",
    "manifest_object_name",
    "objects_referenced",
    "objects_written_by",
    "open_chunk",
    "open_manifest",
    "seal_chunk",
    "seal_manifest",
]

BackupKind = Literal["FULL", "INCREMENTAL"]

# The volume store encrypts per 64 KiB unit (docs/design/volume-format.md); backups track changes per unit, so this
# MUST equal the store's unit size. Repeated here because backup/ does not import the store.
UNIT_SIZE: Final = 65536
# 1 MiB chunks: 16 units. Large enough that per-object overhead (33 bytes, one PUT, one manifest entry) is noise, small
# enough that a scattered 64 KiB write re-uploads at most 1 MiB.
CHUNK_SIZE: Final = 4 * UNIT_SIZE
# Upper bound on a manifest's chunk_size: bounds the decompressed size of a chunk (no zstd bomb can exceed it) and keeps
# unit_mask within 64 bits.
MAX_CHUNK_SIZE: Final = 64 * UNIT_SIZE
# NIST SP 800-38D §8.3: with random 96-bit IVs a key MUST NOT be used for more than 2^32 invocations. A backup's DEK
# seals its chunks plus one manifest, so at most 2^31 chunks keeps us a factor of two inside the bound (2^31 MiB =
# 2 PiB, far beyond OCI's 32 TiB volume limit, which is 2^25 chunks).
MAX_CHUNKS: Final = 2**31
# A manifest entry's JSON is at most ~2 x 255-byte ids + 60 bytes; 600 bytes each bounds the body (and therefore any
# decompression) for the largest legal manifest.
_MAX_ENTRY_JSON: Final = 600
MAX_MANIFEST_BODY: Final = 4096 + 2**25 * _MAX_ENTRY_JSON  # sized for OCI's 32 TiB maximum volume at 1 MiB chunks

CHUNK_MAGIC: Final = b"BVC1"
MANIFEST_MAGIC: Final = b"BVM1"
MANIFEST_VERSION: Final = 1
FLAG_ZSTD: Final = 0x01
_KNOWN_FLAGS: Final = FLAG_ZSTD
HEADER_SIZE: Final = len(CHUNK_MAGIC) + 1 + NONCE_SIZE  # 17

COMPRESSION_LEVEL: Final = 1  # zstd level 1: the slowest stage even so (~0.2-0.3 GB/s/core on text), see benchmarks/
# Store compressed only if that saves at least 10% (backup-format.md, Layout): a smaller saving does not pay for the
# decompression every restore would then do (~0.8-1 GB/s/core here). The first unit is tried first: incompressible
# data (already-compressed or encrypted guest data) is rejected at the cost of one 64 KiB attempt, which zstd finishes
# at several GB/s on random input; compressible data pays ~5% for the sample.
_MIN_SAVING_NUM, _MIN_SAVING_DEN = 9, 10
SAMPLE_SIZE: Final = UNIT_SIZE

_MAX_ID_LEN: Final = 255
_TAG_HEX_LEN: Final = 2 * TAG_SIZE
_KINDS: Final = ("FULL", "INCREMENTAL")
_MANIFEST_KEYS: Final = frozenset(
    {
        "backup_id",
        "chunk_size",
        "entries",
        "parent_backup_id",
        "size_bytes",
        "snapshot_seq",
        "type",
        "version",
        "volume_id",
    }
)

# zstd contexts are not safe for concurrent use, and building one per call costs ~10% at 1 MiB; one per thread.
_contexts = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    cctx: zstandard.ZstdCompressor | None = getattr(_contexts, "cctx", None)
    if cctx is None:
        cctx = _contexts.cctx = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL, write_content_size=True)
    return cctx


def _decompressor() -> zstandard.ZstdDecompressor:
    dctx: zstandard.ZstdDecompressor | None = getattr(_contexts, "dctx", None)
    if dctx is None:
        dctx = _contexts.dctx = zstandard.ZstdDecompressor()
    return dctx


def _worth_it(packed: int, raw: int) -> bool:
    return packed * _MIN_SAVING_DEN <= raw * _MIN_SAVING_NUM


def _maybe_compress(data: bytes | bytearray | memoryview) -> tuple[int, bytes | bytearray | memoryview]:
    """(flags, body): zstd only when the sample and then the whole shrink by >= 10%."""
    cctx = _compressor()
    if len(data) > SAMPLE_SIZE and not _worth_it(len(cctx.compress(memoryview(data)[:SAMPLE_SIZE])), SAMPLE_SIZE):
        return 0, data
    packed = cctx.compress(data)
    if _worth_it(len(packed), len(data)):
        return FLAG_ZSTD, packed
    return 0, data


def _decompress(body: bytes, limit: int, what: str) -> bytes:
    try:
        size = zstandard.frame_content_size(body)
        if size < 0 or size > limit:  # -1: size not recorded; we always record it
            raise IntegrityError(what=what)
        # Decodes exactly one frame of exactly the recorded content size (zstd checks it), nothing after it.
        return _decompressor().decompress(body, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise IntegrityError(what=what) from exc


# ---------------------------------------------------------------------------------------------------------- names


def check_id(value: object, field: str) -> str:
    """Return `value` if it can be a backup or DEK id (one object-name segment, <= 255 chars), else ValueError."""
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID_LEN or "/" in value:
        raise ValueError(f"{field} must be a non-empty str of at most {_MAX_ID_LEN} characters without '/'")
    validate_name(value)
    return value


def chunk_prefix(backup_id: str) -> str:
    """Prefix under which backup `backup_id` writes its chunk objects."""
    return f"chunks/{backup_id}/"


def chunk_object_name(backup_id: str, chunk_index: int) -> str:
    """`chunks/<backup_id>/<chunk_index:010d>`: zero-padded so listings sort by index."""
    return f"chunks/{backup_id}/{chunk_index:010d}"


def manifest_object_name(backup_id: str) -> str:
    return f"manifests/{backup_id}"


def chunk_span(size_bytes: int, chunk_size: int, chunk_index: int) -> tuple[int, int]:
    """(byte offset, plaintext length) of a chunk; the last chunk of a volume may be short."""
    offset = chunk_index * chunk_size
    return offset, min(chunk_size, size_bytes - offset)


# ---------------------------------------------------------------------------------------------------------- chunks


@dataclass(frozen=True, slots=True)
class ObjectHeader:
    """The 17-byte clear header of a chunk or manifest object (magic | flags | nonce)."""

    magic: bytes
    flags: int
    nonce: bytes

    @property
    def compressed(self) -> bool:
        return bool(self.flags & FLAG_ZSTD)

    def pack(self) -> bytes:
        return self.magic + bytes([self.flags]) + self.nonce

    @classmethod
    def unpack(cls, blob: bytes, *, magic: bytes, what: str) -> ObjectHeader:
        """Parse and check magic and flags; IntegrityError for short, foreign or future input."""
        # shortest legal object: header + 1 body byte + tag
        if len(blob) < HEADER_SIZE + 1 + TAG_SIZE or blob[: len(magic)] != magic:
            raise IntegrityError(what=what)
        flags = blob[len(magic)]
        if flags & ~_KNOWN_FLAGS:
            raise IntegrityError(what=what)
        return cls(magic=magic, flags=flags, nonce=bytes(blob[len(magic) + 1 : HEADER_SIZE]))


def _chunk_aad(header: bytes, backup_chain: str, chunk_index: int, object_name: str) -> bytes:
    context = {"backup_chain": backup_chain, "chunk_index": str(chunk_index), "object_name": object_name}
    return header + encode_context(context)


def seal_chunk(
    aead: Aead,
    plaintext: bytes | bytearray | memoryview,
    *,
    backup_chain: str,
    chunk_index: int,
    object_name: str,
    random: Callable[[int], bytes],
) -> bytes:
    """Encrypt one chunk (compressing it first if that saves >= 10%) into a chunk object.

    `backup_chain` is the source volume's OCID, shared by every backup of that volume so children can open their
    parents' chunks; `object_name` is where the blob will be stored. `plaintext` MUST NOT be all zeros: holes are
    never stored (the engine skips them), but this codec does not check, to spare a 1 MiB scan.
    """
    if not 0 < len(plaintext) <= MAX_CHUNK_SIZE:
        raise ValueError(f"a chunk holds 1..{MAX_CHUNK_SIZE} bytes, got {len(plaintext)}")
    if not 0 <= chunk_index < MAX_CHUNKS:
        raise ValueError(f"chunk_index {chunk_index} out of range")
    flags, body = _maybe_compress(plaintext)
    nonce = random(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise ValueError("random(n) must return n bytes")
    header = ObjectHeader(magic=CHUNK_MAGIC, flags=flags, nonce=nonce).pack()
    return header + aead.seal(nonce, body, _chunk_aad(header, backup_chain, chunk_index, object_name))


def open_chunk(aead: Aead, blob: bytes, *, backup_chain: str, chunk_index: int, object_name: str) -> bytes:
    """Authenticate, decrypt and decompress a chunk object; the inverse of `seal_chunk`.

    Raises IntegrityError for malformed or foreign input and DecryptionFailed (a subclass) if authentication fails:
    wrong DEK, wrong place (index, object name, volume) or any modified byte.
    """
    what = f"backup chunk {object_name}"
    header = ObjectHeader.unpack(blob, magic=CHUNK_MAGIC, what=what)
    aad = _chunk_aad(blob[:HEADER_SIZE], backup_chain, chunk_index, object_name)
    body = aead.open(header.nonce, memoryview(blob)[HEADER_SIZE:], aad)
    plaintext = _decompress(body, MAX_CHUNK_SIZE, what) if header.compressed else body
    if not 0 < len(plaintext) <= MAX_CHUNK_SIZE:
        raise IntegrityError(what=what)
    return plaintext


# ---------------------------------------------------------------------------------------------------------- manifest


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One stored chunk of a backup.

    `dek_id` is the OCID of the backup that wrote the object (its DEK encrypts it); `unit_mask` has bit i set if unit
    i of the chunk was allocated at the writer's snapshot (the planner compares it to detect trims); `tag` is the
    object's GCM tag (its last 16 bytes), which pins the exact object so a chunk left by an aborted attempt of the same
    backup cannot be substituted.
    """

    chunk_index: int
    object_name: str
    dek_id: str
    stored_length: int
    unit_mask: int
    tag: bytes


def _is_int(value: object) -> bool:
    return type(value) is int  # JSON true/false parse to bool, a subclass of int


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """What one backup holds: the volume's geometry at its snapshot and where every non-zero chunk lives.

    Always valid: construction checks every invariant of backup-format.md "Invariants" and raises ValueError.
    `kind` is serialized as "type" (OCI's name for FULL/INCREMENTAL).
    """

    backup_id: str
    volume_id: str
    size_bytes: int
    snapshot_seq: int
    chunk_size: int
    kind: BackupKind
    parent_backup_id: str | None
    entries: tuple[ManifestEntry, ...]
    version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        if not _is_int(self.version) or self.version != MANIFEST_VERSION:
            raise ValueError(f"unsupported manifest version {self.version!r}")
        check_id(self.backup_id, "backup_id")
        check_id(self.volume_id, "volume_id")
        for field in ("size_bytes", "snapshot_seq", "chunk_size"):
            value = getattr(self, field)
            if not _is_int(value) or value < 0:
                raise ValueError(f"{field} must be a non-negative int")
        if not 0 < self.chunk_size <= MAX_CHUNK_SIZE or self.chunk_size % UNIT_SIZE:
            raise ValueError(f"chunk_size must be a multiple of {UNIT_SIZE} up to {MAX_CHUNK_SIZE}")
        if self.chunk_count > MAX_CHUNKS:
            raise ValueError("volume too large for this chunk size")
        if self.kind not in _KINDS:
            raise ValueError(f"type must be one of {_KINDS}")
        if self.kind == "FULL":
            if self.parent_backup_id is not None:
                raise ValueError("a FULL backup has no parent")
        elif check_id(self.parent_backup_id, "parent_backup_id") == self.backup_id:
            raise ValueError("a backup cannot be its own parent")
        if not isinstance(self.entries, tuple):
            raise ValueError("entries must be a tuple")
        self._check_entries()

    def _check_entries(self) -> None:
        last_index = -1
        chunk_count = self.chunk_count
        checked: set[str] = set()  # DEK ids repeat across entries; validate each once
        for entry in self.entries:
            if not isinstance(entry, ManifestEntry):
                raise ValueError("entries must be ManifestEntry values")
            index = entry.chunk_index
            if not _is_int(index) or not last_index < index < chunk_count:
                raise ValueError(f"chunk indexes must be strictly increasing and below {chunk_count}")
            last_index = index
            if entry.dek_id not in checked:
                check_id(entry.dek_id, "dek_id")
                checked.add(entry.dek_id)
            if self.kind == "FULL" and entry.dek_id != self.backup_id:
                raise ValueError("a FULL backup references only chunks it wrote")
            # v1 names are derived, not chosen: this makes a forged entry pointing elsewhere invalid even before
            # the chunk's AAD (which binds the object name) would reject it.
            if entry.object_name != chunk_object_name(entry.dek_id, index):
                raise ValueError(f"entry {index}: object name does not match its writer and index")
            length = min(self.chunk_size, self.size_bytes - index * self.chunk_size)
            if not _is_int(entry.stored_length) or entry.stored_length < HEADER_SIZE + 1 + TAG_SIZE:
                raise ValueError(f"entry {index}: stored_length too small")
            # a stored chunk is at most raw plaintext + header + tag (compression is used only when it shrinks)
            if entry.stored_length > HEADER_SIZE + length + TAG_SIZE:
                raise ValueError(f"entry {index}: stored_length larger than any encoding of {length} bytes")
            units_here = -(-length // UNIT_SIZE)
            if not _is_int(entry.unit_mask) or not 0 < entry.unit_mask < (1 << units_here):
                raise ValueError(f"entry {index}: unit_mask outside the chunk")
            if not isinstance(entry.tag, bytes) or len(entry.tag) != TAG_SIZE:
                raise ValueError(f"entry {index}: tag must be {TAG_SIZE} bytes")

    @property
    def chunk_count(self) -> int:
        """Number of chunk slots covering the volume (stored or holes)."""
        return -(-self.size_bytes // self.chunk_size)

    def to_json(self) -> bytes:
        """The canonical body: the only encoding `from_json` accepts."""
        doc: dict[str, Any] = {
            "backup_id": self.backup_id,
            "chunk_size": self.chunk_size,
            "entries": [
                [e.chunk_index, e.object_name, e.dek_id, e.stored_length, e.unit_mask, e.tag.hex()]
                for e in self.entries
            ],
            "parent_backup_id": self.parent_backup_id,
            "size_bytes": self.size_bytes,
            "snapshot_seq": self.snapshot_seq,
            "type": self.kind,
            "version": self.version,
            "volume_id": self.volume_id,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()

    @classmethod
    def from_json(cls, body: bytes) -> Manifest:
        """Parse a canonical body; ValueError (never KeyError/TypeError/JSONDecodeError) on anything else."""
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError("manifest body is not JSON") from exc
        if not isinstance(doc, dict):
            raise ValueError("manifest body is not an object")
        version = doc.get("version")
        if not _is_int(version) or version != MANIFEST_VERSION:
            raise ValueError(f"unsupported manifest version {version!r}")
        if set(doc) != _MANIFEST_KEYS:
            raise ValueError("manifest has missing or unknown fields")
        raw_entries = doc["entries"]
        if not isinstance(raw_entries, list):
            raise ValueError("entries must be a list")
        entries = []
        for raw in raw_entries:
            if not isinstance(raw, list) or len(raw) != 6:
                raise ValueError("an entry is a 6-element list")
            index, name, dek_id, stored, mask, tag_hex = raw
            if not isinstance(name, str) or not isinstance(tag_hex, str) or len(tag_hex) != _TAG_HEX_LEN:
                raise ValueError("entry object name or tag malformed")
            entries.append(ManifestEntry(index, name, dek_id, stored, mask, bytes.fromhex(tag_hex)))
        manifest = cls(
            version=version,
            backup_id=doc["backup_id"],
            volume_id=doc["volume_id"],
            size_bytes=doc["size_bytes"],
            snapshot_seq=doc["snapshot_seq"],
            chunk_size=doc["chunk_size"],
            kind=doc["type"],
            parent_backup_id=doc["parent_backup_id"],
            entries=tuple(entries),
        )
        # One encoding per manifest: rejects reordered keys, whitespace, uppercase hex, "1.0" for 1, etc.
        if manifest.to_json() != body:
            raise ValueError("manifest body is not canonical")
        return manifest


def _manifest_aad(header: bytes, backup_id: str) -> bytes:
    return header + encode_context({"backup_id": backup_id})


def seal_manifest(aead: Aead, manifest: Manifest, random: Callable[[int], bytes]) -> bytes:
    """Serialize canonically, compress, and seal under the backup's own DEK, bound to its backup id."""
    body = manifest.to_json()
    if len(body) > MAX_MANIFEST_BODY:
        raise ValueError("manifest too large")
    flags, packed = _maybe_compress(body)
    nonce = random(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise ValueError("random(n) must return n bytes")
    header = ObjectHeader(magic=MANIFEST_MAGIC, flags=flags, nonce=nonce).pack()
    return header + aead.seal(nonce, packed, _manifest_aad(header, manifest.backup_id))


def open_manifest(aead: Aead, blob: bytes, backup_id: str) -> Manifest:
    """Authenticate and parse the manifest of `backup_id`.

    IntegrityError (DecryptionFailed when authentication fails) for any modified byte, a manifest of another backup,
    the wrong DEK, an unknown version or a body that breaks an invariant.
    """
    what = f"backup manifest {backup_id}"
    header = ObjectHeader.unpack(blob, magic=MANIFEST_MAGIC, what=what)
    body = aead.open(header.nonce, memoryview(blob)[HEADER_SIZE:], _manifest_aad(blob[:HEADER_SIZE], backup_id))
    if header.compressed:
        body = _decompress(body, MAX_MANIFEST_BODY, what)
    try:
        manifest = Manifest.from_json(body)
    except ValueError as exc:
        raise IntegrityError(f"integrity check failed for {what}: {exc}", what=what) from exc
    if manifest.backup_id != backup_id:  # unreachable without the key (the AAD binds it); kept as a cheap second lock
        raise IntegrityError(what=what)
    return manifest


# ---------------------------------------------------------------------------------------------------------- queries


def dek_ids(manifest: Manifest) -> set[str]:
    """Every DEK needed to restore `manifest`: its own (the manifest is sealed with it) and its chunks' writers'."""
    return {manifest.backup_id, *(e.dek_id for e in manifest.entries)}


def objects_written_by(manifest: Manifest) -> set[str]:
    """Chunk objects this backup wrote itself (entries whose DEK is its own), not the ones it inherited."""
    return {e.object_name for e in manifest.entries if e.dek_id == manifest.backup_id}


def objects_referenced(manifest: Manifest) -> set[str]:
    """Every chunk object a restore of this backup reads, its own and inherited ones (the manifest not included)."""
    return {e.object_name for e in manifest.entries}
