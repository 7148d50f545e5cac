"""NBD over TLS with per-attachment x509 client certificates (docs/design/nbd.md T2), with real clients:
nbdinfo and nbdcopy (libnbd, `nbds://...?tls-certificates=DIR`) and qemu-img (`--object tls-creds-x509`).

Refusals are checked both with the real clients (they must fail) and with a minimal raw client (the exact NBD
reply: NBD_REP_ERR_TLS_REQD over plaintext, NBD_REP_ERR_POLICY with another attachment's certificate, a hang-up
right after the TLS handshake for a detached attachment's certificate).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import stat
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import MIB, Sdk, raw

from blockvault.nbd import protocol as p

pytestmark = pytest.mark.e2e

TOOLS = ("qemu-img", "nbdinfo", "nbdcopy")


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"NBD clients missing: {missing}; run scripts/setup (it installs qemu-utils, libnbd-bin)")


@pytest.fixture(scope="module")
def sdk(server: Any) -> Sdk:
    return Sdk(server)


@pytest.fixture(scope="module")
def compartment(sdk: Sdk) -> str:
    return sdk.new_compartment("nbd-tls")


def run(*cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    return proc


def attach_tls(server: Any, volume_id: str, cert_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = server.bv("volume", "attach", volume_id, "--tls", "--cert-dir", str(cert_dir)).json["data"]
    assert data["transport"] == "tls"
    assert data["uri"] == (
        f"nbds://127.0.0.1:{server.nbd_port}/{data['export-name']}?tls-certificates={cert_dir.resolve()}"
    )
    assert data["certificate-fingerprint"].startswith("SHA256:")
    return data


def qemu_tls(server: Any, export: str, cert_dir: Path) -> list[str]:
    """qemu-img arguments opening `export` over TLS with the credentials in `cert_dir`."""
    return [
        "--object",
        f"tls-creds-x509,id=tls0,dir={cert_dir},endpoint=client",
        "--image-opts",
        f"driver=nbd,host=127.0.0.1,port={server.nbd_port},export={export},tls-creds=tls0",
    ]


def rest_read(server: Any, volume_id: str, offset: int, length: int) -> bytes:
    resp = raw(server, "GET", f"/20160918/volumes/{volume_id}/data", params={"offset": offset, "length": length})
    assert resp.status_code == 200, resp.text
    return resp.content


def test_tls_attachment_real_clients_byte_for_byte(server: Any, sdk: Sdk, compartment: str, tmp_path: Path) -> None:
    volume = sdk.create_volume(compartment, name="nbd-tls")
    certs = tmp_path / "certs"
    att = attach_tls(server, volume.id, certs)
    uri, export = att["uri"], att["export-name"]

    # The CLI wrote the layout qemu and libnbd expect, private to the user.
    assert sorted(f.name for f in certs.iterdir()) == ["ca-cert.pem", "client-cert.pem", "client-key.pem"]
    for f in certs.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # The server never saw the client's key: it is nowhere in its metadata (databases, WAL, retry tokens) or its
    # TLS directory. (Volume data files are big, sparse and encrypted: skipped by size.)
    key_body = b"".join((certs / "client-key.pem").read_bytes().splitlines()[1:-1])
    for f in server.data_dir.rglob("*"):
        if f.is_file() and f.stat().st_size < 32 * MIB:
            assert key_body not in f.read_bytes().replace(b"\n", b""), f
    tls_dir = server.data_dir / "nbd-tls"
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in tls_dir.iterdir()} == {
        "ca-key.pem": 0o600,
        "ca-cert.pem": 0o600,
        "server-key.pem": 0o600,
        "server-cert.pem": 0o600,
    }

    info = run("nbdinfo", uri).stdout
    assert "with TLS" in info
    assert "export-size: 53687091200" in info

    data = os.urandom(3 * MIB + 4096)
    src = tmp_path / "in.img"
    src.write_bytes(data)
    run("nbdcopy", "--flush", str(src), uri)
    assert rest_read(server, volume.id, 0, len(data)) == data

    # qemu-img: info, then convert a second image in at 0 and the volume's first bytes back out.
    qinfo = run("qemu-img", "info", "--output=json", *qemu_tls(server, export, certs)).stdout
    assert '"virtual-size": 53687091200' in qinfo
    second = os.urandom(2 * MIB)
    src2 = tmp_path / "second.img"
    src2.write_bytes(second)
    run(
        "qemu-img",
        "convert",
        "-n",
        "--object",
        f"tls-creds-x509,id=tls0,dir={certs},endpoint=client",
        "-f",
        "raw",
        "--target-image-opts",
        str(src2),
        f"driver=nbd,host=127.0.0.1,port={server.nbd_port},export={export},tls-creds=tls0",
    )
    expected = second + data[len(second) :]
    assert rest_read(server, volume.id, 0, len(expected)) == expected

    out = tmp_path / "out.img"
    run(
        "qemu-img",
        "convert",
        "-O",
        "raw",
        "--object",
        f"tls-creds-x509,id=tls0,dir={certs},endpoint=client",
        "--image-opts",
        f"driver=raw,size={len(expected)},file.driver=nbd,file.host=127.0.0.1,file.port={server.nbd_port},"
        f"file.export={export},file.tls-creds=tls0",
        str(out),
    )
    assert out.read_bytes() == expected

    # nbdcopy out of the volume (the whole 50 GiB, holes are cheap), checked at the front.
    back = tmp_path / "back.img"
    run("nbdcopy", uri, str(back), timeout=300)
    with back.open("rb") as fh:
        assert fh.read(len(expected)) == expected
    assert back.stat().st_size == 50 * 1024 * MIB

    # Listed attachments show the fingerprint, never a key or certificate.
    listed = server.bv("volume", "attachments", volume.id).json["data"]
    assert [a["certificate-fingerprint"] for a in listed] == [att["certificate-fingerprint"]]
    assert "client-certificate" not in listed[0]


def test_another_attachments_certificate_is_refused(server: Any, sdk: Sdk, compartment: str, tmp_path: Path) -> None:
    one = sdk.create_volume(compartment, name="nbd-tls-one")
    two = sdk.create_volume(compartment, name="nbd-tls-two")
    att1 = attach_tls(server, one.id, tmp_path / "one")
    att2 = attach_tls(server, two.id, tmp_path / "two")
    # Both certificates chain to the same CA; each opens only its own export.
    run("nbdinfo", att1["uri"])
    wrong = f"nbds://127.0.0.1:{server.nbd_port}/{att1['export-name']}?tls-certificates={tmp_path / 'two'}"
    proc = run("nbdinfo", wrong, check=False)
    assert proc.returncode != 0
    proc = run("qemu-img", "info", *qemu_tls(server, att1["export-name"], tmp_path / "two"), check=False)
    assert proc.returncode != 0
    with TlsClient(server.nbd_port, tmp_path / "two") as client:
        assert client.info(att1["export-name"]) == p.REP_ERR_POLICY
        assert client.info(att2["export-name"]) == p.REP_ACK

    # A second attachment of the same volume gets a certificate of its own, refused for the first export.
    att3 = attach_tls(server, one.id, tmp_path / "three")
    assert att3["certificate-fingerprint"] != att1["certificate-fingerprint"]
    with TlsClient(server.nbd_port, tmp_path / "three") as client:
        assert client.info(att1["export-name"]) == p.REP_ERR_POLICY
        assert client.info(att3["export-name"]) == p.REP_ACK


def test_plaintext_connection_to_a_tls_export_is_refused(
    server: Any, sdk: Sdk, compartment: str, tmp_path: Path
) -> None:
    volume = sdk.create_volume(compartment, name="nbd-tls-plain")
    att = attach_tls(server, volume.id, tmp_path / "c")
    proc = run("nbdinfo", f"nbd://127.0.0.1:{server.nbd_port}/{att['export-name']}", check=False)
    assert proc.returncode != 0
    proc = run("qemu-img", "info", f"nbd://127.0.0.1:{server.nbd_port}/{att['export-name']}", check=False)
    assert proc.returncode != 0
    sock = _negotiate_plain(server.nbd_port)
    sock.sendall(p.encode_option(p.OPT_GO, p.encode_info_request(att["export-name"])))
    assert _reply(sock)[1] == p.REP_ERR_TLS_REQD
    sock.close()


def test_detach_revokes_the_certificate_and_closes_tls_connections(
    server: Any, sdk: Sdk, compartment: str, tmp_path: Path
) -> None:
    volume = sdk.create_volume(compartment, name="nbd-tls-detach")
    certs = tmp_path / "c"
    att = attach_tls(server, volume.id, certs)
    client = TlsClient(server.nbd_port, certs)
    assert client.info(att["export-name"], p.OPT_GO) == p.REP_ACK
    client.sock.sendall(p.encode_request(p.CMD_WRITE, 1, 0, 4096, data=b"T" * 4096, flags=p.CMD_FLAG_FUA))
    assert struct.unpack(">IIQ", client.exact(16))[1] == 0
    assert rest_read(server, volume.id, 0, 4096) == b"T" * 4096

    server.bv("volume", "detach", volume.id)
    assert client.closed_within(2.0)  # A3: the open TLS connection is hung up
    assert run("nbdinfo", att["uri"], check=False).returncode != 0
    assert run("qemu-img", "info", *qemu_tls(server, att["export-name"], certs), check=False).returncode != 0
    # The certificate still chains to the CA, but it belongs to no attachment any more: the server hangs up
    # right after the TLS handshake, before any option.
    late = TlsClient(server.nbd_port, certs)
    assert late.closed_within(2.0)


# --- minimal clients ----------------------------------------------------------------------------------------------


def _exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def _negotiate_plain(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    _exact(sock, 18)
    sock.sendall(struct.pack(">I", p.FLAG_FIXED_NEWSTYLE | p.FLAG_NO_ZEROES))
    return sock


def _reply(sock: socket.socket) -> tuple[int, int, bytes]:
    """One option reply: (option, reply type, payload)."""
    _magic, option, kind, length = struct.unpack(">QIII", _exact(sock, 20))
    return option, kind, _exact(sock, length)


class TlsClient:
    """Fixed newstyle, STARTTLS with the client certificate in `cert_dir`, then options over TLS."""

    def __init__(self, port: int, cert_dir: Path) -> None:
        raw_sock = _negotiate_plain(port)
        raw_sock.sendall(p.encode_option(p.OPT_STARTTLS))
        assert _reply(raw_sock)[1] == p.REP_ACK
        ctx = ssl.create_default_context(cafile=str(cert_dir / "ca-cert.pem"))
        ctx.load_cert_chain(cert_dir / "client-cert.pem", cert_dir / "client-key.pem")
        self.sock = ctx.wrap_socket(raw_sock, server_hostname="127.0.0.1")

    def __enter__(self) -> TlsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def exact(self, n: int) -> bytes:
        return _exact(self.sock, n)

    def info(self, export: str, option: int = p.OPT_INFO) -> int:
        """NBD_OPT_INFO (or GO, which ends negotiation when acknowledged) for `export`: the final reply type."""
        self.sock.sendall(p.encode_option(option, p.encode_info_request(export)))
        while True:
            _option, kind, _payload = _reply(self.sock)
            if kind == p.REP_ACK or kind & (1 << 31):
                return kind

    def closed_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except OSError:
            return True
