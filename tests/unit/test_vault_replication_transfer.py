"""The replication material transfer format (vault/keystore/transfer.py): round trips, tamper and binding."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from blockvault.errors import DecryptionFailed, InvalidArgument
from blockvault.vault.keystore import transfer
from blockvault.vault.replication import material_context

PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC = PRIVATE.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
CTX = material_context("us-phoenix-1", "ocid1.key.oc1.iad.p.aaaak", "ocid1.keyversion.oc1.iad.p.aaaav", 32)

materials = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


def _fixed(n: int) -> bytes:
    return bytes(range(n))


@settings(max_examples=40, deadline=None)
@given(material=materials)
def test_wrap_then_unwrap_gives_the_material_back(material: bytes) -> None:
    blob = transfer.wrap(PUBLIC, material, CTX)
    assert material not in blob  # never in the clear
    assert transfer.unwrap(PRIVATE, blob, CTX) == material


@settings(max_examples=60, deadline=None)
@given(material=materials, flip=st.integers(min_value=0))
def test_any_bit_flip_is_rejected(material: bytes, flip: int) -> None:
    blob = bytearray(transfer.wrap(PUBLIC, material, CTX))
    bit = flip % (len(blob) * 8)
    blob[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecryptionFailed):
        transfer.unwrap(PRIVATE, bytes(blob), CTX)


@settings(max_examples=20, deadline=None)
@given(cut=st.integers(min_value=0))
def test_truncation_is_rejected(cut: int) -> None:
    blob = transfer.wrap(PUBLIC, _fixed(32), CTX)
    with pytest.raises(DecryptionFailed):
        transfer.unwrap(PRIVATE, blob[: cut % len(blob)], CTX)


@pytest.mark.parametrize(
    "other",
    [
        {**CTX, "sourceKeyVersionId": "ocid1.keyversion.oc1.iad.p.aaaaother"},
        {**CTX, "destinationRegion": "us-ashburn-1"},
        {**CTX, "sourceKeyId": "ocid1.key.oc1.iad.p.aaaaother"},
        {**CTX, "length": "16"},
    ],
)
def test_a_blob_is_bound_to_the_version_it_carries(other: dict[str, str]) -> None:
    blob = transfer.wrap(PUBLIC, _fixed(32), CTX)
    with pytest.raises(DecryptionFailed):
        transfer.unwrap(PRIVATE, blob, other)


def test_only_the_intended_keystore_can_unwrap() -> None:
    blob = transfer.wrap(PUBLIC, _fixed(32), CTX)
    with pytest.raises(DecryptionFailed):
        transfer.unwrap(OTHER, blob, CTX)


def test_layout_is_the_documented_one() -> None:
    """magic | version | n | RSA-OAEP block (n = modulus bytes) | AES-KWP of 32 bytes (40 bytes)."""
    blob = transfer.wrap(PUBLIC, _fixed(32), CTX, random=lambda n: bytes([7]) * n)
    magic, version, n = struct.unpack_from(">4sBH", blob)
    assert (magic, version, n) == (b"BVRW", 1, 256)
    assert len(blob) == 7 + 256 + 40


def test_bad_material_length_and_weak_keys_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        transfer.wrap(PUBLIC, _fixed(20), CTX)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505 - refused
    pem = weak.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(InvalidArgument):
        transfer.wrap(pem, _fixed(32), CTX)
    with pytest.raises(InvalidArgument):
        transfer.wrap(b"not a key", _fixed(32), CTX)
