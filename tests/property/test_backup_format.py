"""Backup codecs: round trips, and any single bit flip or truncation is rejected (STYLE §2.12)."""

from __future__ import annotations

import json
import random as stdlib_random
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockvault.backup import format as backup_format
from blockvault.backup.format import (
    CHUNK_MAGIC,
    CHUNK_SIZE,
    FLAG_ZSTD,
    HEADER_SIZE,
    MANIFEST_MAGIC,
    MAX_CHUNK_SIZE,
    UNIT_SIZE,
    BackupKind,
    Manifest,
    ManifestEntry,
    ObjectHeader,
    chunk_object_name,
    open_chunk,
    open_manifest,
    seal_chunk,
    seal_manifest,
)
from blockvault.crypto import NONCE_SIZE, Aead
from blockvault.crypto.envelope import encode_context
from blockvault.errors import DecryptionFailed, IntegrityError

AEAD = Aead(bytes(range(32)))
OTHER_AEAD = Aead(bytes(range(1, 33)))
VOLUME = "ocid1.volume.oc1.iad.aaaavolume"
BACKUP = "ocid1.volumebackup.oc1.iad.aaaab"
PARENT = "ocid1.volumebackup.oc1.iad.aaaap"
NONCE = bytes(range(100, 100 + NONCE_SIZE))
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fixed_random(n: int) -> bytes:
    assert n == NONCE_SIZE
    return NONCE


@st.composite
def plaintexts(draw: st.DrawFn) -> bytes:
    """Small arbitrary bytes, large repetitive (compressible) bytes, or large random bytes (raw)."""
    shape = draw(st.sampled_from(["small", "repetitive", "random"]))
    if shape == "small":
        return draw(st.binary(min_size=1, max_size=512))
    length = draw(st.integers(min_value=UNIT_SIZE + 1, max_value=CHUNK_SIZE))
    if shape == "repetitive":
        pattern = draw(st.binary(min_size=1, max_size=40))
        return (pattern * (length // len(pattern) + 1))[:length]
    return stdlib_random.Random(draw(st.integers())).randbytes(length)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    chunk_size = draw(st.sampled_from([UNIT_SIZE, CHUNK_SIZE]))
    size = draw(st.integers(min_value=0, max_value=64 * chunk_size))
    chunk_count = -(-size // chunk_size)
    kinds: list[BackupKind] = ["FULL", "INCREMENTAL"]
    kind = draw(st.sampled_from(kinds))
    writers = [BACKUP] if kind == "FULL" else [BACKUP, PARENT, "ocid1.volumebackup.oc1.iad.aaaag"]
    indexes = sorted(draw(st.sets(st.integers(min_value=0, max_value=max(chunk_count - 1, 0)), max_size=20)))
    entries = []
    for index in indexes if chunk_count else []:
        length = min(chunk_size, size - index * chunk_size)
        writer = draw(st.sampled_from(writers))
        entries.append(
            ManifestEntry(
                chunk_index=index,
                object_name=chunk_object_name(writer, index),
                dek_id=writer,
                stored_length=draw(st.integers(min_value=HEADER_SIZE + 17, max_value=HEADER_SIZE + length + 16)),
                unit_mask=draw(st.integers(min_value=1, max_value=(1 << -(-length // UNIT_SIZE)) - 1)),
                tag=draw(st.binary(min_size=16, max_size=16)),
            )
        )
    return Manifest(
        backup_id=BACKUP,
        volume_id=VOLUME,
        size_bytes=size,
        snapshot_seq=draw(st.integers(min_value=0, max_value=2**63)),
        chunk_size=chunk_size,
        kind=kind,
        parent_backup_id=PARENT if kind == "INCREMENTAL" else None,
        entries=tuple(entries),
    )


def _open(blob: bytes, index: int = 3) -> bytes:
    return open_chunk(AEAD, blob, backup_chain=VOLUME, chunk_index=index, object_name=chunk_object_name(BACKUP, index))


def _seal(plaintext: bytes, index: int = 3) -> bytes:
    name = chunk_object_name(BACKUP, index)
    return seal_chunk(AEAD, plaintext, backup_chain=VOLUME, chunk_index=index, object_name=name, random=fixed_random)


# --------------------------------------------------------------------------------------------------- chunks


@EXAMPLES
@given(plaintext=plaintexts())
def test_chunk_round_trip(plaintext: bytes) -> None:
    blob = _seal(plaintext)
    assert blob[:4] == CHUNK_MAGIC
    assert len(blob) <= HEADER_SIZE + len(plaintext) + 16
    assert _open(blob) == plaintext


@EXAMPLES
@given(plaintext=plaintexts(), flip=st.integers(min_value=0))
def test_chunk_any_bit_flip_is_rejected(plaintext: bytes, flip: int) -> None:
    blob = bytearray(_seal(plaintext))
    bit = flip % (8 * len(blob))
    blob[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityError):
        _open(bytes(blob))


@EXAMPLES
@given(plaintext=plaintexts(), cut=st.integers(min_value=0))
def test_chunk_any_truncation_is_rejected(plaintext: bytes, cut: int) -> None:
    blob = _seal(plaintext)
    with pytest.raises(IntegrityError):
        _open(blob[: cut % len(blob)])


@EXAMPLES
@given(plaintext=plaintexts(), extra=st.binary(min_size=1, max_size=8))
def test_chunk_appended_bytes_are_rejected(plaintext: bytes, extra: bytes) -> None:
    with pytest.raises(IntegrityError):
        _open(_seal(plaintext) + extra)


@EXAMPLES
@given(plaintext=plaintexts())
def test_chunk_is_bound_to_its_index_and_key(plaintext: bytes) -> None:
    blob = _seal(plaintext, index=3)
    with pytest.raises(DecryptionFailed):
        _open(blob, index=4)
    with pytest.raises(DecryptionFailed):
        open_chunk(OTHER_AEAD, blob, backup_chain=VOLUME, chunk_index=3, object_name=chunk_object_name(BACKUP, 3))


def test_chunk_compression_flag_follows_the_data() -> None:
    text = (b"all work and no play makes jack a dull boy\n" * 30000)[:CHUNK_SIZE]
    noise = stdlib_random.Random(7).randbytes(CHUNK_SIZE)
    assert ObjectHeader.unpack(_seal(text), magic=CHUNK_MAGIC, what="t").flags == FLAG_ZSTD
    assert ObjectHeader.unpack(_seal(noise), magic=CHUNK_MAGIC, what="t").flags == 0
    assert len(_seal(noise)) == HEADER_SIZE + CHUNK_SIZE + 16


@pytest.mark.parametrize("bad", [b"", bytes(MAX_CHUNK_SIZE + 1)])
def test_chunk_size_limits(bad: bytes) -> None:
    with pytest.raises(ValueError):
        _seal(bad)


def test_chunk_unknown_flag_is_rejected_before_decryption() -> None:
    blob = bytearray(_seal(b"x" * 100))
    blob[4] |= 0x80
    with pytest.raises(IntegrityError) as info:
        _open(bytes(blob))
    assert not isinstance(info.value, DecryptionFailed)


# --------------------------------------------------------------------------------------------------- manifests


@EXAMPLES
@given(manifest=manifests())
def test_manifest_round_trip(manifest: Manifest) -> None:
    blob = seal_manifest(AEAD, manifest, fixed_random)
    assert blob[:4] == MANIFEST_MAGIC
    assert open_manifest(AEAD, blob, BACKUP) == manifest
    assert Manifest.from_json(manifest.to_json()) == manifest


@EXAMPLES
@given(manifest=manifests(), flip=st.integers(min_value=0))
def test_manifest_any_bit_flip_is_rejected(manifest: Manifest, flip: int) -> None:
    blob = bytearray(seal_manifest(AEAD, manifest, fixed_random))
    bit = flip % (8 * len(blob))
    blob[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityError):
        open_manifest(AEAD, bytes(blob), BACKUP)


@EXAMPLES
@given(manifest=manifests(), cut=st.integers(min_value=0))
def test_manifest_any_truncation_is_rejected(manifest: Manifest, cut: int) -> None:
    blob = seal_manifest(AEAD, manifest, fixed_random)
    with pytest.raises(IntegrityError):
        open_manifest(AEAD, blob[: cut % len(blob)], BACKUP)


@EXAMPLES
@given(manifest=manifests())
def test_manifest_is_bound_to_its_backup_and_key(manifest: Manifest) -> None:
    blob = seal_manifest(AEAD, manifest, fixed_random)
    with pytest.raises(DecryptionFailed):
        open_manifest(AEAD, blob, PARENT)
    with pytest.raises(DecryptionFailed):
        open_manifest(OTHER_AEAD, blob, BACKUP)


# Bodies sealed by hand, following the layout in format.py's docstring: the spec check, and the path for bodies the
# codec would never write.


def _seal_body(body: bytes, backup_id: str = BACKUP) -> bytes:
    header = MANIFEST_MAGIC + b"\x00" + NONCE
    return header + AEAD.seal(NONCE, body, header + encode_context({"backup_id": backup_id}))


def _doc() -> dict[str, object]:
    return {
        "backup_id": BACKUP,
        "chunk_size": CHUNK_SIZE,
        "entries": [[0, chunk_object_name(BACKUP, 0), BACKUP, 100, 1, "ab" * 16]],
        "parent_backup_id": None,
        "size_bytes": CHUNK_SIZE,
        "snapshot_seq": 7,
        "type": "FULL",
        "version": 1,
        "volume_id": VOLUME,
    }


def _canonical(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def test_hand_sealed_canonical_manifest_opens() -> None:
    manifest = open_manifest(AEAD, _seal_body(_canonical(_doc())), BACKUP)
    assert manifest.entries[0].tag == bytes([0xAB]) * 16


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"version": True},
        {"version": None},
        {"backup_id": PARENT},  # sealed for BACKUP but claims to be another backup
        {"type": "DIFFERENTIAL"},
        {"type": "FULL", "parent_backup_id": PARENT},
        {"type": "INCREMENTAL"},
        {"chunk_size": 1000},
        {"size_bytes": -1},
        {"snapshot_seq": 1.5},
        {"entries": [[0, "chunks/elsewhere/0000000000", BACKUP, 100, 1, "ab" * 16]]},
        {"entries": [[1, chunk_object_name(BACKUP, 1), BACKUP, 100, 1, "ab" * 16]]},  # past the volume's end
        {"entries": [[0, chunk_object_name(PARENT, 0), PARENT, 100, 1, "ab" * 16]]},  # FULL with a foreign chunk
        {"entries": [[0, chunk_object_name(BACKUP, 0), BACKUP, 100, 1 << 16, "ab" * 16]]},  # unit outside chunk
        {"entries": [[0, chunk_object_name(BACKUP, 0), BACKUP, 100, 1, "AB" * 16]]},  # not canonical hex
        {"entries": [[0, chunk_object_name(BACKUP, 0), BACKUP, 100, 1, "zz" * 16]]},
        {"entries": [[0, chunk_object_name(BACKUP, 0), BACKUP, 100, 1]]},
        {"entries": {"0": 1}},
        {"extra": 1},
        {"backup_id": PARENT, "entries": []},  # valid on its own, but sealed for another backup
        {"size_bytes": 2**52},  # more chunks than a DEK may seal
        {"entries": [[0, chunk_object_name(BACKUP, 0), BACKUP, 10, 1, "ab" * 16]]},  # shorter than any object
        {"entries": [[0, chunk_object_name(BACKUP, 0), BACKUP, CHUNK_SIZE + 34, 1, "ab" * 16]]},  # longer than raw
        {"entries": [[0, chunk_object_name(BACKUP, 0), BACKUP, 100, 1, "ab" * 15]]},
        {"entries": [[0, 7, BACKUP, 100, 1, "ab" * 16]]},
    ],
)
def test_hand_sealed_invalid_manifests_are_integrity_errors(change: dict[str, object]) -> None:
    doc = _doc() | change
    with pytest.raises(IntegrityError):
        open_manifest(AEAD, _seal_body(_canonical(doc)), BACKUP)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b"\xff\xfe",
        b"[" * 100000,
        json.dumps(_doc(), sort_keys=True).encode(),  # whitespace: not canonical
        json.dumps(_doc(), separators=(",", ":")).encode().replace(b'"version":1', b'"version":1.0'),
    ],
)
def test_hand_sealed_malformed_bodies_are_integrity_errors(body: bytes) -> None:
    with pytest.raises(IntegrityError):
        open_manifest(AEAD, _seal_body(body), BACKUP)


def test_manifest_constructor_rejects_invalid_values() -> None:
    with pytest.raises(ValueError, match="parent"):
        Manifest(
            backup_id=BACKUP,
            volume_id=VOLUME,
            size_bytes=0,
            snapshot_seq=0,
            chunk_size=CHUNK_SIZE,
            kind="INCREMENTAL",
            parent_backup_id=BACKUP,
            entries=(),
        )


# --------------------------------------------------------------------------------------------------- hand-sealed chunks


def _seal_chunk_body(body: bytes, flags: int, index: int = 3) -> bytes:
    """A chunk object built from the layout in format.py's docstring, with any body (as only a key holder could)."""
    header = CHUNK_MAGIC + bytes([flags]) + NONCE
    context = {"backup_chain": VOLUME, "chunk_index": str(index), "object_name": chunk_object_name(BACKUP, index)}
    return header + AEAD.seal(NONCE, body, header + encode_context(context))


def test_hand_sealed_chunk_matches_the_codec() -> None:
    noise = stdlib_random.Random(3).randbytes(300)  # incompressible: stored raw
    assert _seal_chunk_body(noise, 0) == _seal(noise)


@pytest.mark.parametrize(
    "body",
    [
        b"not a zstd frame",
        zstandard.ZstdCompressor(write_content_size=False).compress(b"a" * 1000),  # size not recorded
        zstandard.ZstdCompressor().compress(b"a" * (MAX_CHUNK_SIZE + 1)),  # bomb: larger than any chunk
        zstandard.ZstdCompressor().compress(b""),  # empty chunk
        zstandard.ZstdCompressor().compress(b"a" * 1000) + b"trailing",
    ],
)
def test_hand_sealed_bad_compressed_bodies_are_integrity_errors(body: bytes) -> None:
    with pytest.raises(IntegrityError) as info:
        _open(_seal_chunk_body(body, FLAG_ZSTD))
    assert not isinstance(info.value, DecryptionFailed)  # authentic, but not a valid chunk


def test_seal_chunk_argument_checks() -> None:
    name = chunk_object_name(BACKUP, 0)
    with pytest.raises(ValueError, match="chunk_index"):
        seal_chunk(AEAD, b"x", backup_chain=VOLUME, chunk_index=-1, object_name=name, random=fixed_random)
    with pytest.raises(ValueError, match="random"):
        seal_chunk(AEAD, b"x", backup_chain=VOLUME, chunk_index=0, object_name=name, random=lambda n: b"short")


def test_seal_manifest_argument_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = Manifest.from_json(_canonical(_doc()))
    with pytest.raises(ValueError, match="random"):
        seal_manifest(AEAD, manifest, lambda n: b"short")
    monkeypatch.setattr(backup_format, "MAX_MANIFEST_BODY", 10)
    with pytest.raises(ValueError, match="too large"):
        seal_manifest(AEAD, manifest, fixed_random)


def _manifest(**changes: Any) -> Manifest:
    fields: dict[str, Any] = {
        "backup_id": BACKUP,
        "volume_id": VOLUME,
        "size_bytes": CHUNK_SIZE,
        "snapshot_seq": 0,
        "chunk_size": CHUNK_SIZE,
        "kind": "FULL",
        "parent_backup_id": None,
        "entries": (),
    }
    return Manifest(**(fields | changes))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"version": 2}, "version"),
        ({"entries": []}, "tuple"),
        ({"entries": ((0, "x", BACKUP, 100, 1, b"t" * 16),)}, "ManifestEntry"),
        ({"entries": (ManifestEntry(0, chunk_object_name(BACKUP, 0), BACKUP, 100, 1, b"short"),)}, "tag"),
        ({"size_bytes": (2**31 + 1) * CHUNK_SIZE}, "too large"),
        ({"backup_id": "a/b"}, "backup_id"),
    ],
)
def test_manifest_constructor_checks(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        _manifest(**changes)
