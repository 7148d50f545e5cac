"""The service identity that signs peer calls between `blockvault serve` processes (docs/design/regions.md).

One RSA key pair per data dir, made at bootstrap (under the bootstrap lock) and kept beside the identity database,
0600, in a 0700 data dir: every process serving a region of that data dir reads it. Requests are signed exactly as
the OCI SDK signs user requests (iam/signing.py), with keyId `<tenancy>/<service principal>/<fingerprint>`. The
service principal's OCID is in no user table, so the public API refuses this key (no user has it), and the internal
routes accept only this keyId and this key, so a user's key never reaches them (401 either way).
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from blockvault import ids
from blockvault.iam import signing

__all__ = ["ServiceIdentity", "attest", "check_attestation", "load_or_create", "sign_headers", "verify"]

KEY_FILE = "service_key.pem"
ID_FILE = "service_identity.json"
CONTENT_TYPE = "application/vnd.blockvault.peer"


@dataclass(frozen=True)
class ServiceIdentity:
    key_id: str
    private_key: rsa.RSAPrivateKey
    public_key: rsa.RSAPublicKey

    def lookup(self, key_id: signing.KeyId) -> rsa.RSAPublicKey | None:
        """The service's public key for exactly its own keyId (constant-time compare), None for anything else."""
        return self.public_key if hmac.compare_digest(str(key_id).encode(), self.key_id.encode()) else None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def load_or_create(directory: Path, tenancy_id: str) -> ServiceIdentity:
    """Read the service identity of a data dir, making it on first use. Call under the bootstrap lock."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, id_path = directory / KEY_FILE, directory / ID_FILE
    if not key_path.exists():
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        key_id = f"{tenancy_id}/{ids.new('user')}/{signing.fingerprint(public_pem)}"
        tmp = id_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keyId": key_id}) + "\n")
        os.replace(tmp, id_path)
        _write_private(key_path, pem)  # last: its presence means the pair is complete
    private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ValueError(f"{key_path} is not an RSA private key")
    key_id = str(json.loads(id_path.read_text())["keyId"])
    return ServiceIdentity(key_id, private_key, private_key.public_key())


def sign_headers(identity: ServiceIdentity, url: str, body: bytes, now: datetime) -> dict[str, str]:
    """Every header of a signed POST of `body` to `url` (date, host, content-*, authorization)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {
        "date": format_datetime(now, usegmt=True),
        "host": parts.netloc,
        "content-type": CONTENT_TYPE,
        **signing.content_headers(body),
    }
    headers["authorization"] = signing.sign(
        "POST", target, headers, body, key_id=identity.key_id, private_key=identity.private_key
    )
    return headers


def verify(identity: ServiceIdentity, request: signing.SignedRequest, now: datetime) -> signing.Verified:
    """Accept only a request signed by this service identity (NotAuthenticated otherwise)."""
    return signing.verify(request, lookup=identity.lookup, now=now)


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def attest(identity: ServiceIdentity, statement: bytes) -> bytes:
    """Sign a statement a peer ANSWERS (requests are signed, replies are not): RSA-PSS-SHA256 with the service key.
    The caller checks it with `check_attestation`; only a process of this data dir can make one. `statement` MUST
    start with a purpose tag of its own, so an attestation of one thing is never one of another."""
    return identity.private_key.sign(statement, _PSS, hashes.SHA256())


def check_attestation(identity: ServiceIdentity, statement: bytes, signature: bytes) -> bool:
    try:
        identity.public_key.verify(signature, statement, _PSS, hashes.SHA256())
    except InvalidSignature:
        return False
    return True
