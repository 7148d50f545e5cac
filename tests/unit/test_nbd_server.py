"""The NBD server glue over in-memory and fault-injecting Exports (no blockstorage), via raw sockets."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence

import pytest

from blockvault.errors import IntegrityError, InvalidArgument, KeyUnusable, NotFound
from blockvault.nbd import protocol as p
from blockvault.nbd.export import errno_of
from blockvault.nbd.server import NbdServer, Target

SIZE = 4 << 20


class MemoryExport:
    def __init__(self) -> None:
        self.data = bytearray(SIZE)
        self.flushes = 0
        self.fail: BaseException | None = None

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail

    def size(self) -> int:
        return SIZE

    def read_only(self) -> bool:
        return False

    def pread(self, offset: int, length: int) -> bytes:
        self._maybe_fail()
        return bytes(self.data[offset : offset + length])

    def pwrite(self, offset: int, data: bytes | memoryview, *, fua: bool) -> None:
        self._maybe_fail()
        self.data[offset : offset + len(data)] = data
        self.flushes += fua

    def trim(self, offset: int, length: int, *, fua: bool) -> None:
        self._maybe_fail()

    def zero(self, offset: int, length: int, *, fua: bool, fast: bool) -> bool:
        self._maybe_fail()
        if fast:
            return False
        self.data[offset : offset + length] = bytes(length)
        return True

    def flush(self) -> None:
        self._maybe_fail()
        self.flushes += 1

    def cache(self, offset: int, length: int) -> None:
        self._maybe_fail()

    def extents(self, offset: int, length: int) -> Sequence[tuple[int, bool]]:
        return [(length, not any(self.data[offset : offset + length]))]

    def close(self) -> None:
        pass


@pytest.fixture
def export() -> MemoryExport:
    return MemoryExport()


@pytest.fixture
def server(export: MemoryExport) -> Iterator[NbdServer]:
    srv = NbdServer(
        host="127.0.0.1",
        port=0,
        resolve=lambda name: Target("plain", lambda: export) if name == "disk" else None,
    )
    srv.start()
    yield srv
    srv.stop()


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def option_replies(sock: socket.socket) -> list[tuple[int, bytes]]:
    out = []
    while True:
        _magic, _opt, kind, length = struct.unpack(">QIII", recv_exact(sock, 20))
        out.append((kind, recv_exact(sock, length)))
        if kind == p.REP_ACK or kind & (1 << 31):
            return out


def connect(server: NbdServer, name: str = "disk", *, structured: bool = False) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=5)
    recv_exact(sock, 18)
    sock.sendall(struct.pack(">I", 3))
    if structured:
        sock.sendall(p.encode_option(p.OPT_STRUCTURED_REPLY))
        assert option_replies(sock)[-1][0] == p.REP_ACK
        sock.sendall(p.encode_option(p.OPT_SET_META_CONTEXT, p.encode_meta_request(name, ["base:allocation"])))
        option_replies(sock)
    sock.sendall(p.encode_option(p.OPT_GO, p.encode_info_request(name)))
    replies = option_replies(sock)
    if replies[-1][0] != p.REP_ACK:
        raise ConnectionRefusedError(replies[-1][0])
    return sock


def simple(sock: socket.socket, data_len: int = 0) -> tuple[int, int, bytes]:
    magic, error, cookie = struct.unpack(">IIQ", recv_exact(sock, 16))
    assert magic == p.SIMPLE_REPLY_MAGIC
    return error, cookie, recv_exact(sock, data_len) if data_len and not error else b""


def test_write_read_flush_round_trip(server: NbdServer, export: MemoryExport) -> None:
    sock = connect(server)
    sock.sendall(p.encode_request(p.CMD_WRITE, 1, 4096, 5, data=b"hello", flags=p.CMD_FLAG_FUA))
    sock.sendall(p.encode_request(p.CMD_READ, 2, 4094, 9))
    sock.sendall(p.encode_request(p.CMD_FLUSH, 3, 0, 0))
    assert simple(sock) == (0, 1, b"")
    assert simple(sock, 9) == (0, 2, b"\x00\x00hello\x00\x00")
    assert simple(sock) == (0, 3, b"")
    assert export.flushes == 2
    sock.sendall(p.encode_request(p.CMD_DISC, 4, 0, 0))
    assert sock.recv(1) == b""


def test_unknown_export_is_refused(server: NbdServer) -> None:
    with pytest.raises(ConnectionRefusedError) as info:
        connect(server, "guess")
    assert info.value.args[0] == p.REP_ERR_UNKNOWN


def test_out_of_range_and_fast_zero_errors(server: NbdServer) -> None:
    sock = connect(server)
    sock.sendall(p.encode_request(p.CMD_READ, 1, SIZE - 1, 2))
    sock.sendall(p.encode_request(p.CMD_WRITE, 2, SIZE, 1, data=b"x"))
    sock.sendall(p.encode_request(p.CMD_WRITE_ZEROES, 3, 0, 4096, flags=p.CMD_FLAG_FAST_ZERO))
    sock.sendall(p.encode_request(p.CMD_WRITE_ZEROES, 4, 0, 4096))
    assert [simple(sock)[0] for _ in range(4)] == [p.EINVAL, p.ENOSPC, p.ENOTSUP, 0]


def test_export_failures_become_errno_and_the_connection_survives(server: NbdServer, export: MemoryExport) -> None:
    sock = connect(server)
    export.fail = KeyUnusable(key_id="k", state="DISABLED")
    sock.sendall(p.encode_request(p.CMD_READ, 1, 0, 512))
    assert simple(sock)[0] == p.EIO
    export.fail = None
    sock.sendall(p.encode_request(p.CMD_READ, 2, 0, 512))
    assert simple(sock, 512) == (0, 2, bytes(512))


def test_structured_read_holes_and_block_status(server: NbdServer, export: MemoryExport) -> None:
    export.data[0:3] = b"abc"
    sock = connect(server, structured=True)
    sock.sendall(p.encode_request(p.CMD_READ, 9, 0, 65536 * 2))
    got = bytearray(65536 * 2)
    kinds = []
    while True:
        _magic, flags, kind, _cookie, length = struct.unpack(">IHHQI", recv_exact(sock, 20))
        body = recv_exact(sock, length)
        kinds.append(kind)
        if kind == p.REPLY_TYPE_OFFSET_DATA:
            (offset,) = struct.unpack_from(">Q", body)
            got[offset : offset + length - 8] = body[8:]
        if flags & p.REPLY_FLAG_DONE:
            break
    assert kinds == [p.REPLY_TYPE_OFFSET_DATA, p.REPLY_TYPE_OFFSET_HOLE]
    assert bytes(got[:3]) == b"abc"
    sock.sendall(p.encode_request(p.CMD_BLOCK_STATUS, 10, 65536, 65536))
    _magic, flags, kind, _cookie, length = struct.unpack(">IHHQI", recv_exact(sock, 20))
    assert kind == p.REPLY_TYPE_BLOCK_STATUS
    assert struct.unpack(">III", recv_exact(sock, length)) == (1, 65536, p.STATE_HOLE | p.STATE_ZERO)


def test_broken_client_is_dropped_and_others_keep_working(server: NbdServer) -> None:
    bad = connect(server)
    good = connect(server)
    bad.sendall(b"\xff" * 28)
    assert bad.recv(1) == b""
    good.sendall(p.encode_request(p.CMD_FLUSH, 1, 0, 0))
    assert simple(good)[0] == 0


def test_close_export_hangs_up_its_connections(server: NbdServer) -> None:
    sock = connect(server)
    server.close_export("disk")
    assert sock.recv(1) == b""


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (KeyUnusable(key_id="k", state="DISABLED"), p.EIO),
        (IntegrityError(what="unit 3"), p.EIO),
        (InvalidArgument(field="offset", reason="x"), p.EINVAL),
        (NotFound(kind="export", ident="x"), p.ESHUTDOWN),
        (MemoryError(), p.ENOMEM),
        (RuntimeError("bug"), p.EIO),
    ],
)
def test_errno_table(exc: BaseException, code: int) -> None:
    assert errno_of(exc) == code
