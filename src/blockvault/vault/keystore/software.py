"""Software keystore: MEK material wrapped by a root key, in its own SQLite file with secure_delete.

The root key comes from a 32-byte file created at first start with mode 0600 (or from the environment, base64),
kept in a directory apart from metadata and volume data. Material is unwrapped into memory only to build the AEAD
object that uses it; it is never logged, returned or written unwrapped.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from blockvault.crypto import NONCE_SIZE, Aead
from blockvault.crypto.envelope import unwrap_dek, wrap_dek
from blockvault.errors import DecryptionFailed, InvalidArgument
from blockvault.vault.keystore import transfer
from blockvault.vault.keystore.base import MaterialDestroyed

ROOT_KEY_SIZE = 32
TRANSFER_KEY_BITS = 4096  # as OCI's vault wrapping keys (R6.4)


def load_or_create_root_key(path: Path, env_value: str | None = None) -> bytes:
    """The root key: from the env value if given, else the file, created 0600 on first start."""
    if env_value:
        try:
            key = base64.b64decode(env_value, validate=True)
        except ValueError as exc:
            raise InvalidArgument(field="BLOCKVAULT_ROOT_KEY", reason="not base64") from exc
        if len(key) != ROOT_KEY_SIZE:
            raise InvalidArgument(field="BLOCKVAULT_ROOT_KEY", reason="must decode to 32 bytes")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != ROOT_KEY_SIZE:
            raise InvalidArgument(field=str(path), reason="root key file must hold 32 bytes") from None
        return key
    key = os.urandom(ROOT_KEY_SIZE)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


class SoftwareKeystore:
    """Thread-safe; AEAD objects are cached per handle and dropped on destroy."""

    def __init__(
        self,
        path: Path,
        root_key: bytes,
        *,
        random: Callable[[int], bytes] = os.urandom,
        transfer_key_bits: int = TRANSFER_KEY_BITS,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA secure_delete=ON")  # destroyed material is overwritten, not just unlinked
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS material"
            " (handle TEXT PRIMARY KEY, length INTEGER NOT NULL, wrapped BLOB NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS transfer_keys (name TEXT PRIMARY KEY, wrapped BLOB NOT NULL)")
        os.chmod(path, 0o600)
        self._root = Aead(root_key)
        self._random = random
        self._lock = threading.Lock()
        self._cache: dict[str, Aead] = {}
        self._transfer: rsa.RSAPrivateKey | None = None
        self._transfer_bits = transfer_key_bits

    def _context(self, handle: str) -> dict[str, str]:
        return {"purpose": "keystore.material", "handle": handle}

    def create(self, handle: str, length: int) -> None:
        if length not in (16, 24, 32):
            raise InvalidArgument(field="length", reason="AES material is 16, 24 or 32 bytes")
        with self._lock:
            row = self._db.execute("SELECT length FROM material WHERE handle=?", (handle,)).fetchone()
            if row is not None:
                if row[0] != length:
                    raise InvalidArgument(field="handle", reason="exists with another length")
                return
            wrapped = wrap_dek(self._root, self._random(length), self._context(handle), random=self._random)
            self._db.execute(
                "INSERT INTO material (handle, length, wrapped) VALUES (?, ?, ?)", (handle, length, wrapped)
            )

    def exists(self, handle: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM material WHERE handle=?", (handle,)).fetchone() is not None

    def _aead(self, handle: str) -> Aead:
        with self._lock:
            aead = self._cache.get(handle)
            if aead is not None:
                return aead
            row = self._db.execute("SELECT wrapped FROM material WHERE handle=?", (handle,)).fetchone()
            if row is None:
                raise MaterialDestroyed(handle=handle)
            aead = Aead(unwrap_dek(self._root, bytes(row[0]), self._context(handle)))
            self._cache[handle] = aead
            return aead

    def seal(self, handle: str, plaintext: bytes, aad: bytes) -> bytes:
        nonce = self._random(NONCE_SIZE)
        return nonce + self._aead(handle).seal(nonce, plaintext, aad)

    def open(self, handle: str, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < NONCE_SIZE + 16:
            raise DecryptionFailed()
        return self._aead(handle).open(blob[:NONCE_SIZE], blob[NONCE_SIZE:], aad)

    def destroy(self, handle: str) -> None:
        with self._lock:
            self._cache.pop(handle, None)
            self._db.execute("DELETE FROM material WHERE handle=?", (handle,))

    # --- replication transfer ---------------------------------------------------------------------------------

    def _transfer_key(self) -> rsa.RSAPrivateKey:
        """The RSA transfer key, generated once and kept wrapped by the root key like all material."""
        with self._lock:
            if self._transfer is not None:
                return self._transfer
            ctx = {"purpose": "keystore.transfer-key", "name": "replication"}
            row = self._db.execute("SELECT wrapped FROM transfer_keys WHERE name='replication'").fetchone()
            if row is not None:
                der = unwrap_dek(self._root, bytes(row[0]), ctx)
                key = serialization.load_der_private_key(der, password=None)
                if not isinstance(key, rsa.RSAPrivateKey):
                    raise DecryptionFailed()
            else:
                key = rsa.generate_private_key(public_exponent=65537, key_size=self._transfer_bits)
                der = key.private_bytes(
                    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                self._db.execute(
                    "INSERT INTO transfer_keys (name, wrapped) VALUES ('replication', ?)",
                    (wrap_dek(self._root, der, ctx, random=self._random),),
                )
            self._transfer = key
            return key

    def transfer_public_key(self) -> bytes:
        return (
            self._transfer_key()
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def export_for_transfer(self, handle: str, public_pem: bytes, context: Mapping[str, str]) -> bytes:
        with self._lock:
            row = self._db.execute("SELECT wrapped FROM material WHERE handle=?", (handle,)).fetchone()
        if row is None:
            raise MaterialDestroyed(handle=handle)
        material = unwrap_dek(self._root, bytes(row[0]), self._context(handle))
        return transfer.wrap(public_pem, material, context, random=self._random)

    def import_from_transfer(self, handle: str, blob: bytes, context: Mapping[str, str]) -> None:
        if self.exists(handle):
            return
        material = transfer.unwrap(self._transfer_key(), blob, context)
        wrapped = wrap_dek(self._root, material, self._context(handle), random=self._random)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO material (handle, length, wrapped) VALUES (?, ?, ?)",
                (handle, len(material), wrapped),
            )

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._db.close()
