"""The peer transport end to end over a real loopback HTTP server, on a small Protocol of its own: generated proxies
call the serving side's implementation, handles stay on the server and are reopened when the server forgot them,
domain errors keep their class, and a peer that is down is a retryable `Unavailable`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from blockvault.clock import SystemClock
from blockvault.errors import KeyUnusable, Unavailable
from blockvault.peer import identity as service_identity
from blockvault.peer import routes as peer_routes
from blockvault.peer.client import PeerTransport, PeerUnavailable, make_proxy
from blockvault.peer.registry import PeerRegistry


@dataclass(frozen=True)
class Shape:
    name: str
    sizes: tuple[int, ...]


class Stream(Protocol):
    @property
    def shape(self) -> Shape: ...

    def read(self, index: int) -> bytes: ...

    def close(self) -> None: ...


class Store(Protocol):
    @property
    def region(self) -> str: ...

    def add(self, a: int, b: int = 0) -> int: ...

    def describe(self, value: Any) -> Any: ...

    def locked(self, key_id: str) -> None: ...

    def open(self, name: str) -> Stream: ...


class LocalStream:
    def __init__(self, name: str, log: list[str]) -> None:
        self.shape = Shape(name, (1, 2, 3))
        self._log = log
        self.closed = False

    def read(self, index: int) -> bytes:
        return bytes([index]) * 4

    def close(self) -> None:
        self.closed = True
        self._log.append("close")


class LocalStore:
    def __init__(self, log: list[str]) -> None:
        self._log = log
        self.streams: list[LocalStream] = []

    def add(self, a: int, b: int = 0) -> int:
        return a + b

    def describe(self, value: Any) -> Any:
        return {"type": type(value).__name__, "value": value}

    def locked(self, key_id: str) -> None:
        raise KeyUnusable(key_id=key_id, state="DISABLED")

    def open(self, name: str) -> LocalStream:
        self._log.append(f"open {name}")
        stream = LocalStream(name, self._log)
        self.streams.append(stream)
        return stream

    def _secret(self) -> str:
        return "never over the wire"


@dataclass
class Peer:
    registry: PeerRegistry
    store: LocalStore
    log: list[str]
    handles: peer_routes.HandleTable
    identity: service_identity.ServiceIdentity
    base: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    log: list[str] = []
    store = LocalStore(log)
    registry = PeerRegistry()
    registry.register_types(classes=[Shape])
    registry.register("store", Store, local=lambda app, region, request: store)
    registry.register("stream", Stream)
    identity = service_identity.load_or_create(tmp_path_factory.mktemp("svc"), "ocid1.tenancy.oc1..aaaaaaaatest")
    handles = peer_routes.HandleTable()
    app = Starlette(routes=[Mount("/r1", routes=peer_routes.routes())])
    region = SimpleNamespace(region=SimpleNamespace(name="r1"))
    app.state.services = SimpleNamespace(regions={"r1": region}, wall_clock=SystemClock())
    app.state.peer = peer_routes.PeerServer(registry, identity, handles)
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield Peer(registry, store, log, handles, identity, f"http://127.0.0.1:{port}")
    uv.should_exit = True
    thread.join(timeout=30)


def _proxy(peer: Peer, **kw: Any) -> Any:
    transport = PeerTransport(peer.registry, peer.base, "r1", peer.identity, **kw)
    return make_proxy(transport, "store", {"region": "r1"})


def test_the_registry_derives_methods_properties_and_handles_from_the_protocol(peer: Peer) -> None:
    iface = peer.registry.get("store")
    assert iface is not None
    assert iface.methods == {"add", "describe", "locked", "open"}
    assert iface.properties == ("region",)
    handle = peer.registry.handle_interface(iface, "open")
    assert handle is not None
    assert handle.name == "stream"


def test_calls_run_on_the_peer_with_args_and_kwargs_and_plain_data_comes_back(peer: Peer) -> None:
    store = _proxy(peer)
    assert store.region == "r1"  # a property: configuration, no call
    assert store.add(2, b=40) == 42
    value = {"t": (1, b"\x00\xff", Shape("s", (4,))), 7: [None, 1.5]}
    assert store.describe(value) == {"type": "dict", "value": value}
    assert not hasattr(store, "_secret")


def test_a_domain_error_comes_back_as_the_same_class_and_message(peer: Peer) -> None:
    with pytest.raises(KeyUnusable) as caught:
        _proxy(peer).locked("ocid1.key.oc1.iad.k")
    assert caught.value.text == KeyUnusable(key_id="ocid1.key.oc1.iad.k", state="DISABLED").text


def test_a_handle_stays_on_the_peer_until_closed(peer: Peer) -> None:
    before = len(peer.handles)
    stream = _proxy(peer).open("a")
    assert stream.shape == Shape("a", (1, 2, 3))  # a property snapshot taken at open
    assert stream.read(5) == b"\x05" * 4
    assert len(peer.handles) == before + 1
    stream.close()
    assert len(peer.handles) == before
    assert peer.store.streams[-1].closed
    stream.close()  # closing twice is harmless


def test_a_handle_the_peer_forgot_is_opened_again_with_the_call_that_made_it(peer: Peer) -> None:
    peer.log.clear()
    stream = _proxy(peer).open("b")
    assert stream.read(1) == b"\x01" * 4
    peer.handles.close_all()  # what a restart of the peer process does to its handles
    assert stream.read(2) == b"\x02" * 4
    assert peer.log == ["open b", "close", "open b"]
    stream.close()


def test_idle_handles_are_closed_by_the_sweep(peer: Peer) -> None:
    now = [0.0]
    table = peer_routes.HandleTable(idle_seconds=10, monotonic=lambda: now[0])
    iface = peer.registry.get("stream")
    assert iface is not None
    stream = LocalStream("c", [])
    table.add(stream, iface, "r1")
    now[0] = 5.0
    assert table.sweep() == 0
    now[0] = 16.0
    assert table.sweep() == 1
    assert stream.closed


def test_a_peer_that_is_down_is_retryable_unavailable_after_the_connect_window(peer: Peer) -> None:
    clock = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    transport = PeerTransport(
        peer.registry,
        f"http://127.0.0.1:{_free_port()}",
        "r1",
        peer.identity,
        connect_window=3.0,
        sleep=sleep,
        monotonic=lambda: clock[0],
    )
    store = make_proxy(transport, "store", {"region": "r1"})
    with pytest.raises(PeerUnavailable) as caught:
        store.add(1)
    assert isinstance(caught.value, Unavailable)
    assert caught.value.retryable
    assert sleeps  # it did retry, with backoff, within the window
    assert sum(sleeps) <= 3.0


def test_a_proxy_needs_its_properties(peer: Peer) -> None:
    transport = PeerTransport(peer.registry, peer.base, "r1", peer.identity)
    with pytest.raises(ValueError, match="region"):
        make_proxy(transport, "store", {})


def test_the_service_identity_file_is_reused(tmp_path: Path) -> None:
    first = service_identity.load_or_create(tmp_path, "ocid1.tenancy.oc1..aaaaaaaat")
    second = service_identity.load_or_create(tmp_path, "ocid1.tenancy.oc1..aaaaaaaat")
    assert first.key_id == second.key_id
    assert first.public_key.public_numbers() == second.public_key.public_numbers()


def test_a_reply_cut_short_is_unavailable_never_a_partial_result(peer: Peer) -> None:
    """A peer that dies while sending (headers and a few bytes of a longer body, then EOF)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    served = [0]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.blockvault.peer\r\n"
                    b"content-length: 100000\r\n\r\nBVP1\x00\x00"
                )
                served[0] += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        transport = PeerTransport(peer.registry, f"http://127.0.0.1:{port}", "r1", peer.identity)
        with pytest.raises(PeerUnavailable):
            make_proxy(transport, "store", {"region": "r1"}).add(1)
        assert served[0] == 1  # a top-level call that may have run is not sent again
    finally:
        listener.close()
