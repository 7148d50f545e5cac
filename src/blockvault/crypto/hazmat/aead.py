"""AES-GCM with fixed sizes; InvalidTag becomes the opaque DecryptionFailed. Hazardous: no nonce management here."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from blockvault.errors import DecryptionFailed

KEY_SIZES = (16, 24, 32)
NONCE_SIZE = 12  # NIST SP 800-38D §8.2: 96-bit IVs
TAG_SIZE = 16


class Aead:
    """One AES-GCM key. Constructing AESGCM has a cost, so callers keep one per key (not per call)."""

    __slots__ = ("_gcm",)

    def __init__(self, key: bytes) -> None:
        if len(key) not in KEY_SIZES:
            raise ValueError("AES keys are 16, 24 or 32 bytes")
        self._gcm = AESGCM(key)

    def seal(self, nonce: bytes, plaintext: bytes | bytearray | memoryview, aad: bytes) -> bytes:
        if len(nonce) != NONCE_SIZE:
            raise ValueError("GCM nonces are 12 bytes here")
        return self._gcm.encrypt(nonce, plaintext, aad)

    def seal_into(self, nonce: bytes, plaintext: bytes | bytearray | memoryview, aad: bytes, out: memoryview) -> None:
        """Like seal, into `out` (exactly len(plaintext) + TAG_SIZE bytes): no allocation on the data path."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError("GCM nonces are 12 bytes here")
        self._gcm.encrypt_into(nonce, plaintext, aad, out)

    def open_into(self, nonce: bytes, sealed: bytearray | memoryview, aad: bytes, out: memoryview) -> None:
        """Like open, into `out` (exactly len(sealed) - TAG_SIZE bytes). On DecryptionFailed `out` may hold
        unauthenticated bytes: the caller must not release them."""
        if len(nonce) != NONCE_SIZE or len(sealed) < TAG_SIZE:
            raise DecryptionFailed()
        try:
            self._gcm.decrypt_into(nonce, sealed, aad, out)
        except InvalidTag as exc:
            raise DecryptionFailed() from exc

    def open(self, nonce: bytes, ciphertext: bytes | bytearray | memoryview, aad: bytes) -> bytes:
        if len(nonce) != NONCE_SIZE:
            raise DecryptionFailed()
        try:
            return self._gcm.decrypt(nonce, ciphertext, aad)
        except InvalidTag as exc:
            raise DecryptionFailed() from exc
