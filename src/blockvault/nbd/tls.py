"""NBD over TLS with per-attachment x509 client certificates (docs/design/nbd.md T2).

CPython 3.11's `ssl` has no TLS-PSK, so an attachment's credential is a client certificate signed by a CA that
belongs to the data directory. Files live apart from the metadata, in `<data_dir>/nbd-tls/` (directory 0700,
files 0600):

    ca-key.pem  ca-cert.pem          the CA (made once; clients trust ca-cert.pem, so it stays)
    server-key.pem  server-cert.pem  the NBD server's certificate (127.0.0.1, ::1, localhost and the configured
                                     host names), re-issued at every start

The client's private key never reaches the server: the client sends a certificate signing request (the CLI makes
the key locally); the CA signs the request's public key into a certificate whose subject and SAN name the
attachment, and only the SHA-256 fingerprint of that certificate is stored (the attachment row's `credential`).
A connection's certificate must chain to the CA (the TLS handshake) *and* its fingerprint must be the one of the
attachment it opens (the server's export lookup); detach therefore revokes at once.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from blockvault.blockstorage.attachments import IssuedCertificate
from blockvault.errors import InvalidArgument

TLS_DIR = "nbd-tls"
CA_KEY, CA_CERT = "ca-key.pem", "ca-cert.pem"
SERVER_KEY, SERVER_CERT = "server-key.pem", "server-cert.pem"
CA_DAYS = 20 * 365
SERVER_DAYS = 365
# Client certificates do not expire in practice: an attachment is revoked by detaching it (the fingerprint check),
# not by expiry, so a long-lived attachment does not stop working one day.
CLIENT_DAYS = 10 * 365
SKEW = datetime.timedelta(hours=1)  # not-before in the past: tolerate clients whose clock is a little behind
MAX_CSR_BYTES = 16 * 1024


def fingerprint(der: bytes) -> bytes:
    """SHA-256 of a certificate's DER encoding: what an attachment row stores to recognise its certificate."""
    return hashlib.sha256(der).digest()


def _now() -> datetime.datetime:
    # Certificates are checked by peers against real time, not against the Vault's (controllable) clock.
    return datetime.datetime.now(datetime.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 from the first byte on (atomically: tmp + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _leaf_extensions(builder: x509.CertificateBuilder, purpose: x509.ObjectIdentifier) -> x509.CertificateBuilder:
    # qemu's tls-creds-x509 checks these (crypto/tlscredsx509.c): a leaf must not be a CA, must allow
    # digitalSignature and keyEncipherment, and must carry the purpose of its side.
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    )


def _check_public_key(key: object) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise InvalidArgument(field="certificateSigningRequest", reason="RSA keys must be at least 2048 bits")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1 | ec.SECP521R1):
            raise InvalidArgument(field="certificateSigningRequest", reason="EC keys must use P-256, P-384 or P-521")
        return
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    raise InvalidArgument(field="certificateSigningRequest", reason="the key must be RSA, ECDSA or Ed25519")


@dataclass(frozen=True)
class TlsAuthority:
    """The data directory's NBD CA: issues per-attachment client certificates and builds the server context."""

    directory: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    @classmethod
    def open(cls, data_dir: Path, host_names: Iterable[str] = ()) -> TlsAuthority:
        """Load (or make, at first start) the CA under `data_dir`/nbd-tls, and issue a fresh server certificate."""
        directory = Path(data_dir) / TLS_DIR
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        key_path, cert_path = directory / CA_KEY, directory / CA_CERT
        if key_path.exists() and cert_path.exists():
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise InvalidArgument(field=str(key_path), reason="not an EC private key")
            ca_key, ca_cert = loaded, x509.load_pem_x509_certificate(cert_path.read_bytes())
        else:
            ca_key, ca_cert = _make_ca()
            _write_private(key_path, _key_pem(ca_key))
            _write_private(cert_path, ca_cert.public_bytes(serialization.Encoding.PEM))
        authority = cls(directory, ca_key, ca_cert)
        authority._issue_server(host_names)
        return authority

    @property
    def ca_pem(self) -> str:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()

    def _issue_server(self, host_names: Iterable[str]) -> None:
        names: list[x509.GeneralName] = []
        seen: set[str] = set()
        for name in ("127.0.0.1", "::1", "localhost", *host_names):
            if not name or name in seen or name in ("0.0.0.0", "::"):  # noqa: S104 - wildcard binds are no names
                continue
            seen.add(name)
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                names.append(x509.DNSName(name))
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "blockvault NBD server")]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - SKEW)
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
        )
        cert = _leaf_extensions(builder, ExtendedKeyUsageOID.SERVER_AUTH).sign(self.ca_key, hashes.SHA256())
        _write_private(self.directory / SERVER_KEY, _key_pem(key))
        _write_private(self.directory / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM))

    def server_context(self) -> ssl.SSLContext:
        """TLS 1.2+ server context that requires a client certificate chaining to this CA (and only this CA)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.directory / SERVER_CERT, self.directory / SERVER_KEY)
        ctx.load_verify_locations(cafile=str(self.directory / CA_CERT))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        return ctx

    def issue(self, attachment_id: str, export_name: str, csr_pem: str) -> IssuedCertificate:
        """Sign the public key of `csr_pem` into a client certificate naming the attachment.

        Only the key is taken from the request (its signature proves the requester holds the private key); the
        subject, SAN, validity and extensions are ours."""
        if not isinstance(csr_pem, str) or not csr_pem.strip() or len(csr_pem) > MAX_CSR_BYTES:
            raise InvalidArgument(field="certificateSigningRequest", reason="must be a PEM certificate request")
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError as exc:
            raise InvalidArgument(field="certificateSigningRequest", reason="not a PEM certificate request") from exc
        if not csr.is_signature_valid:
            raise InvalidArgument(field="certificateSigningRequest", reason="its signature does not verify")
        public_key = csr.public_key()
        _check_public_key(public_key)
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "blockvault"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "NBD attachment"),
                        # The OCID is longer than the 64 characters a CN may have; UID has no such bound.
                        x509.NameAttribute(NameOID.USER_ID, attachment_id),
                    ]
                )
            )
            .issuer_name(self.ca_cert.subject)
            .public_key(public_key)  # checked by _check_public_key
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - SKEW)
            .not_valid_after(now + datetime.timedelta(days=CLIENT_DAYS))
            .add_extension(
                x509.SubjectAlternativeName(
                    # Not the export name: it is a secret, and certificates end up in logs and dumps.
                    [x509.UniformResourceIdentifier(f"urn:blockvault:nbd-attachment:{attachment_id}")]
                ),
                critical=False,
            )
        )
        cert = _leaf_extensions(builder, ExtendedKeyUsageOID.CLIENT_AUTH).sign(self.ca_key, hashes.SHA256())
        der = cert.public_bytes(serialization.Encoding.DER)
        return IssuedCertificate(
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            ca_pem=self.ca_pem,
            fingerprint=fingerprint(der),
            serial=cert.serial_number,
        )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "blockvault"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"blockvault NBD CA {os.urandom(4).hex()}"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


__all__ = ["TlsAuthority", "fingerprint"]
