"""NBD TLS: the per-data-dir CA (nbd/tls.py) and the server's per-attachment certificate checks (nbd/server.py)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from test_nbd_server import MemoryExport, option_replies, recv_exact

from blockvault.cli.commands.attach import client_key_and_request
from blockvault.errors import InvalidArgument
from blockvault.nbd import protocol as p
from blockvault.nbd.server import Connection, NbdServer, Target
from blockvault.nbd.tls import TlsAuthority, fingerprint


@pytest.fixture
def authority(tmp_path: Path) -> TlsAuthority:
    return TlsAuthority.open(tmp_path / "data")


def issue(authority: TlsAuthority, directory: Path, attachment: str = "ocid1.volumeattachment.x") -> bytes:
    """Issue a client certificate into `directory` (the CLI's layout); its fingerprint."""
    key, csr = client_key_and_request()
    cert = authority.issue(attachment, "export", csr)
    directory.mkdir()
    (directory / "client-key.pem").write_bytes(key)
    (directory / "client-cert.pem").write_text(cert.certificate_pem)
    (directory / "ca-cert.pem").write_text(cert.ca_pem)
    return cert.fingerprint


def test_authority_files_are_private_and_the_ca_survives_a_restart(tmp_path: Path, authority: TlsAuthority) -> None:
    tls_dir = tmp_path / "data" / "nbd-tls"
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
    names = {f.name: stat.S_IMODE(f.stat().st_mode) for f in tls_dir.iterdir()}
    assert names == {n: 0o600 for n in ("ca-key.pem", "ca-cert.pem", "server-key.pem", "server-cert.pem")}
    server_cert = (tls_dir / "server-cert.pem").read_bytes()
    again = TlsAuthority.open(tmp_path / "data", host_names=["nbd.example", "10.1.2.3", "0.0.0.0"])  # noqa: S104
    assert again.ca_pem == authority.ca_pem
    fresh = x509.load_pem_x509_certificate((tls_dir / "server-cert.pem").read_bytes())
    assert fresh.public_bytes(serialization.Encoding.PEM) != server_cert
    san = fresh.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "nbd.example" in san.get_values_for_type(x509.DNSName)
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1", "10.1.2.3"}


def test_issued_certificate_names_the_attachment_and_keeps_only_the_csr_key(authority: TlsAuthority) -> None:
    key_pem, csr = client_key_and_request()
    issued = authority.issue("ocid1.volumeattachment.oc1.iad.abc", "secret-export", csr)
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert fingerprint(cert.public_bytes(serialization.Encoding.DER)) == issued.fingerprint
    assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == "ocid1.volumeattachment.oc1.iad.abc"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:blockvault:nbd-attachment:ocid1.volumeattachment.oc1.iad.abc"
    ]
    assert "secret-export" not in issued.certificate_pem  # the export name is a secret: never in the certificate
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert cert.public_key() == key.public_key()
    assert cert.issuer == authority.ca_cert.subject


def _rsa_csr(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    "csr", ["", "not a csr", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"]
)
def test_bad_csr_is_invalid_argument(authority: TlsAuthority, csr: str) -> None:
    with pytest.raises(InvalidArgument):
        authority.issue("a", "e", csr)


def test_weak_rsa_key_is_refused(authority: TlsAuthority) -> None:
    with pytest.raises(InvalidArgument, match="2048"):
        authority.issue("a", "e", _rsa_csr(1024))
    assert authority.issue("a", "e", _rsa_csr(2048)).fingerprint


# --- the server over TLS ------------------------------------------------------------------------------------------


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.authority = TlsAuthority.open(tmp_path / "data")
        self.fp_a = issue(self.authority, tmp_path / "a", "att-a")
        self.fp_b = issue(self.authority, tmp_path / "b", "att-b")
        self.attached = {self.fp_a, self.fp_b}
        self.export = MemoryExport()
        self.dirs = {"a": tmp_path / "a", "b": tmp_path / "b"}

    def resolve(self, name: str) -> Target | None:
        if name == "disk-a":
            return Target("tls", lambda: self.export, self.fp_a)
        if name == "disk-b":
            return Target("tls", lambda: self.export, self.fp_b)
        if name == "plain":
            return Target("plain", lambda: self.export)
        return None


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[World, NbdServer]]:
    w = World(tmp_path)
    srv = NbdServer(
        host="127.0.0.1",
        port=0,
        resolve=w.resolve,
        tls=w.authority.server_context(),
        accept_certificate=lambda fp: fp in w.attached,
    )
    srv.start()
    yield w, srv
    srv.stop()


def starttls(srv: NbdServer, cert_dir: Path | None, ca: Path) -> ssl.SSLSocket:
    sock = socket.create_connection(srv.address, timeout=5)
    recv_exact(sock, 18)
    sock.sendall(struct.pack(">I", 3) + p.encode_option(p.OPT_STARTTLS))
    assert option_replies(sock)[-1][0] == p.REP_ACK
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert_dir is not None:
        ctx.load_cert_chain(cert_dir / "client-cert.pem", cert_dir / "client-key.pem")
    return ctx.wrap_socket(sock, server_hostname="127.0.0.1")


def info(sock: socket.socket, name: str, option: int = p.OPT_INFO) -> int:
    sock.sendall(p.encode_option(option, p.encode_info_request(name)))
    return option_replies(sock)[-1][0]


def test_each_certificate_opens_only_its_own_export(world: tuple[World, NbdServer]) -> None:
    w, srv = world
    sock = starttls(srv, w.dirs["a"], w.dirs["a"] / "ca-cert.pem")
    assert info(sock, "disk-b") == p.REP_ERR_POLICY
    assert info(sock, "unknown") == p.REP_ERR_UNKNOWN
    assert info(sock, "plain") == p.REP_ACK  # a loopback peer may open plain exports, TLS or not
    assert info(sock, "disk-a", p.OPT_GO) == p.REP_ACK
    sock.sendall(p.encode_request(p.CMD_WRITE, 1, 0, 5, data=b"hello"))
    sock.sendall(p.encode_request(p.CMD_READ, 2, 0, 5))
    assert struct.unpack(">IIQ", recv_exact(sock, 16))[1:] == (0, 1)
    assert struct.unpack(">IIQ", recv_exact(sock, 16))[1:] == (0, 2)
    assert recv_exact(sock, 5) == b"hello"
    sock.sendall(p.encode_request(p.CMD_DISC, 3, 0, 0))
    assert sock.recv(1) == b""  # after close_notify
    sock.close()
    assert _wait_no_connections(srv)


def _wait_no_connections(srv: NbdServer) -> bool:
    import time

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if srv.connection_count() == 0:
            return True
        time.sleep(0.02)
    return False


def test_tls_export_over_plaintext_is_tls_reqd(world: tuple[World, NbdServer]) -> None:
    _w, srv = world
    sock = socket.create_connection(srv.address, timeout=5)
    recv_exact(sock, 18)
    sock.sendall(struct.pack(">I", 3))
    assert info(sock, "disk-a") == p.REP_ERR_TLS_REQD
    assert info(sock, "plain") == p.REP_ACK


def test_no_client_certificate_fails_the_tls_handshake(world: tuple[World, NbdServer]) -> None:
    w, srv = world
    with pytest.raises((ssl.SSLError, OSError, EOFError)):  # TLS 1.3: the verdict comes with a read
        info(starttls(srv, None, w.dirs["a"] / "ca-cert.pem"), "disk-a")


def test_certificate_from_another_ca_fails_the_tls_handshake(world: tuple[World, NbdServer], tmp_path: Path) -> None:
    w, srv = world
    other = TlsAuthority.open(tmp_path / "other")
    issue(other, tmp_path / "foreign", "att-a")
    with pytest.raises((ssl.SSLError, OSError, EOFError)):
        info(starttls(srv, tmp_path / "foreign", w.dirs["a"] / "ca-cert.pem"), "disk-a")


def test_revoked_certificate_is_hung_up_after_the_handshake(world: tuple[World, NbdServer]) -> None:
    w, srv = world
    w.attached.discard(w.fp_a)
    sock = starttls(srv, w.dirs["a"], w.dirs["a"] / "ca-cert.pem")
    sock.settimeout(3)
    assert sock.recv(1) == b""


def test_close_export_hangs_up_a_tls_connection(world: tuple[World, NbdServer]) -> None:
    w, srv = world
    sock = starttls(srv, w.dirs["b"], w.dirs["b"] / "ca-cert.pem")
    assert info(sock, "disk-b", p.OPT_GO) == p.REP_ACK
    srv.close_export("disk-b")
    sock.settimeout(3)
    with contextlib.suppress(OSError):  # EOF, or a reset: either way the connection is gone
        assert sock.recv(1) == b""
    assert _wait_no_connections(srv)


@pytest.mark.parametrize(
    ("name", "tls", "fp", "expected"),
    [
        ("plain", False, None, p.REP_ERR_TLS_REQD),  # T1: plaintext only on loopback
        ("plain", True, "a", p.REP_ERR_POLICY),  # ... and a certificate of some attachment grants nothing
        ("disk-a", False, None, p.REP_ERR_TLS_REQD),
        ("disk-a", True, "b", p.REP_ERR_POLICY),
        ("disk-a", True, "a", 0),
    ],
)
def test_lookup_for_a_remote_peer(tmp_path: Path, name: str, tls: bool, fp: str | None, expected: int) -> None:
    w = World(tmp_path)
    srv = NbdServer(host="127.0.0.1", port=0, resolve=w.resolve, tls=w.authority.server_context())
    conn = Connection(srv, socket.socket(), ("192.0.2.7", 40000))
    conn._peer_fingerprint = {"a": w.fp_a, "b": w.fp_b, None: None}[fp]
    found = conn._lookup(name, tls)
    if expected:
        assert found == expected
    else:
        assert isinstance(found, p.ExportInfo)
    conn.sock.close()
