"""The keystore port: where master key material lives and where it is used. Material never leaves it.

A software keystore keeps material wrapped by a root key; an HSM (PKCS#11) keeps it non-extractable in a token.
Handles are opaque strings chosen by the Vault (one per key version, plus the provider-managed keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from blockvault.errors import NotFound


class MaterialDestroyed(NotFound):
    message = "key material {handle} does not exist or was destroyed"


class Keystore(Protocol):
    def create(self, handle: str, length: int) -> None:
        """Generate fresh AES material of `length` bytes under `handle` (idempotent only for the same length)."""

    def exists(self, handle: str) -> bool: ...

    def seal(self, handle: str, plaintext: bytes, aad: bytes) -> bytes:
        """AES-GCM under the handle's material with a fresh random nonce: returns nonce | ciphertext | tag."""

    def open(self, handle: str, blob: bytes, aad: bytes) -> bytes:
        """Inverse of seal; DecryptionFailed on any mismatch, MaterialDestroyed if the material is gone."""

    def destroy(self, handle: str) -> None:
        """Destroy the material for good (crypto-shredding). Idempotent."""

    # Vault replication (vault/keystore/transfer.py): material crosses keystores only wrapped for the receiver.

    def transfer_public_key(self) -> bytes:
        """PEM of this keystore's RSA transfer key (made on first use; its private half never leaves)."""

    def export_for_transfer(self, handle: str, public_pem: bytes, context: Mapping[str, str]) -> bytes:
        """The handle's material wrapped (transfer.wrap) for the holder of `public_pem`, bound to `context`."""

    def import_from_transfer(self, handle: str, blob: bytes, context: Mapping[str, str]) -> None:
        """Unwrap a transfer blob with this keystore's transfer key and keep it under `handle`. A handle that
        exists already is left as it is (idempotent); DecryptionFailed for a blob not made for this keystore."""
