"""The Vault's ciphertext format for Encrypt and GenerateDataEncryptionKey (Part A D10). Pure.

    magic:3 = b"BVK" | version:1 = 1 | len:2 | key version OCID (ASCII) | keystore blob (nonce:12 | ct | tag:16)

AAD given to the keystore: DOMAIN | encode_context({"keyId", "keyVersionId"}) | encode_context(associatedData).
Both encodings are self-delimiting, so the concatenation is injective: a ciphertext cannot be opened under another
key, another version, or other associated data. The version is named in the clear so that Decrypt needs only keyId
(R6.17); it is bound by the AAD, so editing it fails authentication.

Replicated keys (docs/design/vault-replication.md): "keyId" and "keyVersionId" are always the PRIMARY key's and
version's OCIDs, in every region. A replica key (own OCID, D5) seals and opens with its own copy of the material
and maps the named version to its own version, so a ciphertext made in either region opens in the other.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from blockvault.crypto.envelope import encode_context
from blockvault.errors import DecryptionFailed

MAGIC = b"BVK"
VERSION = 1
DOMAIN = b"blockvault.kms.ciphertext.v1"
_LEN = struct.Struct(">H")


@dataclass(frozen=True)
class Parsed:
    key_version_id: str
    blob: bytes


def aad(key_id: str, key_version_id: str, associated_data: Mapping[str, str] | None) -> bytes:
    return (
        DOMAIN
        + encode_context({"keyId": key_id, "keyVersionId": key_version_id})
        + encode_context(dict(associated_data or {}))
    )


def pack(key_version_id: str, blob: bytes) -> bytes:
    ident = key_version_id.encode("ascii")
    return MAGIC + bytes([VERSION]) + _LEN.pack(len(ident)) + ident + blob


def unpack(data: bytes) -> Parsed:
    if len(data) < 6 or data[:3] != MAGIC or data[3] != VERSION:
        raise DecryptionFailed()
    (n,) = _LEN.unpack_from(data, 4)
    if len(data) < 6 + n + 28:
        raise DecryptionFailed()
    try:
        ident = data[6 : 6 + n].decode("ascii")
    except UnicodeDecodeError as exc:
        raise DecryptionFailed() from exc
    return Parsed(ident, data[6 + n :])
