"""The NBD wire protocol, sans-I/O: bytes in, events and bytes out. No sockets, no threads, no clock.

The normative description of the subset we speak is docs/design/nbd.md; the reference is the NBD protocol
document (github.com/NetworkBlockDevice/nbd, doc/proto.md), quoted below as "proto.md §...".

Handshake (fixed newstyle only; proto.md "Fixed newstyle negotiation"):

    server: "NBDMAGIC" | "IHAVEOPT" | u16 handshake flags (FIXED_NEWSTYLE | NO_ZEROES)
    client: u32 client flags
    client: "IHAVEOPT" | u32 option | u32 length | data          (repeated)
    server: u64 0x3e889045565a9 | u32 option | u32 reply type | u32 length | data   (one or more per option)
    ... until NBD_OPT_GO is acknowledged (or NBD_OPT_EXPORT_NAME answered), then transmission.

Transmission (all integers big-endian):

    request  : u32 0x25609513 | u16 flags | u16 type | u64 cookie | u64 offset | u32 length | [payload if WRITE]
    simple   : u32 0x67446698 | u32 error | u64 cookie | [data if READ and error == 0]
    structured chunk : u32 0x668e33ef | u16 flags | u16 type | u64 cookie | u32 length | payload

`ServerHandshake.feed()` and `RequestParser.feed()` accept any fragmentation of the stream: they buffer partial
input and return only complete events. Every malformed input raises `ProtocolError` (the connection must be
closed) or yields an NBD error reply; nothing else escapes (property-tested with hypothesis).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from blockvault.errors import InvalidArgument

# --- magic numbers (proto.md "Protocol phases") -------------------------------------------------------------------
NBDMAGIC: Final = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT: Final = 0x49484156454F5054  # "IHAVEOPT"
OPTION_REPLY_MAGIC: Final = 0x0003E889045565A9
REQUEST_MAGIC: Final = 0x25609513
SIMPLE_REPLY_MAGIC: Final = 0x67446698
STRUCTURED_REPLY_MAGIC: Final = 0x668E33EF

# Handshake flags (server) and client flags.
FLAG_FIXED_NEWSTYLE: Final = 1 << 0
FLAG_NO_ZEROES: Final = 1 << 1
CLIENT_FLAGS_KNOWN: Final = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES

# Options.
OPT_EXPORT_NAME: Final = 1
OPT_ABORT: Final = 2
OPT_LIST: Final = 3
OPT_STARTTLS: Final = 5
OPT_INFO: Final = 6
OPT_GO: Final = 7
OPT_STRUCTURED_REPLY: Final = 8
OPT_LIST_META_CONTEXT: Final = 9
OPT_SET_META_CONTEXT: Final = 10

# Option reply types.
REP_ACK: Final = 1
REP_SERVER: Final = 2
REP_INFO: Final = 3
REP_META_CONTEXT: Final = 4
_ERR: Final = 1 << 31
REP_ERR_UNSUP: Final = _ERR | 1
REP_ERR_POLICY: Final = _ERR | 2
REP_ERR_INVALID: Final = _ERR | 3
REP_ERR_PLATFORM: Final = _ERR | 4
REP_ERR_TLS_REQD: Final = _ERR | 5
REP_ERR_UNKNOWN: Final = _ERR | 6
REP_ERR_SHUTDOWN: Final = _ERR | 7
REP_ERR_BLOCK_SIZE_REQD: Final = _ERR | 8
REP_ERR_TOO_BIG: Final = _ERR | 9

# NBD_INFO types.
INFO_EXPORT: Final = 0
INFO_NAME: Final = 1
INFO_DESCRIPTION: Final = 2
INFO_BLOCK_SIZE: Final = 3

# Transmission flags.
TFLAG_HAS_FLAGS: Final = 1 << 0
TFLAG_READ_ONLY: Final = 1 << 1
TFLAG_SEND_FLUSH: Final = 1 << 2
TFLAG_SEND_FUA: Final = 1 << 3
TFLAG_ROTATIONAL: Final = 1 << 4
TFLAG_SEND_TRIM: Final = 1 << 5
TFLAG_SEND_WRITE_ZEROES: Final = 1 << 6
TFLAG_SEND_DF: Final = 1 << 7
TFLAG_CAN_MULTI_CONN: Final = 1 << 8
TFLAG_SEND_CACHE: Final = 1 << 10
TFLAG_SEND_FAST_ZERO: Final = 1 << 11

# Commands.
CMD_READ: Final = 0
CMD_WRITE: Final = 1
CMD_DISC: Final = 2
CMD_FLUSH: Final = 3
CMD_TRIM: Final = 4
CMD_CACHE: Final = 5
CMD_WRITE_ZEROES: Final = 6
CMD_BLOCK_STATUS: Final = 7
COMMAND_NAMES: Final = {
    CMD_READ: "READ",
    CMD_WRITE: "WRITE",
    CMD_DISC: "DISC",
    CMD_FLUSH: "FLUSH",
    CMD_TRIM: "TRIM",
    CMD_CACHE: "CACHE",
    CMD_WRITE_ZEROES: "WRITE_ZEROES",
    CMD_BLOCK_STATUS: "BLOCK_STATUS",
}

# Command flags.
CMD_FLAG_FUA: Final = 1 << 0
CMD_FLAG_NO_HOLE: Final = 1 << 1
CMD_FLAG_DF: Final = 1 << 2
CMD_FLAG_REQ_ONE: Final = 1 << 3
CMD_FLAG_FAST_ZERO: Final = 1 << 4

# Which command flags each command accepts (proto.md "Request message" flag descriptions).
_ALLOWED_FLAGS: Final = {
    CMD_READ: CMD_FLAG_DF,
    CMD_WRITE: CMD_FLAG_FUA,
    CMD_DISC: 0,
    CMD_FLUSH: 0,
    CMD_TRIM: CMD_FLAG_FUA,
    CMD_CACHE: 0,
    CMD_WRITE_ZEROES: CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
    CMD_BLOCK_STATUS: CMD_FLAG_REQ_ONE,
}

# Structured reply chunk flags and types.
REPLY_FLAG_DONE: Final = 1 << 0
REPLY_TYPE_NONE: Final = 0
REPLY_TYPE_OFFSET_DATA: Final = 1
REPLY_TYPE_OFFSET_HOLE: Final = 2
REPLY_TYPE_BLOCK_STATUS: Final = 5
REPLY_TYPE_ERROR: Final = (1 << 15) | 1

# Errors on the wire (proto.md "Error values"): Linux errno numbers, but only these.
EPERM: Final = 1
EIO: Final = 5
ENOMEM: Final = 12
EINVAL: Final = 22
ENOSPC: Final = 28
EOVERFLOW: Final = 75
ENOTSUP: Final = 95
ESHUTDOWN: Final = 108

# base:allocation (proto.md "base: meta context").
META_BASE_ALLOCATION: Final = "base:allocation"
STATE_HOLE: Final = 1 << 0
STATE_ZERO: Final = 1 << 1

# Limits. An option longer than this is a broken or hostile client (our largest legitimate option is a GO or
# SET_META_CONTEXT with a 4096-byte export name, the NBD string limit, and a few queries).
MAX_OPTION_LENGTH: Final = 64 * 1024
MAX_OPTIONS: Final = 1024  # options per handshake before we give up on the client
MAX_STRING: Final = 4096  # proto.md: strings are at most 4096 bytes
# Largest READ/WRITE payload we accept: 32 MiB, the NBD "maximum payload" most clients assume (qemu, libnbd).
MAX_PAYLOAD: Final = 32 * 1024 * 1024

_GREETING = struct.Struct(">QQH")
_OPTION_HEADER = struct.Struct(">QII")
_OPTION_REPLY = struct.Struct(">QIII")
_REQUEST = struct.Struct(">IHHQQI")
_SIMPLE_REPLY = struct.Struct(">IIQ")
_STRUCTURED = struct.Struct(">IHHQI")
_DATA_CHUNK = struct.Struct(">IHHQIQ")  # a structured reply header + the OFFSET_DATA offset, packed at once
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

REQUEST_SIZE: Final = _REQUEST.size  # 28


class ProtocolError(InvalidArgument):
    """The peer broke the protocol in a way that leaves no safe way to continue: close the connection."""

    message = "NBD protocol error: {reason}"


# --- handshake ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportInfo:
    """What the handshake tells a client about an export (NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE)."""

    size: int
    flags: int
    min_block: int = 1
    preferred_block: int = 4096
    max_block: int = MAX_PAYLOAD


# lookup(export name, tls active) -> the export, or an NBD_REP_ERR_* code explaining the refusal.
Lookup = Callable[[str, bool], "ExportInfo | int"]


@dataclass(frozen=True)
class Send:
    """Bytes to write to the peer, in order."""

    data: bytes


@dataclass(frozen=True)
class StartTls:
    """The ACK for NBD_OPT_STARTTLS was just sent: run the TLS server handshake, then call `tls_started()`."""


@dataclass(frozen=True)
class Close:
    """End the connection (after sending every earlier `Send`)."""

    reason: str


@dataclass(frozen=True)
class Ready:
    """Negotiation is over; transmission starts. `leftover` are bytes already received that belong to it."""

    name: str
    export: ExportInfo
    structured: bool
    meta_contexts: dict[int, str]
    leftover: bytes = b""


HandshakeEvent = Send | StartTls | Close | Ready


def greeting() -> bytes:
    """The server's first message."""
    return _GREETING.pack(NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)


def option_reply(option: int, reply: int, data: bytes = b"") -> bytes:
    return _OPTION_REPLY.pack(OPTION_REPLY_MAGIC, option, reply, len(data)) + data


def _string(data: bytes, pos: int, what: str) -> tuple[str, int]:
    """u32 length | UTF-8 bytes at `pos`; InvalidArgument if it does not fit or is not UTF-8."""
    if pos + 4 > len(data):
        raise InvalidArgument(field=what, reason="truncated length")
    (n,) = _U32.unpack_from(data, pos)
    pos += 4
    if n > MAX_STRING or pos + n > len(data):
        raise InvalidArgument(field=what, reason="length out of range")
    try:
        return data[pos : pos + n].decode("utf-8"), pos + n
    except UnicodeDecodeError as exc:
        raise InvalidArgument(field=what, reason="not UTF-8") from exc


def parse_info_request(data: bytes) -> tuple[str, list[int]]:
    """NBD_OPT_INFO / NBD_OPT_GO: u32 name length | name | u16 count | u16 info type * count."""
    name, pos = _string(data, 0, "export name")
    if pos + 2 > len(data):
        raise InvalidArgument(field="info requests", reason="truncated count")
    (count,) = _U16.unpack_from(data, pos)
    pos += 2
    if pos + 2 * count != len(data):
        raise InvalidArgument(field="info requests", reason="length does not match the count")
    return name, [_U16.unpack_from(data, pos + 2 * i)[0] for i in range(count)]


def parse_meta_request(data: bytes) -> tuple[str, list[str]]:
    """NBD_OPT_{LIST,SET}_META_CONTEXT: u32 name length | name | u32 count | (u32 length | query) * count."""
    name, pos = _string(data, 0, "export name")
    if pos + 4 > len(data):
        raise InvalidArgument(field="meta context queries", reason="truncated count")
    (count,) = _U32.unpack_from(data, pos)
    pos += 4
    queries: list[str] = []
    for _ in range(count):
        query, pos = _string(data, pos, "meta context query")
        queries.append(query)
    if pos != len(data):
        raise InvalidArgument(field="meta context queries", reason="trailing bytes")
    return name, queries


def _info_export(info: ExportInfo) -> bytes:
    return struct.pack(">HQH", INFO_EXPORT, info.size, info.flags)


def _info_block_size(info: ExportInfo) -> bytes:
    return struct.pack(">HIII", INFO_BLOCK_SIZE, info.min_block, info.preferred_block, info.max_block)


class ServerHandshake:
    """The server side of fixed-newstyle negotiation as a state machine.

    Call `greeting()` once and send it; then `feed()` every received byte. Events come back in order: `Send`
    (write them), `StartTls` (wrap the connection in TLS, then `tls_started()`), `Close`, and finally `Ready`.
    Nothing after `Ready`, `Close` or `StartTls` is parsed by this object (Ready carries the leftover bytes).

    TLS policy: `tls_available` says whether STARTTLS can be offered at all; `tls_required` makes TLS mandatory
    before anything but STARTTLS and ABORT (proto.md "Forced TLS"). Per-export requirements come from `lookup`,
    which returns REP_ERR_TLS_REQD for an export that needs TLS when it is not active ("Selective TLS").
    NBD_OPT_LIST answers an empty list: export names are per-attachment secrets and are never listed.
    """

    def __init__(self, lookup: Lookup, *, tls_available: bool = False, tls_required: bool = False) -> None:
        self._lookup = lookup
        self._tls_available = tls_available
        self._tls_required = tls_required
        self._tls = False
        self._buf = bytearray()
        self._client_flags: int | None = None
        self._structured = False
        self._meta: dict[int, str] = {}
        self._options = 0
        self._done = False

    @property
    def tls_active(self) -> bool:
        return self._tls

    @property
    def client_flags(self) -> int | None:
        return self._client_flags

    def tls_started(self) -> None:
        """The TLS handshake succeeded; negotiation starts over inside it (proto.md: options before TLS are void)."""
        self._tls = True
        self._structured = False
        self._meta = {}
        self._done = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[HandshakeEvent]:
        if self._done:
            raise ProtocolError(reason="handshake already finished")
        self._buf += data
        out: list[HandshakeEvent] = []
        if self._client_flags is None:
            if len(self._buf) < 4:
                return out
            (flags,) = _U32.unpack_from(self._buf)
            del self._buf[:4]
            if not flags & FLAG_FIXED_NEWSTYLE or flags & ~CLIENT_FLAGS_KNOWN:
                self._done = True
                return [Close(f"unsupported client flags {flags:#x}")]
            self._client_flags = flags
        while len(self._buf) >= _OPTION_HEADER.size:
            magic, option, length = _OPTION_HEADER.unpack_from(self._buf)
            if magic != IHAVEOPT:
                raise ProtocolError(reason=f"bad option magic {magic:#x}")
            if length > MAX_OPTION_LENGTH:
                raise ProtocolError(reason=f"option {option} is {length} bytes long")
            end = _OPTION_HEADER.size + length
            if len(self._buf) < end:
                break
            payload = bytes(self._buf[_OPTION_HEADER.size : end])
            del self._buf[:end]
            self._options += 1
            if self._options > MAX_OPTIONS:
                raise ProtocolError(reason="too many options")
            events = self._option(option, payload)
            out.extend(events)
            last = events[-1] if events else None
            if isinstance(last, StartTls):
                if self._buf:
                    raise ProtocolError(reason="data after STARTTLS before the TLS handshake")
                return out
            if isinstance(last, Close):
                self._done = True
                return out
            if isinstance(last, Ready):
                self._done = True
                out[-1] = Ready(last.name, last.export, last.structured, last.meta_contexts, bytes(self._buf))
                self._buf.clear()
                return out
        return out

    def _option(self, option: int, data: bytes) -> list[HandshakeEvent]:
        if option == OPT_ABORT:
            return [Send(option_reply(option, REP_ACK)), Close("client aborted")]
        if self._tls_required and not self._tls and option != OPT_STARTTLS:
            if option == OPT_EXPORT_NAME:
                return [Close("TLS required before NBD_OPT_EXPORT_NAME")]
            return [Send(option_reply(option, REP_ERR_TLS_REQD))]
        if option == OPT_STARTTLS:
            if data:
                return [Send(option_reply(option, REP_ERR_INVALID))]
            if self._tls:
                return [Send(option_reply(option, REP_ERR_INVALID))]
            if not self._tls_available:
                return [Send(option_reply(option, REP_ERR_POLICY))]
            return [Send(option_reply(option, REP_ACK)), StartTls()]
        if option == OPT_EXPORT_NAME:
            return self._export_name(data)
        if option in (OPT_INFO, OPT_GO):
            return self._info(option, data)
        if option == OPT_LIST:
            return [Send(option_reply(option, REP_ERR_INVALID if data else REP_ACK))]
        if option == OPT_STRUCTURED_REPLY:
            if data or self._structured:
                return [Send(option_reply(option, REP_ERR_INVALID))]
            self._structured = True
            return [Send(option_reply(option, REP_ACK))]
        if option in (OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT):
            return self._meta_context(option, data)
        return [Send(option_reply(option, REP_ERR_UNSUP))]

    def _export_name(self, data: bytes) -> list[HandshakeEvent]:
        # Old-style end of negotiation: no error replies are possible, a refusal is a disconnect (proto.md).
        try:
            name = data.decode("utf-8")
        except UnicodeDecodeError:
            return [Close("export name is not UTF-8")]
        found = self._lookup(name, self._tls)
        if not isinstance(found, ExportInfo):
            return [Close(f"export refused ({found:#x})")]
        reply = _U64.pack(found.size) + _U16.pack(found.flags)
        if not (self._client_flags or 0) & FLAG_NO_ZEROES:
            reply += bytes(124)
        # EXPORT_NAME predates structured replies being meaningful for block status; keep what was negotiated.
        return [Send(reply), Ready(name, found, self._structured, dict(self._meta))]

    def _info(self, option: int, data: bytes) -> list[HandshakeEvent]:
        try:
            name, requests = parse_info_request(data)
        except InvalidArgument:
            return [Send(option_reply(option, REP_ERR_INVALID))]
        found = self._lookup(name, self._tls)
        if not isinstance(found, ExportInfo):
            return [Send(option_reply(option, found))]
        sends = [option_reply(option, REP_INFO, _info_export(found))]
        if INFO_NAME in requests:
            sends.append(option_reply(option, REP_INFO, _U16.pack(INFO_NAME) + name.encode()))
        # Block size constraints are always sent: min 1 means we accept any alignment (proto.md "Block size").
        sends.append(option_reply(option, REP_INFO, _info_block_size(found)))
        sends.append(option_reply(option, REP_ACK))
        out: list[HandshakeEvent] = [Send(b"".join(sends))]
        if option == OPT_GO:
            out.append(Ready(name, found, self._structured, dict(self._meta)))
        return out

    def _meta_context(self, option: int, data: bytes) -> list[HandshakeEvent]:
        if option == OPT_SET_META_CONTEXT and not self._structured:
            return [Send(option_reply(option, REP_ERR_INVALID))]
        try:
            name, queries = parse_meta_request(data)
        except InvalidArgument:
            return [Send(option_reply(option, REP_ERR_INVALID))]
        found = self._lookup(name, self._tls)
        if not isinstance(found, ExportInfo):
            return [Send(option_reply(option, found))]
        chosen: dict[int, str] = {}
        for query in queries or ([""] if option == OPT_LIST_META_CONTEXT else []):
            # "base:" lists every context of the namespace; "" (LIST with no queries) lists everything.
            if query in ("", "base:", META_BASE_ALLOCATION):
                chosen[1] = META_BASE_ALLOCATION
        if option == OPT_SET_META_CONTEXT:
            # SET replaces the previous selection (proto.md); "base:" is only valid for LIST.
            chosen = {1: META_BASE_ALLOCATION} if META_BASE_ALLOCATION in queries else {}
            self._meta = dict(chosen)
        sends = [
            option_reply(
                option, REP_META_CONTEXT, _U32.pack(ident if option == OPT_SET_META_CONTEXT else 0) + n.encode()
            )
            for ident, n in sorted(chosen.items())
        ]
        sends.append(option_reply(option, REP_ACK))
        return [Send(b"".join(sends))]


# --- transmission -------------------------------------------------------------------------------------------------


class Request(NamedTuple):
    """One transmission request. `data` is the WRITE payload (empty for every other command): bytes from
    `RequestParser.feed`, a view of the caller's buffer from `parse_requests` (valid until the caller reuses it).

    A NamedTuple, not a frozen dataclass: one is made per request, and a frozen dataclass's __init__ (an
    object.__setattr__ per field) cost about 10 % of a 4 KiB READ (py-spy, docs/design/nbd.md Performance)."""

    flags: int
    command: int
    cookie: int
    offset: int
    length: int
    data: bytes | memoryview = b""

    def __repr__(self) -> str:  # never the payload
        return (
            f"Request(flags={self.flags}, command={self.command}, cookie={self.cookie}, "
            f"offset={self.offset}, length={self.length})"
        )


def parse_requests(view: memoryview, max_payload: int = MAX_PAYLOAD) -> tuple[list[Request], int, int]:
    """Zero-copy parse of the complete requests at the start of `view` (a 1-D byte view).

    Returns (requests, consumed, need): WRITE payloads are slices of `view` (no copy: the caller must not overwrite
    its buffer until it is done with them), `consumed` is the number of bytes those requests took, and `need` the
    total size of the next, incomplete request as far as it is known (its header and payload once the header is
    in, else a header). The caller keeps `view[consumed:]` and feeds it again, completed, later; `RequestParser`
    is exactly this with a buffer of its own. Same errors as `RequestParser.feed`.
    """
    out: list[Request] = []
    pos = 0
    size = len(view)
    unpack = _REQUEST.unpack_from
    while size - pos >= REQUEST_SIZE:
        magic, flags, command, cookie, offset, length = unpack(view, pos)
        if magic != REQUEST_MAGIC:
            raise ProtocolError(reason=f"bad request magic {magic:#x}")
        if command == CMD_WRITE:
            if length > max_payload:
                raise ProtocolError(reason=f"WRITE of {length} bytes exceeds the {max_payload}-byte maximum")
            end = pos + REQUEST_SIZE + length
            if end > size:
                return out, pos, REQUEST_SIZE + length
            out.append(Request(flags, command, cookie, offset, length, view[pos + REQUEST_SIZE : end]))
            pos = end
        else:
            out.append(Request(flags, command, cookie, offset, length))
            pos += REQUEST_SIZE
    return out, pos, REQUEST_SIZE


class RequestParser:
    """Transmission-phase request parser: `feed()` bytes, get complete `Request`s back.

    A bad magic or a WRITE payload above `max_payload` raises ProtocolError: the stream cannot be resynchronised
    safely (we would have to trust the length of a request we already consider broken), so the connection ends.
    Everything else about a request (command, flags, range) is judged by `check()`, which returns an NBD error.
    """

    def __init__(self, *, max_payload: int = MAX_PAYLOAD) -> None:
        self._buf = bytearray()
        self._max = max_payload

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Request]:
        buf = self._buf
        buf += data
        with memoryview(buf) as view:
            parsed, pos, _need = parse_requests(view, self._max)
            # Payloads become bytes of their own: the buffer is about to move.
            out = [r._replace(data=bytes(r.data)) if r.command == CMD_WRITE else r for r in parsed]
            for r in parsed:
                if isinstance(r.data, memoryview):
                    r.data.release()
        if pos:
            del buf[:pos]
        return out


def check(request: Request, *, size: int, export_flags: int, structured: bool, meta: bool) -> int:
    """0 if `request` may be executed, else the NBD error to answer (proto.md "Request types", "Error values").

    Out-of-range writes, trims and zeroes are ENOSPC, out-of-range reads, caches and block status EINVAL (the
    spec's recommendation, as nbdkit does).
    """
    command = request.command
    allowed = _ALLOWED_FLAGS.get(command)
    if allowed is None:
        return EINVAL
    if request.flags & ~allowed:
        return EINVAL
    if request.flags & CMD_FLAG_DF and not structured:
        return EINVAL
    if command in (CMD_DISC, CMD_FLUSH):
        return EINVAL if request.offset or request.length else 0
    if command == CMD_BLOCK_STATUS and not meta:
        return EINVAL
    writes = command in (CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES)
    if writes and export_flags & TFLAG_READ_ONLY:
        return EPERM
    if request.length == 0:
        return EINVAL
    if command == CMD_READ and request.length > MAX_PAYLOAD:
        return EOVERFLOW if structured else EINVAL
    if request.offset + request.length > size:
        return ENOSPC if writes else EINVAL
    return 0


def simple_reply(cookie: int, error: int = 0) -> bytes:
    """The 16-byte simple reply header; a successful READ's data follows it."""
    return _SIMPLE_REPLY.pack(SIMPLE_REPLY_MAGIC, error, cookie)


def chunk_header(cookie: int, kind: int, length: int, *, done: bool) -> bytes:
    return _STRUCTURED.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE if done else 0, kind, cookie, length)


def chunk_none(cookie: int) -> bytes:
    return chunk_header(cookie, REPLY_TYPE_NONE, 0, done=True)


def chunk_error(cookie: int, error: int, message: str = "", *, done: bool = True) -> bytes:
    text = message.encode("utf-8")[:MAX_STRING]
    body = _U32.pack(error) + _U16.pack(len(text)) + text
    return chunk_header(cookie, REPLY_TYPE_ERROR, len(body), done=done) + body


def chunk_hole(cookie: int, offset: int, length: int, *, done: bool) -> bytes:
    return chunk_header(cookie, REPLY_TYPE_OFFSET_HOLE, 12, done=done) + struct.pack(">QI", offset, length)


def chunk_data_header(cookie: int, offset: int, length: int, *, done: bool) -> bytes:
    """Header of an OFFSET_DATA chunk: the caller sends `length` data bytes after it (no copy here)."""
    flags = REPLY_FLAG_DONE if done else 0
    return _DATA_CHUNK.pack(STRUCTURED_REPLY_MAGIC, flags, REPLY_TYPE_OFFSET_DATA, cookie, 8 + length, offset)


def chunk_block_status(cookie: int, context_id: int, extents: Sequence[tuple[int, int]], *, done: bool) -> bytes:
    body = _U32.pack(context_id) + b"".join(struct.pack(">II", length, flags) for length, flags in extents)
    return chunk_header(cookie, REPLY_TYPE_BLOCK_STATUS, len(body), done=done) + body


@functools.cache
def _zeros(size: int) -> bytes:
    return bytes(size)


def read_chunks(
    cookie: int, offset: int, data: bytes | memoryview, *, hole_granularity: int, df: bool = False
) -> list[bytes | memoryview]:
    """A structured READ reply: OFFSET_DATA chunks for data, OFFSET_HOLE for aligned all-zero runs.

    Zero runs are found at `hole_granularity` (aligned to absolute offsets), so sparse reads of a fresh volume
    send 12 bytes per hole instead of the zeros. With `df` (don't fragment) the reply is one data chunk. The
    last chunk carries REPLY_FLAG_DONE. Concatenating the pieces and decoding them gives back `data`.
    """
    view = memoryview(data)
    length = len(view)
    if df or length < hole_granularity:
        return [chunk_data_header(cookie, offset, length, done=True), view]
    # A unit can be a hole only if its first and last bytes are zero: data almost never passes this probe (random
    # data 1 unit in 65 536), so a READ of data costs two byte reads per unit, not a compare (21 -> ~3 us per MiB).
    last = length - hole_granularity
    if not any(
        not view[at] and not view[at + hole_granularity - 1]
        for at in range(-offset % hole_granularity, last + 1, hole_granularity)
    ):
        return [chunk_data_header(cookie, offset, length, done=True), view]
    runs: list[tuple[bool, int, int]] = []  # (hole, start, end) relative to offset
    pos = 0
    zero = _zeros(hole_granularity)
    while pos < length:
        boundary = min(length, ((offset + pos) // hole_granularity + 1) * hole_granularity - offset)
        piece = view[pos:boundary]
        hole = boundary - pos == hole_granularity and piece == zero
        if runs and runs[-1][0] == hole:
            runs[-1] = (hole, runs[-1][1], boundary)
        else:
            runs.append((hole, pos, boundary))
        pos = boundary
    out: list[bytes | memoryview] = []
    for i, (hole, start, end) in enumerate(runs):
        last = i == len(runs) - 1
        if hole:
            out.append(chunk_hole(cookie, offset + start, end - start, done=last))
        else:
            out.append(chunk_data_header(cookie, offset + start, end - start, done=last))
            out.append(view[start:end])
    return out


# --- client-side encoders (tests, fuzzing and benchmarks drive the server with these) -----------------------------


def encode_option(option: int, data: bytes = b"") -> bytes:
    return _OPTION_HEADER.pack(IHAVEOPT, option, len(data)) + data


def encode_info_request(name: str, requests: Sequence[int] = ()) -> bytes:
    raw = name.encode()
    return _U32.pack(len(raw)) + raw + _U16.pack(len(requests)) + b"".join(_U16.pack(r) for r in requests)


def encode_meta_request(name: str, queries: Sequence[str]) -> bytes:
    raw = name.encode()
    parts = [_U32.pack(len(raw)), raw, _U32.pack(len(queries))]
    for query in queries:
        q = query.encode()
        parts += [_U32.pack(len(q)), q]
    return b"".join(parts)


def encode_request(command: int, cookie: int, offset: int, length: int, *, flags: int = 0, data: bytes = b"") -> bytes:
    return _REQUEST.pack(REQUEST_MAGIC, flags, command, cookie, offset, length) + data


__all__ = [
    "ExportInfo",
    "ProtocolError",
    "Ready",
    "Request",
    "RequestParser",
    "Send",
    "ServerHandshake",
    "StartTls",
    "check",
    "greeting",
]
