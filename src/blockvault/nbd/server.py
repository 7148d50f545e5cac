"""The NBD server: thin glue between sockets, the sans-I/O codec (protocol.py) and Exports (export.py).

One thread per connection with a blocking socket. The store calls are blocking (AES, pwritev, fdatasync; whole-unit
writes of several connections overlap, the rest serializes on the volume's store lock: nbd.md M1), so an event
loop would only add a hop per request; a blocking
`recv_into` a reused buffer plus one `sendmsg` per reply is the cheapest per-call path in CPython, and STARTTLS is
`SSLContext.wrap_socket` on the same socket. (docs/design/nbd.md "Concurrency" records this choice.)

Requests on one connection are executed in order and answered in order; clients that pipeline (qemu, libnbd)
keep several connections (CAN_MULTI_CONN) for parallelism.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import select
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from blockvault.config import is_loopback
from blockvault.errors import KeyUnusable
from blockvault.nbd import protocol as p
from blockvault.nbd.export import Export, errno_of

log = logging.getLogger("blockvault.nbd")

HANDSHAKE_TIMEOUT = 30.0  # seconds a client may take to finish negotiation (then we hang up: no idle slots held)
RECV_BUFFER = 4 << 20  # bytes per recv_into: several 1 MiB writes per system call when the client pipelines
MAX_CONNECTIONS = 256
HOLE_GRANULARITY = 65536  # one store unit: zero units are sent as holes in structured READ replies

EXPORT_FLAGS = (
    p.TFLAG_HAS_FLAGS
    | p.TFLAG_SEND_FLUSH
    | p.TFLAG_SEND_FUA
    | p.TFLAG_SEND_TRIM
    | p.TFLAG_SEND_WRITE_ZEROES
    | p.TFLAG_SEND_DF
    | p.TFLAG_CAN_MULTI_CONN
    | p.TFLAG_SEND_CACHE
    | p.TFLAG_SEND_FAST_ZERO
)


@dataclass(frozen=True)
class Target:
    """What an export name resolves to: its transport ("plain", "tls" or "tls-psk"), how to open it, and for
    "tls" the SHA-256 fingerprint of the only client certificate that may open it."""

    transport: str
    open: Callable[[], Export]
    fingerprint: bytes | None = None


Resolver = Callable[[str], "Target | None"]
# accept_certificate(SHA-256 fingerprint of the peer's certificate) -> whether it belongs to a live attachment.
CertificateCheck = Callable[[bytes], bool]


class NbdServer:
    """Listens on (host, port); `close_export(name)` hangs up every connection to an export (detach)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        resolve: Resolver,
        tls: ssl.SSLContext | None = None,
        accept_certificate: CertificateCheck | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._host, self._port = host, port
        self._resolve = resolve
        self._tls = tls
        self._accept_certificate = accept_certificate
        self._max = max_connections
        self._lock = threading.Lock()
        self._conns: dict[socket.socket, str | None] = {}
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise ValueError("the NBD server is not started")
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self._host, self._port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        listener.settimeout(0.25)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept_loop, name="nbd-accept", daemon=True)
        self._acceptor.start()
        log.info("NBD listening on %s:%d", *self.address)

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for conn in conns:
            _hang_up(conn)
        for thread in threads:
            thread.join(timeout=5)

    def close_export(self, name: str) -> None:
        """Hang up every connection negotiated to `name` (called from any thread, e.g. by detach)."""
        with self._lock:
            victims = [conn for conn, export in self._conns.items() if export == name]
        for conn in victims:
            _hang_up(conn)

    def connection_count(self) -> int:
        with self._lock:
            return len(self._conns)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("NBD accept failed")
                continue
            with self._lock:
                if len(self._conns) >= self._max:
                    conn.close()
                    log.warning("NBD connection from %s refused: %d connections open", peer, self._max)
                    continue
                self._conns[conn] = None
                thread = threading.Thread(target=self._run, args=(conn, peer), name=f"nbd-{peer}", daemon=True)
                self._threads.add(thread)
            thread.start()

    def _run(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        connection = Connection(self, conn, peer)
        try:
            connection.serve()
        except ssl.SSLError as exc:
            log.info("NBD TLS with %s failed: %s", peer, exc)
        except OSError as exc:
            log.debug("NBD connection from %s ended: %s", peer, exc)
        except p.ProtocolError as exc:
            log.info("NBD connection from %s closed: %s", peer, exc)
        except Exception:
            log.exception("NBD connection from %s crashed", peer)
        finally:
            # After STARTTLS the connection lives in an SSLSocket (wrap_socket detached `conn`): close that one.
            current = connection.sock
            with self._lock:
                self._conns.pop(conn, None)
                self._conns.pop(current, None)
                self._threads.discard(threading.current_thread())
            with contextlib.suppress(OSError):
                current.close()
            with contextlib.suppress(OSError):
                conn.close()

    def _bind(self, conn: socket.socket, replaced: socket.socket, name: str) -> None:
        with self._lock:
            self._conns.pop(replaced, None)
            self._conns[conn] = name


def _hang_up(conn: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops the TLS object under the connection's
    # thread; shutting the descriptor down makes that thread's blocked recv return EOF, TLS or not.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(conn, socket.SHUT_RDWR)


def _goodbye(sock: socket.socket) -> None:
    """A clean end after NBD_CMD_DISC: over TLS, exchange close_notify (libnbd waits for ours after sending its own)."""
    if isinstance(sock, ssl.SSLSocket):
        sock.settimeout(2.0)
        with contextlib.suppress(OSError, ValueError):
            sock.unwrap()


_IOV_MAX: Final = 1024  # Linux's limit on the pieces of one sendmsg


def _send(conn: socket.socket, pieces: Sequence[bytes | memoryview], before_blocking: Callable[[], None]) -> None:
    """Send `pieces` in order: sendmsg of up to _IOV_MAX pieces at a time (no concatenation). The first sendmsg
    does not wait; if the socket's buffer cannot take everything, `before_blocking()` runs (the batch's store
    lease is returned: a slow reader must not hold it, K3) and the rest is sent blocking."""
    if isinstance(conn, ssl.SSLSocket):
        before_blocking()
        conn.sendall(b"".join(pieces))
        return
    flags: int = socket.MSG_DONTWAIT
    for first in range(0, len(pieces), _IOV_MAX):
        batch = pieces[first : first + _IOV_MAX]
        try:
            sent = conn.sendmsg(batch, (), flags)
        except BlockingIOError:
            sent = 0
        for piece in batch:
            size = len(piece)
            if sent >= size:
                sent -= size
                continue
            if flags:
                before_blocking()
                flags = 0
            conn.sendall(memoryview(piece)[sent:])
            sent = 0


# Replies wait in the connection's output until this many bytes are queued or the batch of requests ends: the
# replies to one receive (64 pipelined 4 KiB READs, say) leave in one or two sendmsg calls instead of one each.
OUTPUT_THRESHOLD: Final = 256 << 10
ARENA_SIZE: Final = 4 << 20  # per-connection READ buffer (grows for larger READs)
MAX_GROUP: Final = 1024  # FUA requests that may wait for one group flush
EAGER_REPLIES: Final = 32  # queued reply pieces below which a connection first looks for more requests (no wait)
GROUP_WAIT_MS: Final = 1  # how long a group of held FUA requests waits for more before its flush (nbd.md F1)
PROBE_GROUPS: Final = 16  # after a wait that brought nothing, groups flush at once; every PROBE_GROUPS-th tries again


# Commands whose FUA is honoured by a group flush (server._answer), and the marker of their held success.
_GROUPED = frozenset({p.CMD_WRITE, p.CMD_WRITE_ZEROES, p.CMD_TRIM})
_DONE: Final = b"(held for the group flush: never sent)"


class GroupWait:
    """Whether a group of held FUA requests waits GROUP_WAIT_MS for more before its flush (nbd.md F1), learned per
    connection. Waiting pays when the client keeps sending while its FUA replies are held; it is pure loss when the
    client's window is already full: qemu keeps at most 16 requests in flight, so each of its writethrough groups
    waited 1 ms for nothing (4 KiB FUA writes ~3 000 -> 3 500-3 900 IOPS once the wait is learned). So a group that
    waited and received nothing during its wait makes the next groups flush at once, and every PROBE_GROUPS-th group
    waits again to see whether the client has changed. Sans-I/O: the server reports what happened."""

    def __init__(self) -> None:
        self._useful = True  # the last group that waited received something during its wait
        self._since_probe = 0
        self._chosen: int | None = None  # the wait of the current group, once decided
        self._gained = False
        self._last_group = 0  # requests in the previous group

    def wait_ms(self, held: int) -> int:
        """The wait before this group's flush, with `held` requests held."""
        if held <= 1 and self._last_group <= 1:
            return 0  # one request in flight at a time: nothing to wait for
        if self._chosen is None:
            self._since_probe += 1
            probe = self._since_probe >= PROBE_GROUPS
            self._chosen = GROUP_WAIT_MS if self._useful or probe else 0
            if self._chosen:
                self._since_probe = 0
        return self._chosen

    def arrived(self) -> None:
        """Bytes arrived during this group's wait (more requests, the rest of one, or the client's EOF)."""
        self._gained = True

    def flushed(self, size: int) -> None:
        """The group of `size` requests was flushed: judge its wait, start the next group."""
        if self._chosen:
            self._useful = self._gained
        self._chosen = None
        self._gained = False
        self._last_group = size


def _zeroed(size: int) -> memoryview:
    """A writable zeroed buffer whose pages the kernel maps on first touch: bytearray(size) writes every byte up
    front (~0.3-1 ms for 4 MiB), which each connection paid twice, whether it ever read or not."""
    return memoryview(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)) if size else memoryview(bytearray())


class _Replies:
    """Per-connection reply output: queued replies and the READ buffer they point into.

    READs are decrypted into the next free part of a reused arena (`Export.pread_into`) and their replies queued
    (`queue`), not sent; `send` sends everything queued in one sendmsg (or a few) and frees the arena for reuse.
    The queue is sent when it holds OUTPUT_THRESHOLD bytes, when the arena is full, before anything that may block
    for long (a flush) and before the connection waits for its client: so a READ allocates nothing and a burst of
    small replies costs one system call. Exports without `pread_into` (test doubles) use `pread`."""

    def __init__(self, sock: socket.socket, export: Export) -> None:
        self._sock = sock
        self._into: Callable[[int, memoryview], None] | None = getattr(export, "pread_into", None)
        self._pread = export.pread
        # A send may block for as long as the client does not read: return a batch's store lease first (K3).
        self._idle: Callable[[], None] | None = getattr(export, "idle", None)
        self._arena = _zeroed(ARENA_SIZE if self._into is not None else 0)
        self._used = 0
        self._pieces: list[bytes | memoryview] = []
        self._queued = 0

    def read(self, offset: int, length: int) -> bytes | memoryview:
        if self._into is None:
            return self._pread(offset, length)
        if self._used + length > len(self._arena):
            self.send()  # frees the arena
            if length > len(self._arena):
                self._arena.release()
                self._arena = _zeroed(length)
        out = self._arena[self._used : self._used + length]
        self._used += length
        self._into(offset, out)
        return out

    def queue(self, pieces: Sequence[bytes | memoryview]) -> None:
        self._pieces += pieces
        self._queued += sum(map(len, pieces))
        if self._queued >= OUTPUT_THRESHOLD:
            self.send()

    @property
    def pending(self) -> int:
        """How many pieces wait to be sent."""
        return len(self._pieces)

    def send(self) -> None:
        if self._pieces:
            _send(self._sock, self._pieces, self.idle)
            self._pieces = []
            self._queued = 0
        self._used = 0

    def idle(self) -> None:
        """The connection is about to wait (for its client, or on a full socket): return the store lease (K3)."""
        if self._idle is not None:
            self._idle()


class Connection:
    """One client: negotiation, then the request loop. Runs in its own thread."""

    @property
    def sock(self) -> socket.socket:
        """The socket the connection currently talks on (an SSLSocket after STARTTLS)."""
        return self._sock

    def __init__(self, server: NbdServer, conn: socket.socket, peer: tuple[str, int]) -> None:
        self._server = server
        self._sock = conn
        self._raw = conn
        self._peer = peer
        self._loopback = is_loopback(peer[0])
        self._opened: dict[str, Export] = {}
        self._peer_fingerprint: bytes | None = None  # SHA-256 of the client certificate, once TLS is up
        self._group_wait = GroupWait()  # F1: whether this client's FUA groups gain by waiting

    def _lookup(self, name: str, tls: bool) -> p.ExportInfo | int:
        target = self._server._resolve(name)
        if target is None:
            return p.REP_ERR_UNKNOWN
        if target.transport == "plain":
            # Plain attachments are for loopback peers only (nbd.md T1), with or without TLS: a certificate
            # issued for another attachment grants nothing here.
            if not self._loopback:
                return p.REP_ERR_POLICY if tls else p.REP_ERR_TLS_REQD
        else:
            # A TLS attachment only over TLS, and only with the certificate issued for it (T2).
            if not tls:
                return p.REP_ERR_TLS_REQD
            if target.fingerprint is None or self._peer_fingerprint != target.fingerprint:
                log.info("NBD export refused to %s: not the certificate of this attachment", self._peer)
                return p.REP_ERR_POLICY
        export = self._opened.get(name)
        if export is None:
            try:
                export = target.open()
            except KeyUnusable:
                return p.REP_ERR_POLICY
            except Exception as exc:  # noqa: BLE001 - any other refusal looks like an unknown export
                log.info("NBD export refused: %s", exc)
                return p.REP_ERR_UNKNOWN
            self._opened[name] = export
        flags = EXPORT_FLAGS | (p.TFLAG_READ_ONLY if export.read_only() else 0)
        return p.ExportInfo(size=export.size(), flags=flags, preferred_block=HOLE_GRANULARITY)

    def serve(self) -> None:
        sock = self._sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(HANDSHAKE_TIMEOUT)
        tls = self._server._tls
        handshake = p.ServerHandshake(
            self._lookup, tls_available=tls is not None, tls_required=tls is not None and not self._loopback
        )
        sock.sendall(p.greeting())
        ready: p.Ready | None = None
        while ready is None:
            data = sock.recv(65536)
            if not data:
                return
            events = handshake.feed(data)
            for event in events:
                if isinstance(event, p.Ready):
                    # Register the export before the final reply goes out: a detach (close_export) that follows
                    # the client's GO must find this connection.
                    self._server._bind(sock, sock, event.name)
            for event in events:
                if isinstance(event, p.Send):
                    sock.sendall(event.data)
                elif isinstance(event, p.StartTls):
                    assert tls is not None
                    wrapped = tls.wrap_socket(sock, server_side=True)
                    self._server._bind(wrapped, sock, "")
                    sock = self._sock = wrapped
                    der = wrapped.getpeercert(binary_form=True)
                    self._peer_fingerprint = hashlib.sha256(der).digest() if der else None
                    check = self._server._accept_certificate
                    if check is not None and (self._peer_fingerprint is None or not check(self._peer_fingerprint)):
                        # Chains to our CA but belongs to no ATTACHED attachment: detached (revoked) or unknown.
                        log.info("NBD TLS client %s refused: certificate not (or no longer) attached", self._peer)
                        return
                    handshake.tls_started()
                elif isinstance(event, p.Close):
                    log.info("NBD negotiation with %s ended: %s", self._peer, event.reason)
                    return
                elif isinstance(event, p.Ready):
                    ready = event
        export = self._opened[ready.name]
        for name, other in self._opened.items():
            if name != ready.name:
                other.close()
        self._server._bind(sock, sock, ready.name)
        sock.settimeout(None)
        try:
            self._transmit(sock, export, ready)
        finally:
            export.close()

    def _transmit(self, sock: socket.socket, export: Export, ready: p.Ready) -> None:
        """The request loop. Receives into one reused buffer and parses it in place (`p.parse_requests`): a WRITE
        payload reaches the export as a view of that buffer, and one whose tail has not arrived yet is completed by
        receiving exactly the missing bytes into place, so payload bytes are copied once, by the kernel."""
        size = export.size()
        flags = ready.export.flags
        meta = bool(ready.meta_contexts)
        view = _zeroed(RECV_BUFFER)
        start = end = 0  # view[start:end] holds received, unparsed bytes
        leftover = ready.leftover
        if leftover:
            if len(leftover) > len(view):
                view = _zeroed(len(leftover))
            view[: len(leftover)] = leftover
            end = len(leftover)
        reply = _Replies(sock, export)
        held: list[int] = []  # cookies of FUA requests executed without FUA: answered after the group flush
        plain = not isinstance(sock, ssl.SSLSocket)  # TLS may hold decrypted bytes select() cannot see
        readable = select.poll()  # poll, not select: descriptors may exceed FD_SETSIZE in a busy server
        readable.register(sock, select.POLLIN)

        def receive(into: memoryview) -> int:
            """recv_into `into`; before the connection would wait for its client, the held FUA requests are made
            durable (one flush for all: group commit, nbd.md F1) and every queued reply goes out."""
            if held:
                if plain and len(held) < MAX_GROUP:
                    # A pipelining client (its last group had several FUA requests) may still be sending: give it
                    # GROUP_WAIT_MS to add more to the group, far less than the two fdatasyncs a flush costs, as
                    # long as waiting has been bringing requests (GroupWait). A client with one request in flight
                    # never waits.
                    if readable.poll(0):
                        return sock.recv_into(into)  # already here: they join the group (0: EOF)
                    wait = self._group_wait.wait_ms(len(held))
                    if wait:
                        reply.idle()
                        if readable.poll(wait):
                            self._group_wait.arrived()  # sent while we waited: the wait paid
                            return sock.recv_into(into)
                self._group_flush(export, held, ready.structured, reply)
            elif plain and 0 < reply.pending < EAGER_REPLIES:
                # Requests that arrived meanwhile are answered before these replies leave: one sendmsg and one
                # store lease for all of them (nothing waits here, so K3 holds). Bounded, so a client whose window
                # is full of unanswered requests is not kept waiting for a whole round.
                try:
                    return sock.recv_into(into, 0, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
            reply.send()
            reply.idle()
            return sock.recv_into(into)

        # One store lease serves request after request (K3): the export returns it whenever the connection is
        # about to wait, for its client (receive) or for a full socket (_send).
        scope = contextlib.ExitStack()
        batch: Callable[[], contextlib.AbstractContextManager[None]] | None = getattr(export, "batch", None)
        if batch is not None:
            scope.enter_context(batch())
        try:
            while True:
                requests, consumed, need = p.parse_requests(view[start:end])
                if not self._answer(sock, export, ready, reply, held, requests, size, flags, meta):
                    return
                del requests  # the payload views end here: the buffer may be refilled
                start += consumed
                if start == end:
                    start = end = 0
                elif start + need > len(view):
                    # The incomplete request does not fit behind `start`: move its head (less than `need` bytes)
                    # to the front, growing the buffer for a payload larger than RECV_BUFFER (at most MAX_PAYLOAD).
                    head = end - start
                    if need > len(view):
                        bigger = _zeroed(need)
                        bigger[:head] = view[start:end]
                        view.release()
                        view = bigger
                    else:
                        view[:head] = view[start:end]
                    start, end = 0, head
                if end - start >= p.REQUEST_SIZE:
                    # A WRITE whose payload is partly here: receive exactly the rest, in place.
                    stop = start + need
                    while end < stop:
                        n = receive(view[end:stop])
                        if n == 0:
                            return
                        end += n
                    continue
                n = receive(view[end:])
                if n == 0:
                    return
                end += n
        finally:
            # EOF or an error: nothing more will be asked of this connection. Held FUA requests still get their
            # flush (the client may be waiting for it); the replies may no longer reach it.
            with scope, contextlib.suppress(OSError):
                if held:
                    self._group_flush(export, held, ready.structured, reply)
                reply.send()

    def _answer(
        self,
        sock: socket.socket,
        export: Export,
        ready: p.Ready,
        reply: _Replies,
        held: list[int],
        requests: list[p.Request],
        size: int,
        flags: int,
        meta: bool,
    ) -> bool:
        """Execute and answer `requests` (the complete ones of a receive); False after NBD_CMD_DISC.

        Replies are queued in `reply` (sent before the next blocking receive or when enough is queued). Group
        commit (nbd.md F1): a FUA request is executed without FUA and its cookie added to `held`; one flush before
        the connection next waits for its client (or before a FLUSH or DISC) makes all of them durable, then their
        replies go out. Held replies may thus come after later ones (NBD replies may arrive in any order; the
        cookie matches them). A failed flush fails every request it was to make durable."""
        structured = ready.structured
        for request in requests:
            command = request.command
            if command == p.CMD_READ and not request.flags and 0 < request.length < HOLE_GRANULARITY:
                # The common small READ (a 4 KiB random read), answered here: p.check's verdict for a READ without
                # flags is "in range", and read_chunks makes one data chunk of anything below HOLE_GRANULARITY.
                offset, length = request.offset, request.length
                if offset + length <= size:
                    try:
                        data = reply.read(offset, length)
                    except Exception as exc:  # noqa: BLE001 - every failure becomes an errno (as in _execute)
                        reply.queue([self._failed(request, exc, structured)])
                    else:
                        cookie = request.cookie
                        if structured:
                            reply.queue((p.chunk_data_header(cookie, offset, length, done=True), data))
                        else:
                            reply.queue((p.simple_reply(cookie), data))
                    continue
            if command in (p.CMD_DISC, p.CMD_FLUSH):
                if held:
                    self._group_flush(export, held, structured, reply)
                reply.send()  # before the flush's wait (or the goodbye)
            if command == p.CMD_DISC:
                _goodbye(sock)
                return False
            err = p.check(request, size=size, export_flags=flags, structured=structured, meta=meta)
            if err:
                reply.queue([self._error(request, err, structured)])
                continue
            later = bool(request.flags & p.CMD_FLAG_FUA) and command in _GROUPED
            pieces = self._execute(export, request, ready, reply, fua=not later)
            if later and pieces[0] is _DONE:
                held.append(request.cookie)
            else:
                reply.queue(pieces)
        return True

    def _group_flush(self, export: Export, held: list[int], structured: bool, reply: _Replies) -> None:
        self._group_wait.flushed(len(held))
        # Held requests are WRITE, WRITE_ZEROES and TRIM: their replies are simple even with structured replies.
        try:
            export.flush()
        except Exception as exc:  # noqa: BLE001 - every failure becomes an errno; the cause stays in the log
            code = errno_of(exc)
            log.warning("NBD flush for %d FUA requests failed (%s): %s", len(held), code, exc)
            replies = [p.simple_reply(cookie, code) for cookie in held]
        else:
            replies = [p.simple_reply(cookie) for cookie in held]
        held.clear()
        reply.queue(replies)
        reply.send()

    @staticmethod
    def _error(request: p.Request, err: int, structured: bool) -> bytes:
        if structured and request.command in (p.CMD_READ, p.CMD_BLOCK_STATUS):
            return p.chunk_error(request.cookie, err)
        return p.simple_reply(request.cookie, err)

    def _execute(
        self, export: Export, request: p.Request, ready: p.Ready, reply: _Replies, *, fua: bool = True
    ) -> list[bytes | memoryview]:
        """The reply to `request`. fua=False: ignore its FUA flag (the caller flushes: group commit); a success
        is then exactly `[_DONE]`, which the caller must not send before that flush."""
        cmd, cookie = request.command, request.cookie
        fua = fua and bool(request.flags & p.CMD_FLAG_FUA)
        try:
            if cmd == p.CMD_READ:
                data = reply.read(request.offset, request.length)
                if ready.structured:
                    return p.read_chunks(
                        cookie,
                        request.offset,
                        data,
                        hole_granularity=HOLE_GRANULARITY,
                        df=bool(request.flags & p.CMD_FLAG_DF),
                    )
                return [p.simple_reply(cookie), data]
            if cmd == p.CMD_WRITE:
                export.pwrite(request.offset, request.data, fua=fua)
            elif cmd == p.CMD_FLUSH:
                export.flush()
            elif cmd == p.CMD_TRIM:
                export.trim(request.offset, request.length, fua=fua)
            elif cmd == p.CMD_WRITE_ZEROES:
                fast = bool(request.flags & p.CMD_FLAG_FAST_ZERO)
                if not export.zero(request.offset, request.length, fua=fua, fast=fast):
                    return [p.simple_reply(cookie, p.ENOTSUP)]
            elif cmd == p.CMD_CACHE:
                export.cache(request.offset, request.length)
            elif cmd == p.CMD_BLOCK_STATUS:
                runs = list(export.extents(request.offset, request.length))
                if request.flags & p.CMD_FLAG_REQ_ONE:
                    runs = runs[:1]
                extents = [(length, (p.STATE_HOLE | p.STATE_ZERO) if hole else 0) for length, hole in runs]
                context_id = min(ready.meta_contexts)
                return [p.chunk_block_status(cookie, context_id, extents, done=True)]
            return [p.simple_reply(cookie)] if fua or not request.flags & p.CMD_FLAG_FUA else [_DONE]
        except Exception as exc:  # noqa: BLE001 - every failure becomes an errno; the cause stays in the log
            return [self._failed(request, exc, ready.structured)]

    @classmethod
    def _failed(cls, request: p.Request, exc: Exception, structured: bool) -> bytes:
        """The error reply to a request whose execution raised `exc` (logged: the cause stays in the log)."""
        code = errno_of(exc)
        name = p.COMMAND_NAMES.get(request.command)
        log.warning("NBD %s at %d+%d failed (%s): %s", name, request.offset, request.length, code, exc)
        return cls._error(request, code, structured)


__all__ = ["EXPORT_FLAGS", "CertificateCheck", "GroupWait", "NbdServer", "Target"]
