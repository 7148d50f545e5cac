"""The NBD data path's allocation-free variants agree with the plain ones: zero-copy request parsing, the store's
read_into, group-committed FUA writes (one flush for a batch, replies only after it), queued replies, and the
per-batch store lease (re-validated when the generation moves, nbd.md K1/K3)."""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockvault.errors import KeyUnusable
from blockvault.nbd import protocol as p
from blockvault.nbd import server as server_mod
from blockvault.nbd.export import VolumeExport
from blockvault.nbd.server import NbdServer, Target
from blockvault.store.volume import UNIT_SIZE, VolumeStore


class FlushCountingExport:
    """A 1 MiB in-memory export that counts flushes (FUA counts as one)."""

    def __init__(self) -> None:
        self.data = bytearray(1 << 20)
        self.flushes = 0

    def size(self) -> int:
        return len(self.data)

    def read_only(self) -> bool:
        return False

    def pread(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset : offset + length])

    def pwrite(self, offset: int, data: bytes | memoryview, *, fua: bool) -> None:
        self.data[offset : offset + len(data)] = data
        self.flushes += fua

    def trim(self, offset: int, length: int, *, fua: bool) -> None:
        self.flushes += fua

    def zero(self, offset: int, length: int, *, fua: bool, fast: bool) -> bool:
        self.data[offset : offset + length] = bytes(length)
        self.flushes += fua
        return True

    def flush(self) -> None:
        self.flushes += 1

    def cache(self, offset: int, length: int) -> None:
        pass

    def extents(self, offset: int, length: int) -> list[tuple[int, bool]]:
        return [(length, False)]

    def close(self) -> None:
        pass


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def connect(server: NbdServer) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=5)
    recv_exact(sock, 18)
    sock.sendall(struct.pack(">I", 3))
    sock.sendall(p.encode_option(p.OPT_GO, p.encode_info_request("disk")))
    while True:
        _magic, _opt, kind, length = struct.unpack(">QIII", recv_exact(sock, 20))
        recv_exact(sock, length)
        if kind == p.REP_ACK:
            return sock
        assert not kind & (1 << 31)


writes = st.builds(
    lambda c, o, d, f: p.encode_request(p.CMD_WRITE, c, o, len(d), flags=f) + d,
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**40),
    st.binary(max_size=300),
    st.sampled_from([0, p.CMD_FLAG_FUA]),
)
others = st.builds(
    lambda c, o: p.encode_request(p.CMD_READ, c, o, 512), st.integers(0, 2**64 - 1), st.integers(0, 2**40)
)


@given(reqs=st.lists(st.one_of(writes, others), max_size=8), cut=st.integers(min_value=0))
@settings(max_examples=200)
def test_parse_requests_matches_the_buffering_parser(reqs: list[bytes], cut: int) -> None:
    stream = b"".join(reqs)
    expected = p.RequestParser().feed(stream)
    parsed, consumed, need = p.parse_requests(memoryview(stream))
    assert parsed == expected
    assert consumed == len(stream)
    assert need == p.REQUEST_SIZE
    # A prefix: complete requests only, and `need` is the size of the next one once its header is in.
    cut %= len(stream) + 1
    head, used, need = p.parse_requests(memoryview(stream)[:cut])
    assert head == expected[: len(head)]
    if used < len(stream):
        nxt = expected[len(head)]
        if cut - used >= p.REQUEST_SIZE:
            assert need == p.REQUEST_SIZE + nxt.length
        else:
            assert need == p.REQUEST_SIZE


def test_read_into_matches_read(tmp_path: Path) -> None:
    rng = random.Random(5)
    size = 12 * UNIT_SIZE + 777
    store = VolumeStore.create(tmp_path / "v", volume_id="ocid1.volume.t", size_bytes=size, dek=b"d" * 32)
    model = bytearray(size)
    try:
        for step in range(300):
            offset = rng.randrange(size)
            length = rng.randrange(min(size - offset, 3 * UNIT_SIZE) + 1)
            if step % 3 == 0:
                data = os.urandom(length)
                store.write(offset, data, fua=step % 30 == 0)
                model[offset : offset + length] = data
            else:
                out = bytearray(length + 2)
                store.read_into(offset, memoryview(out)[1 : 1 + length])
                assert out[1 : 1 + length] == model[offset : offset + length]
                assert store.read(offset, length) == model[offset : offset + length]
    finally:
        store.close()


def test_fua_writes_of_one_batch_share_one_flush() -> None:
    export = FlushCountingExport()
    srv = NbdServer(host="127.0.0.1", port=0, resolve=lambda name: Target("plain", lambda: export))
    srv.start()
    try:
        sock = connect(srv)
        batch = b"".join(
            p.encode_request(p.CMD_WRITE, cookie, cookie * 4096, 4096, flags=p.CMD_FLAG_FUA) + bytes([cookie]) * 4096
            for cookie in range(1, 9)
        )
        sock.sendall(batch)
        cookies = set()
        for _ in range(8):
            magic, error, cookie = struct.unpack(">IIQ", recv_exact(sock, 16))
            assert magic == p.SIMPLE_REPLY_MAGIC
            assert error == 0
            cookies.add(cookie)
        assert cookies == set(range(1, 9))
        assert 1 <= export.flushes < 8  # durable before any reply, with fewer flushes than writes
        assert export.data[4096 * 8] == 8
        sock.sendall(p.encode_request(p.CMD_DISC, 0, 0, 0))
        sock.shutdown(socket.SHUT_WR)
    finally:
        srv.stop()


def group(wait: server_mod.GroupWait, held: int, *, gained: bool) -> int:
    """One group as the server runs it: ask for the wait (twice: the decision holds for the group), report."""
    chosen = wait.wait_ms(held)
    assert wait.wait_ms(held) == chosen
    if chosen and gained:
        wait.arrived()
    wait.flushed(held)
    return chosen


def test_group_wait_stops_waiting_for_a_client_whose_window_is_full() -> None:
    """F1: qemu (16 requests in flight at most) gains nothing by a wait; after one such group the groups flush at
    once, and every PROBE_GROUPS-th group waits again."""
    wait = server_mod.GroupWait()
    ms, probe = server_mod.GROUP_WAIT_MS, server_mod.PROBE_GROUPS
    assert group(wait, 16, gained=False) == ms  # waits at first
    chosen = [group(wait, 16, gained=False) for _ in range(3 * probe)]
    assert chosen == ([0] * (probe - 1) + [ms]) * 3


def test_group_wait_keeps_waiting_while_waits_bring_requests() -> None:
    wait = server_mod.GroupWait()
    ms = server_mod.GROUP_WAIT_MS
    assert [group(wait, 2, gained=True) for _ in range(40)] == [ms] * 40
    assert group(wait, 2, gained=False) == ms  # this wait brought nothing ...
    assert group(wait, 2, gained=True) == 0  # ... so the next group does not wait (nothing to gain from)
    probes = [group(wait, 2, gained=True) for _ in range(server_mod.PROBE_GROUPS - 1)]
    assert probes == [0] * (server_mod.PROBE_GROUPS - 2) + [ms]  # the probe, PROBE_GROUPS after the last wait, gains
    assert group(wait, 2, gained=False) == ms  # ... so waiting resumes


def test_group_wait_never_waits_with_one_request_in_flight() -> None:
    wait = server_mod.GroupWait()
    assert [group(wait, 1, gained=False) for _ in range(3 * server_mod.PROBE_GROUPS)] == [0] * 48
    wait.flushed(5)
    assert wait.wait_ms(1) == server_mod.GROUP_WAIT_MS  # after a group of 5, a lone request may have company


def test_the_server_reports_every_group_to_its_group_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """F1 wiring: bytes that arrive during a wait are reported (`arrived`), and every group flush is reported with
    its size, including the one a FLUSH forces."""
    events: list[tuple[object, ...]] = []

    class Spy(server_mod.GroupWait):
        def wait_ms(self, held: int) -> int:
            chosen = 5000 if not events else 0  # the first wait is long: the client's next write lands in it
            events.append(("wait", held, chosen))
            return chosen

        def arrived(self) -> None:
            events.append(("arrived",))
            super().arrived()

        def flushed(self, size: int) -> None:
            events.append(("flushed", size))
            super().flushed(size)

    monkeypatch.setattr(server_mod, "GroupWait", Spy)
    export = FlushCountingExport()
    srv = NbdServer(host="127.0.0.1", port=0, resolve=lambda name: Target("plain", lambda: export))
    srv.start()
    try:
        sock = connect(srv)

        def fua_write(cookie: int) -> bytes:
            return p.encode_request(p.CMD_WRITE, cookie, cookie * 4096, 4096, flags=p.CMD_FLAG_FUA) + bytes(4096)

        sock.sendall(fua_write(1) + fua_write(2))
        time.sleep(0.2)  # far inside the first wait
        sock.sendall(fua_write(3))
        replies = {struct.unpack(">IIQ", recv_exact(sock, 16))[2] for _ in range(3)}
        sock.sendall(fua_write(4) + p.encode_request(p.CMD_FLUSH, 5, 0, 0))
        replies |= {struct.unpack(">IIQ", recv_exact(sock, 16))[2] for _ in range(2)}
        assert replies == {1, 2, 3, 4, 5}
        assert ("arrived",) in events
        flushed = [event[1] for event in events if event[0] == "flushed"]
        assert sum(flushed) == 4  # every held FUA write went through a reported group
        assert flushed[-1] == 1  # the group the FLUSH forced
        sock.sendall(p.encode_request(p.CMD_DISC, 0, 0, 0))
        sock.shutdown(socket.SHUT_WR)
    finally:
        srv.stop()


def test_replies_to_one_receive_leave_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """16 pipelined READs sent at once are answered with fewer sendmsg calls than replies (reply queueing)."""
    sends: list[int] = []
    real_send = server_mod._send

    def counting(
        conn: socket.socket, pieces: Sequence[bytes | memoryview], before_blocking: Callable[[], None]
    ) -> None:
        sends.append(len(pieces))
        real_send(conn, pieces, before_blocking)

    monkeypatch.setattr(server_mod, "_send", counting)
    export = FlushCountingExport()
    export.data[:] = bytes(range(256)) * 4096
    srv = NbdServer(host="127.0.0.1", port=0, resolve=lambda name: Target("plain", lambda: export))
    srv.start()
    try:
        sock = connect(srv)
        sends.clear()
        sock.sendall(b"".join(p.encode_request(p.CMD_READ, c, c * 4096, 4096) for c in range(16)))
        for _ in range(16):
            magic, error, cookie = struct.unpack(">IIQ", recv_exact(sock, 16))
            assert (magic, error) == (p.SIMPLE_REPLY_MAGIC, 0)
            assert recv_exact(sock, 4096) == export.data[cookie * 4096 : cookie * 4096 + 4096]
        assert 1 <= len(sends) < 16
        sock.sendall(p.encode_request(p.CMD_DISC, 0, 0, 0))
    finally:
        srv.stop()


class FakeStore:
    def __init__(self, name: str) -> None:
        self.name = name

    def read_into(self, offset: int, out: memoryview) -> None:
        out[:] = self.name.encode()[:1] * len(out)

    def write(self, offset: int, data: bytes | memoryview, *, fua: bool = False) -> None:
        pass

    def flush(self) -> None:
        pass


class FakeSession:
    """A DataSession double: counts leases, and its check fails while `usable` is False (a disabled key)."""

    size = 1 << 20
    read_only = False

    def __init__(self) -> None:
        self.leases = 0
        self.open = 0
        self.usable = True
        self.volume = SimpleNamespace(clone_snapshot=None)

    @contextmanager
    def store(self) -> Iterator[FakeStore]:
        if not self.usable:
            raise KeyUnusable(key_id="k", state="DISABLED")
        self.leases += 1
        self.open += 1
        try:
            yield FakeStore(f"{self.leases}")
        finally:
            self.open -= 1

    def read_into(self, offset: int, out: memoryview) -> None:
        with self.store() as store:
            store.read_into(offset, out)


def test_batch_shares_one_lease_until_the_generation_moves() -> None:
    session = FakeSession()
    generation = [7]
    export = VolumeExport(session, lambda: generation[0])  # type: ignore[arg-type]
    out = memoryview(bytearray(8))
    with export.batch():
        for _ in range(5):
            export.pread_into(0, out)
        assert (session.leases, session.open) == (1, 1)
        generation[0] += 1  # a key state change: the next request re-validates through the session
        session.usable = False
        with pytest.raises(KeyUnusable):
            export.pread_into(0, out)
        assert session.open == 0  # the old lease was returned before the re-check
        session.usable = True
        export.pread_into(0, out)
        assert bytes(out) == b"2" * 8
        assert session.open == 1
        export.idle()  # before a send that may block: no lease held
        assert session.open == 0
        export.pread_into(0, out)
    assert session.open == 0  # the batch's end returns the lease
    export.pread_into(0, out)  # outside a batch: one lease per request, as before
    assert (session.leases, session.open) == (4, 0)
