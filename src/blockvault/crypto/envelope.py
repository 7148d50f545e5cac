"""Wrapped data keys and the injective context encoding (docs/design/key-hierarchy.md).

A wrapped DEK, as stored beside a resource:

    version:1 (=1) | nonce:12 | AES-GCM(MEK version, DEK) ciphertext+tag: len(DEK)+16
    aad = b"blockvault.dek.v1" | encode_context(context)

The context names the resource and purpose (e.g. {"resource": <OCID>, "purpose": "volume"}) and the MEK version,
so a wrapped DEK cannot be moved to another resource or presented as wrapped by another key version.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping

from blockvault.crypto.hazmat.aead import NONCE_SIZE, TAG_SIZE, Aead
from blockvault.errors import DecryptionFailed

WRAP_VERSION = 1
_DEK_DOMAIN = b"blockvault.dek.v1"
_U32 = struct.Struct(">I")


def encode_context(context: Mapping[str, str]) -> bytes:
    """Canonical, injective encoding: count, then sorted (key, value) pairs, every part length-prefixed.

    Self-delimiting, so two encodings may be concatenated and stay injective.
    """
    out = bytearray(_U32.pack(len(context)))
    for key in sorted(context):
        for part in (key.encode(), context[key].encode()):
            out += _U32.pack(len(part)) + part
    return bytes(out)


def wrap_dek(
    kek: Aead, dek: bytes, context: Mapping[str, str], *, random: Callable[[int], bytes] = os.urandom
) -> bytes:
    nonce = random(NONCE_SIZE)
    return bytes([WRAP_VERSION]) + nonce + kek.seal(nonce, dek, _DEK_DOMAIN + encode_context(context))


def unwrap_dek(kek: Aead, blob: bytes, context: Mapping[str, str]) -> bytes:
    if len(blob) < 1 + NONCE_SIZE + TAG_SIZE + 16 or blob[0] != WRAP_VERSION:
        raise DecryptionFailed()
    nonce = blob[1 : 1 + NONCE_SIZE]
    return kek.open(nonce, blob[1 + NONCE_SIZE :], _DEK_DOMAIN + encode_context(context))
