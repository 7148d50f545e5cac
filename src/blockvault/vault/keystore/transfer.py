"""Key material in transit between keystores (vault replication). Pure apart from the randomness passed in.

The destination keystore publishes an RSA public "transfer key" (like OCI's vault wrapping key, R6.4); the source
wraps each key version's material for it, in the style of PKCS#11 CKM_RSA_AES_KEY_WRAP (OCI's
RSA_OAEP_AES_SHA256 import format), behind a small versioned header:

    magic:4 = b"BVRW" | version:1 = 1 | n:2 (big-endian) | RSA-OAEP-SHA256(ephemeral AES-256 key, label):n
    | AES-KWP(ephemeral key, material) (RFC 5649)

`label` is the OAEP label: it binds the blob to what it claims to be (the replication domain, the source key
version and the material length), so a blob cannot be replayed as the material of another version. Any change to
any byte, or another label or private key, fails with DecryptionFailed. The ephemeral key is used once.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding, aes_key_wrap_with_padding

from blockvault.crypto.envelope import encode_context
from blockvault.errors import DecryptionFailed, InvalidArgument

MAGIC = b"BVRW"
VERSION = 1
DOMAIN = b"blockvault.vault-replication.material.v1"
EPHEMERAL_SIZE = 32
MIN_RSA_BITS = 2048  # the keystore generates 4096-bit keys (as OCI's wrapping keys); tests may use 2048
_HEADER = struct.Struct(">4sBH")


def label(context: Mapping[str, str]) -> bytes:
    """The OAEP label for a material blob: the domain and an injective encoding of the context."""
    return DOMAIN + encode_context(dict(context))


def _oaep(lbl: bytes) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=lbl)


def load_public(pem: bytes) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise InvalidArgument(field="transferKey", reason="not a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise InvalidArgument(field="transferKey", reason=f"must be an RSA key of at least {MIN_RSA_BITS} bits")
    return key


def wrap(
    public_pem: bytes, material: bytes, context: Mapping[str, str], *, random: Callable[[int], bytes] = os.urandom
) -> bytes:
    """Wrap `material` (16, 24 or 32 bytes) for the holder of the private half of `public_pem`."""
    if len(material) not in (16, 24, 32):
        raise InvalidArgument(field="material", reason="AES material is 16, 24 or 32 bytes")
    public = load_public(public_pem)
    ephemeral = random(EPHEMERAL_SIZE)
    head = public.encrypt(ephemeral, _oaep(label(context)))
    body = aes_key_wrap_with_padding(ephemeral, material)
    return _HEADER.pack(MAGIC, VERSION, len(head)) + head + body


def unwrap(private: rsa.RSAPrivateKey, blob: bytes, context: Mapping[str, str]) -> bytes:
    """Inverse of wrap; DecryptionFailed for any damage, another label or another private key."""
    if len(blob) < _HEADER.size:
        raise DecryptionFailed()
    magic, version, n = _HEADER.unpack_from(blob)
    if magic != MAGIC or version != VERSION or n != private.key_size // 8 or len(blob) < _HEADER.size + n + 24:
        raise DecryptionFailed()
    head, body = blob[_HEADER.size : _HEADER.size + n], blob[_HEADER.size + n :]
    try:
        ephemeral = private.decrypt(head, _oaep(label(context)))
        if len(ephemeral) != EPHEMERAL_SIZE:
            raise DecryptionFailed()
        material = aes_key_unwrap_with_padding(ephemeral, body)
    except (ValueError, InvalidKey, InvalidUnwrap) as exc:
        raise DecryptionFailed() from exc
    if len(material) not in (16, 24, 32):
        raise DecryptionFailed()
    return material
