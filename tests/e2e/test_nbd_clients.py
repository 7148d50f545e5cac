"""NBD attach with real clients: qemu-img, qemu-io, nbdinfo, nbdcopy (scripts/setup installs them; CI never
skips these). Data is checked byte for byte, also through the REST data API.

The open-connection key-state test drives the protocol with a minimal raw-socket client (a real client would
retry or give up on EIO in its own way; we want the exact reply and its timing).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import MIB, Sdk, e2e_conftest, raw, wait_for

from blockvault.nbd import protocol as p

pytestmark = pytest.mark.e2e

TOOLS = ("qemu-img", "qemu-io", "nbdinfo", "nbdcopy")


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"NBD clients missing: {missing}; run scripts/setup (it installs qemu-utils, libnbd-bin)")


def run(*cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    return proc


def attach(server: Any, volume_id: str) -> dict[str, Any]:
    data: dict[str, Any] = server.bv("volume", "attach", volume_id).json["data"]
    assert data["uri"] == f"nbd://127.0.0.1:{server.nbd_port}/{data['export-name']}"
    return data


def rest_read(server: Any, volume_id: str, offset: int, length: int) -> bytes:
    resp = raw(server, "GET", f"/20160918/volumes/{volume_id}/data", params={"offset": offset, "length": length})
    assert resp.status_code == 200, resp.text
    return resp.content


@pytest.fixture(scope="module")
def sdk(server: Any) -> Sdk:
    return Sdk(server)


@pytest.fixture(scope="module")
def compartment(sdk: Sdk) -> str:
    return sdk.new_compartment("nbd")


def test_real_clients_read_and_write_byte_for_byte(server: Any, sdk: Sdk, compartment: str, tmp_path: Path) -> None:
    volume = sdk.create_volume(compartment, name="nbd-clients")
    uri = attach(server, volume.id)["uri"]
    info = run("qemu-img", "info", "--output=json", uri).stdout
    assert '"virtual-size": 53687091200' in info

    image = tmp_path / "in.img"
    data = os.urandom(3 * MIB + 4096)
    image.write_bytes(data)
    run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(image), uri)
    assert rest_read(server, volume.id, 0, len(data)) == data

    out = tmp_path / "out.img"
    run(
        "qemu-img",
        "convert",
        "-O",
        "raw",
        "--image-opts",
        f"driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,"
        f"file.server.port={server.nbd_port},file.export={uri.rsplit('/', 1)[1]},size={len(data)}",
        str(out),
    )
    assert out.read_bytes() == data

    # nbdcopy both ways, at an offset region: write a file into the volume, read the volume back.
    second = os.urandom(2 * MIB)
    src = tmp_path / "second.img"
    src.write_bytes(second)
    run("nbdcopy", "--flush", str(src), uri)  # writes from offset 0
    assert rest_read(server, volume.id, 0, len(second)) == second
    back = tmp_path / "back.img"
    run("nbdcopy", uri, str(back), timeout=300)
    with back.open("rb") as fh:
        assert fh.read(len(second)) == second
        fh.seek(len(second))
        assert fh.read(len(data) - len(second)) == data[len(second) :]
    assert back.stat().st_size == 50 * 1024 * MIB

    mapped = run("nbdinfo", "--map", uri).stdout.split("\n")
    first = mapped[0].split()
    assert first[:2] == ["0", str(3 * MIB + 64 * 1024)], mapped[:3]
    assert first[-1] == "data", mapped[:3]
    assert "hole,zero" in mapped[1]

    # qemu-io random writes and pattern-verified reads, then the same bytes through REST.
    cmds = []
    for i, off in enumerate((5 * MIB, 7 * MIB + 4096, 40 * MIB + 512, 9 * MIB - 4096)):
        cmds += ["-c", f"write -P {0x10 + i} {off} 4k", "-c", f"read -P {0x10 + i} {off} 4k"]
    run("qemu-io", "-f", "raw", *cmds, "-c", "flush", uri)
    assert rest_read(server, volume.id, 7 * MIB + 4096, 4096) == bytes([0x11]) * 4096
    run("qemu-io", "-f", "raw", "-c", f"read -P 0x13 {9 * MIB - 4096} 4k", "-c", "read -P 0 9M 4k", uri)


def test_attached_volume_cannot_be_deleted_and_detach_closes_connections(
    server: Any, sdk: Sdk, compartment: str
) -> None:
    volume = sdk.create_volume(compartment, name="nbd-detach")
    att = attach(server, volume.id)
    listed = server.bv("volume", "attachments", volume.id).json["data"]
    assert [a["lifecycle-state"] for a in listed] == ["ATTACHED"]
    resp = raw(server, "DELETE", f"/20160918/volumes/{volume.id}")
    assert resp.status_code == 409
    assert resp.json()["code"] == "Conflict"

    sock = RawClient(server.nbd_port, att["export-name"])
    assert sock.request(p.CMD_FLUSH) == 0
    server.bv("volume", "detach", volume.id)
    assert sock.closed_within(2.0)
    refused = run("nbdinfo", att["uri"], check=False)
    assert refused.returncode != 0
    sdk.delete_volume(volume.id)


def test_unknown_export_is_refused(server: Any) -> None:
    proc = run("nbdinfo", f"nbd://127.0.0.1:{server.nbd_port}/not-an-attachment", check=False)
    assert proc.returncode != 0


def test_disabled_key_fails_io_on_open_connection_within_1s_and_reenable_resumes(
    server: Any, sdk: Sdk, compartment: str
) -> None:
    vault = sdk.new_vault(compartment, "nbd-vault")
    key = sdk.new_key(vault, compartment, "nbd-key")
    volume = sdk.create_volume(compartment, name="nbd-key", kms_key_id=key.id)
    att = attach(server, volume.id)
    client = RawClient(server.nbd_port, att["export-name"])
    assert client.request(p.CMD_WRITE, 0, b"A" * 4096, flags=p.CMD_FLAG_FUA) == 0
    sdk.mgmt(vault).disable_key(key.id)
    started = time.monotonic()
    while True:
        err = client.request(p.CMD_READ, 0, length=4096)
        if err == p.EIO:
            break
        assert time.monotonic() - started < 1.0, "I/O still succeeds 1 s after the key was disabled"
    assert client.request(p.CMD_WRITE, 4096, b"B" * 4096) == p.EIO
    sdk.enable_key(vault, key.id)
    # Same connection: I/O works again, nothing lost.
    err, data = client.read(0, 4096)
    assert (err, data) == (0, b"A" * 4096)
    assert client.request(p.CMD_WRITE, 4096, b"C" * 4096, flags=p.CMD_FLAG_FUA) == 0
    assert rest_read(server, volume.id, 0, 8192) == b"A" * 4096 + b"C" * 4096


def test_flushed_writes_survive_sigkill(tmp_path: Path) -> None:
    conf = e2e_conftest()
    srv = conf.start_server(tmp_path / "data")
    try:
        sdk = Sdk(srv)
        volume = sdk.create_volume(srv.tenancy, name="nbd-crash")
        att = attach(srv, volume.id)
        data = os.urandom(4 * MIB)
        image = tmp_path / "d.img"
        image.write_bytes(data)
        run("nbdcopy", "--flush", str(image), att["uri"])
        run("qemu-io", "-f", "raw", "-c", "write -f -P 0x5a 8M 64k", att["uri"])  # FUA write
        conf.stop_server(srv, kill=True)
        srv = conf.start_server(tmp_path / "data", port=srv.port, nbd_port=srv.nbd_port)
        assert rest_read(srv, volume.id, 0, len(data)) == data
        assert rest_read(srv, volume.id, 8 * MIB, 64 * 1024) == b"\x5a" * 64 * 1024
        run("qemu-io", "-f", "raw", "-c", "read -P 0x5a 8M 64k", att["uri"])  # the attachment survived too
    finally:
        conf.stop_server(srv)


def test_sigkill_during_multi_conn_writes_tears_no_unit(tmp_path: Path) -> None:
    """nbdcopy writes over 4 connections at once (whole units sealed outside the store lock, nbd.md M1) while a
    fifth connection FLUSHes in a loop, and the server is killed mid-copy: after a restart every 64 KiB unit reads
    whole, as before the copy or as the copy wrote it, with no integrity error (F3); units flushed are there."""
    conf = e2e_conftest()
    srv = conf.start_server(tmp_path / "data")
    try:
        volume = Sdk(srv).create_volume(srv.tenancy, name="nbd-crash-multi")
        att = attach(srv, volume.id)
        size, unit = 256 * MIB, 64 * 1024
        old, new = os.urandom(size), os.urandom(size)
        (tmp_path / "old.img").write_bytes(old)
        (tmp_path / "new.img").write_bytes(new)
        run("nbdcopy", "--flush", str(tmp_path / "old.img"), att["uri"])
        flusher = RawClient(srv.nbd_port, att["export-name"])
        flushes = 0
        copy = subprocess.Popen(
            ["nbdcopy", "--connections=4", "--request-size=1048576", str(tmp_path / "new.img"), att["uri"]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 0.15  # ~a third of the copy here: some of it becomes durable, not all
        while time.monotonic() < deadline and copy.poll() is None:
            assert flusher.request(p.CMD_FLUSH) == 0
            flushes += 1
            time.sleep(0.01)
        mid_copy = copy.poll() is None
        conf.stop_server(srv, kill=True)
        copy.wait(timeout=60)
        srv = conf.start_server(tmp_path / "data", port=srv.port, nbd_port=srv.nbd_port)
        run("nbdcopy", att["uri"], str(tmp_path / "after.img"))  # an integrity error would fail the copy (EIO)
        with (tmp_path / "after.img").open("rb") as fh:  # the 50 GB volume, sparse: its first 257 MiB
            after = fh.read(size + MIB)
        fresh = 0
        for at in range(0, size, unit):
            piece = after[at : at + unit]
            assert piece in (old[at : at + unit], new[at : at + unit]), f"unit at {at} is torn"
            fresh += piece == new[at : at + unit]
        assert after[size:] == bytes(MIB)  # nothing past what was written
        if mid_copy:  # killed while nbdcopy ran: a part of the copy was flushed, a part was not
            assert 0 < fresh < size // unit, (fresh, flushes)
    finally:
        conf.stop_server(srv)


def _store_is_open(srv: Any, volume: Any) -> bool:
    """Whether some process holds the volume's store open: VolumeStore.open takes an exclusive flock on its data
    file, so a second one fails (a probe from outside the server, without sending it a request)."""
    ad = volume.availability_domain.split(":")[-1]
    data = srv.data_dir / "regions" / "us-ashburn-1" / "ads" / ad / "volumes" / volume.id / "data"
    with data.open("rb") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def test_a_restart_opens_attached_volumes_before_their_first_request(tmp_path: Path) -> None:
    """After a restart the server opens the store of every attached volume in the background, so a client that
    reconnects does not wait for the open in its first request. Volumes without an attachment stay closed, and an
    attached volume whose key is disabled is skipped: the server starts, and a client of that volume is refused
    as before (D1), while the others are served."""
    conf = e2e_conftest()
    srv = conf.start_server(tmp_path / "data")
    try:
        sdk = Sdk(srv)
        vault = sdk.new_vault(srv.tenancy, "open-vault")
        key = sdk.new_key(vault, srv.tenancy, "open-key")
        attached = sdk.create_volume(srv.tenancy, name="attached")
        idle = sdk.create_volume(srv.tenancy, name="not-attached")
        locked = sdk.create_volume(srv.tenancy, name="attached-key-disabled", kms_key_id=key.id)
        locked_att = attach(srv, locked.id)  # first: opening it fails, and those after it must still open
        att = attach(srv, attached.id)
        run("qemu-io", "-f", "raw", "-c", "write -P 0x3c 0 64k", att["uri"])
        sdk.disable_key(vault, key.id)
        conf.stop_server(srv)
        assert not _store_is_open(srv, attached)  # nothing holds it while the server is down
        srv = conf.start_server(tmp_path / "data", port=srv.port, nbd_port=srv.nbd_port)
        wait_for(lambda: _store_is_open(srv, attached), bool, timeout=30, what="the attached volume's store to open")
        assert not _store_is_open(srv, idle)
        assert not _store_is_open(srv, locked)
        run("qemu-io", "-f", "raw", "-c", "read -P 0x3c 0 64k", att["uri"])
        refused = run("qemu-io", "-f", "raw", "-c", "read 0 4k", locked_att["uri"], check=False)
        assert refused.returncode != 0
        assert "Denied by server" in refused.stderr, refused
    finally:
        conf.stop_server(srv)


class RawClient:
    """Minimal NBD client over a socket: fixed newstyle, GO, simple replies."""

    def __init__(self, port: int, export: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._exact(18)
        self.sock.sendall(struct.pack(">I", 3) + p.encode_option(p.OPT_GO, p.encode_info_request(export)))
        while True:
            _m, _o, kind, length = struct.unpack(">QIII", self._exact(20))
            self._exact(length)
            if kind == p.REP_ACK:
                break
            assert not kind & (1 << 31), f"option refused: {kind:#x}"
        self.cookie = 0

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def request(self, command: int, offset: int = 0, data: bytes = b"", *, length: int = 0, flags: int = 0) -> int:
        return self._do(command, offset, data, length, flags)[0]

    def read(self, offset: int, length: int) -> tuple[int, bytes]:
        return self._do(p.CMD_READ, offset, b"", length, 0)

    def _do(self, command: int, offset: int, data: bytes, length: int, flags: int) -> tuple[int, bytes]:
        self.cookie += 1
        self.sock.sendall(p.encode_request(command, self.cookie, offset, len(data) or length, flags=flags, data=data))
        _magic, error, cookie = struct.unpack(">IIQ", self._exact(16))
        assert cookie == self.cookie
        body = self._exact(length) if command == p.CMD_READ and not error else b""
        return error, body

    def closed_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except OSError:
            return True
