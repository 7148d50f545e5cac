"""AES-GCM over caller-owned buffers for the store's data path: sealing and opening a unit allocate nothing.

`blockvault.crypto.Aead` returns a fresh bytes object per call; on the NBD data path that allocation (and the page
faults of 64 KiB of new memory per unit) cost more than the AES itself. This is the same AES-GCM (cryptography's
`encrypt_into`/`decrypt_into`, byte-identical output), with the same error contract: any authentication failure
is the opaque `DecryptionFailed`. Nonce management stays with the caller (volume.py: fresh random nonce per seal).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from blockvault.crypto import NONCE_SIZE, TAG_SIZE
from blockvault.errors import DecryptionFailed

__all__ = ["UnitCipher"]


class UnitCipher:
    """One AES-GCM key (kept per store, not per call: constructing AESGCM has a cost)."""

    __slots__ = ("_gcm",)

    def __init__(self, key: bytes) -> None:
        self._gcm = AESGCM(key)

    def seal_into(self, nonce: bytes, plaintext: bytes | bytearray | memoryview, aad: bytes, out: memoryview) -> None:
        """`out` (exactly len(plaintext) + TAG_SIZE bytes) receives ciphertext | tag."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError("GCM nonces are 12 bytes here")
        self._gcm.encrypt_into(nonce, plaintext, aad, out)

    def open_into(self, nonce: bytes, sealed: bytearray | memoryview, aad: bytes, out: memoryview) -> None:
        """`sealed` is ciphertext | tag; `out` (exactly len(sealed) - TAG_SIZE bytes) receives the plaintext.

        On DecryptionFailed `out` may hold unauthenticated bytes: the caller must not release them."""
        if len(nonce) != NONCE_SIZE or len(sealed) < TAG_SIZE:
            raise DecryptionFailed()
        try:
            self._gcm.decrypt_into(nonce, sealed, aad, out)
        except InvalidTag as exc:
            raise DecryptionFailed() from exc
