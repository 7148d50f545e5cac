"""The sans-I/O NBD codec: handshake state machine, request parser, request checks, reply encoders."""

from __future__ import annotations

import struct

import pytest

from blockvault.nbd import protocol as p

SIZE = 1 << 20
INFO = p.ExportInfo(size=SIZE, flags=p.TFLAG_HAS_FLAGS | p.TFLAG_SEND_FLUSH)


def lookup(name: str, tls: bool) -> p.ExportInfo | int:
    if name == "secret":
        return INFO
    if name == "tls-only":
        return INFO if tls else p.REP_ERR_TLS_REQD
    return p.REP_ERR_UNKNOWN


def replies(data: bytes) -> list[tuple[int, int, bytes]]:
    """Decode option replies: (option, reply type, payload)."""
    out = []
    pos = 0
    while pos < len(data):
        magic, option, kind, length = struct.unpack_from(">QIII", data, pos)
        assert magic == p.OPTION_REPLY_MAGIC
        out.append((option, kind, data[pos + 20 : pos + 20 + length]))
        pos += 20 + length
    return out


def sent(events: list[p.HandshakeEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, p.Send))


def client_flags() -> bytes:
    return struct.pack(">I", p.FLAG_FIXED_NEWSTYLE | p.FLAG_NO_ZEROES)


def test_greeting_is_fixed_newstyle_without_zeroes() -> None:
    magic, opt, flags = struct.unpack(">QQH", p.greeting())
    assert (magic, opt, flags) == (p.NBDMAGIC, p.IHAVEOPT, p.FLAG_FIXED_NEWSTYLE | p.FLAG_NO_ZEROES)


def test_go_known_export_sends_info_and_is_ready() -> None:
    hs = p.ServerHandshake(lookup)
    events = hs.feed(client_flags() + p.encode_option(p.OPT_GO, p.encode_info_request("secret", [p.INFO_BLOCK_SIZE])))
    assert isinstance(events[-1], p.Ready)
    assert events[-1].name == "secret"
    assert events[-1].export == INFO
    kinds = [(kind, payload[:2]) for _, kind, payload in replies(sent(events))]
    assert kinds[0] == (p.REP_INFO, struct.pack(">H", p.INFO_EXPORT))
    assert (p.REP_INFO, struct.pack(">H", p.INFO_BLOCK_SIZE)) in kinds
    assert kinds[-1][0] == p.REP_ACK
    export = replies(sent(events))[0][2]
    assert struct.unpack(">HQH", export) == (p.INFO_EXPORT, SIZE, INFO.flags)


def test_go_unknown_export_is_err_unknown_and_negotiation_continues() -> None:
    hs = p.ServerHandshake(lookup)
    events = hs.feed(client_flags() + p.encode_option(p.OPT_GO, p.encode_info_request("guess")))
    assert [kind for _, kind, _ in replies(sent(events))] == [p.REP_ERR_UNKNOWN]
    events = hs.feed(p.encode_option(p.OPT_GO, p.encode_info_request("secret")))
    assert isinstance(events[-1], p.Ready)


def test_tls_export_without_tls_is_tls_reqd() -> None:
    hs = p.ServerHandshake(lookup)
    events = hs.feed(client_flags() + p.encode_option(p.OPT_INFO, p.encode_info_request("tls-only")))
    assert [kind for _, kind, _ in replies(sent(events))] == [p.REP_ERR_TLS_REQD]


def test_starttls_without_tls_configured_is_policy() -> None:
    hs = p.ServerHandshake(lookup)
    events = hs.feed(client_flags() + p.encode_option(p.OPT_STARTTLS))
    assert [kind for _, kind, _ in replies(sent(events))] == [p.REP_ERR_POLICY]


def test_starttls_acks_then_renegotiates_inside_tls() -> None:
    hs = p.ServerHandshake(lookup, tls_available=True, tls_required=True)
    events = hs.feed(client_flags() + p.encode_option(p.OPT_GO, p.encode_info_request("secret")))
    assert [kind for _, kind, _ in replies(sent(events))] == [p.REP_ERR_TLS_REQD]
    events = hs.feed(p.encode_option(p.OPT_STARTTLS))
    assert isinstance(events[-1], p.StartTls)
    hs.tls_started()
    events = hs.feed(p.encode_option(p.OPT_GO, p.encode_info_request("tls-only")))
    assert isinstance(events[-1], p.Ready)


def test_data_after_starttls_is_a_protocol_error() -> None:
    hs = p.ServerHandshake(lookup, tls_available=True)
    with pytest.raises(p.ProtocolError):
        hs.feed(client_flags() + p.encode_option(p.OPT_STARTTLS) + b"\x16\x03\x01")


def test_list_never_reveals_export_names() -> None:
    hs = p.ServerHandshake(lookup)
    events = hs.feed(client_flags() + p.encode_option(p.OPT_LIST))
    assert [kind for _, kind, _ in replies(sent(events))] == [p.REP_ACK]


def test_structured_reply_and_meta_context() -> None:
    hs = p.ServerHandshake(lookup)
    events = hs.feed(client_flags() + p.encode_option(p.OPT_SET_META_CONTEXT, p.encode_meta_request("secret", [])))
    assert [kind for _, kind, _ in replies(sent(events))] == [p.REP_ERR_INVALID]  # needs structured replies first
    events = hs.feed(p.encode_option(p.OPT_STRUCTURED_REPLY))
    assert [kind for _, kind, _ in replies(sent(events))] == [p.REP_ACK]
    events = hs.feed(
        p.encode_option(p.OPT_SET_META_CONTEXT, p.encode_meta_request("secret", ["base:allocation", "qemu:dirty"]))
    )
    got = replies(sent(events))
    assert got[0][1] == p.REP_META_CONTEXT
    assert got[0][2] == struct.pack(">I", 1) + b"base:allocation"
    assert got[-1][1] == p.REP_ACK
    assert len(got) == 2
    events = hs.feed(p.encode_option(p.OPT_GO, p.encode_info_request("secret")))
    ready = events[-1]
    assert isinstance(ready, p.Ready)
    assert ready.structured
    assert ready.meta_contexts == {1: "base:allocation"}


def test_list_meta_context_with_no_queries_lists_base_allocation() -> None:
    hs = p.ServerHandshake(lookup)
    events = hs.feed(client_flags() + p.encode_option(p.OPT_LIST_META_CONTEXT, p.encode_meta_request("secret", [])))
    got = replies(sent(events))
    assert [kind for _, kind, _ in got] == [p.REP_META_CONTEXT, p.REP_ACK]


def test_unknown_option_is_unsup() -> None:
    hs = p.ServerHandshake(lookup)
    events = hs.feed(client_flags() + p.encode_option(0x1234, b"xyz"))
    assert [kind for _, kind, _ in replies(sent(events))] == [p.REP_ERR_UNSUP]


def test_malformed_go_is_invalid() -> None:
    hs = p.ServerHandshake(lookup)
    events = hs.feed(client_flags() + p.encode_option(p.OPT_GO, b"\x00\x00\x10\x00abc"))
    assert [kind for _, kind, _ in replies(sent(events))] == [p.REP_ERR_INVALID]


def test_export_name_option_old_style_end() -> None:
    hs = p.ServerHandshake(lookup)
    events = hs.feed(struct.pack(">I", p.FLAG_FIXED_NEWSTYLE) + p.encode_option(p.OPT_EXPORT_NAME, b"secret"))
    assert isinstance(events[-1], p.Ready)
    reply = sent(events)
    assert len(reply) == 8 + 2 + 124
    assert struct.unpack_from(">QH", reply) == (SIZE, INFO.flags)
    hs = p.ServerHandshake(lookup)
    events = hs.feed(client_flags() + p.encode_option(p.OPT_EXPORT_NAME, b"nope"))
    assert isinstance(events[-1], p.Close)


def test_client_without_fixed_newstyle_is_closed() -> None:
    assert isinstance(p.ServerHandshake(lookup).feed(b"\x00\x00\x00\x00")[-1], p.Close)


def test_bad_option_magic_and_oversized_option_are_protocol_errors() -> None:
    with pytest.raises(p.ProtocolError):
        p.ServerHandshake(lookup).feed(client_flags() + b"X" * 16)
    with pytest.raises(p.ProtocolError):
        p.ServerHandshake(lookup).feed(client_flags() + struct.pack(">QII", p.IHAVEOPT, 7, p.MAX_OPTION_LENGTH + 1))


def test_abort_acks_and_closes() -> None:
    events = p.ServerHandshake(lookup).feed(client_flags() + p.encode_option(p.OPT_ABORT))
    assert isinstance(events[-1], p.Close)
    assert replies(sent(events))[0][1] == p.REP_ACK


def test_ready_carries_leftover_transmission_bytes() -> None:
    tail = p.encode_request(p.CMD_FLUSH, 7, 0, 0)
    events = p.ServerHandshake(lookup).feed(
        client_flags() + p.encode_option(p.OPT_GO, p.encode_info_request("secret")) + tail
    )
    assert isinstance(events[-1], p.Ready)
    assert events[-1].leftover == tail


# --- transmission ---------------------------------------------------------------------------------------------


def test_request_parser_splits_writes_and_others() -> None:
    stream = (
        p.encode_request(p.CMD_WRITE, 1, 4096, 3, data=b"abc")
        + p.encode_request(p.CMD_READ, 2, 0, 512)
        + p.encode_request(p.CMD_WRITE, 3, 0, 5, data=b"hel")
    )
    parser = p.RequestParser()
    got = parser.feed(stream)
    assert [(r.command, r.cookie, r.data) for r in got] == [(p.CMD_WRITE, 1, b"abc"), (p.CMD_READ, 2, b"")]
    assert parser.feed(b"lo")[0].data == b"hello"


def test_request_parser_rejects_bad_magic_and_huge_writes() -> None:
    with pytest.raises(p.ProtocolError):
        p.RequestParser().feed(b"\x00" * 28)
    with pytest.raises(p.ProtocolError):
        p.RequestParser(max_payload=1024).feed(p.encode_request(p.CMD_WRITE, 1, 0, 1025))


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (p.Request(0, p.CMD_READ, 1, 0, 512), 0),
        (p.Request(0, p.CMD_READ, 1, SIZE - 1, 2), p.EINVAL),
        (p.Request(0, p.CMD_WRITE, 1, SIZE - 1, 2), p.ENOSPC),
        (p.Request(0, p.CMD_WRITE_ZEROES, 1, SIZE, 1), p.ENOSPC),
        (p.Request(0, p.CMD_TRIM, 1, 0, 0), p.EINVAL),
        (p.Request(0, 99, 1, 0, 1), p.EINVAL),
        (p.Request(p.CMD_FLAG_FUA, p.CMD_READ, 1, 0, 1), p.EINVAL),
        (p.Request(p.CMD_FLAG_FUA, p.CMD_WRITE, 1, 0, 1), 0),
        (p.Request(p.CMD_FLAG_FAST_ZERO, p.CMD_WRITE_ZEROES, 1, 0, 1), 0),
        (p.Request(p.CMD_FLAG_DF, p.CMD_READ, 1, 0, 1), p.EINVAL),  # DF needs structured replies
        (p.Request(0, p.CMD_BLOCK_STATUS, 1, 0, 1), p.EINVAL),  # no meta context negotiated
        (p.Request(0, p.CMD_FLUSH, 1, 0, 0), 0),
        (p.Request(0, p.CMD_FLUSH, 1, 5, 0), p.EINVAL),
        (p.Request(0, p.CMD_READ, 1, 0, p.MAX_PAYLOAD + 1), p.EINVAL),
        (p.Request(0, p.CMD_READ, 1, 2**64 - 1, 1), p.EINVAL),
    ],
)
def test_check(request_: p.Request, expected: int) -> None:
    assert p.check(request_, size=SIZE, export_flags=INFO.flags, structured=False, meta=False) == expected


def test_read_only_export_refuses_writes_with_eperm() -> None:
    req = p.Request(0, p.CMD_WRITE, 1, 0, 1)
    assert p.check(req, size=SIZE, export_flags=p.TFLAG_READ_ONLY, structured=False, meta=False) == p.EPERM


def decode_read_chunks(pieces: list[bytes | memoryview], length: int, base: int) -> tuple[bytes, int]:
    stream = b"".join(bytes(x) for x in pieces)
    out = bytearray(length)
    pos = done = 0
    while pos < len(stream):
        magic, flags, kind, _cookie, n = struct.unpack_from(">IHHQI", stream, pos)
        assert magic == p.STRUCTURED_REPLY_MAGIC
        body = stream[pos + 20 : pos + 20 + n]
        pos += 20 + n
        done += flags & p.REPLY_FLAG_DONE
        if kind == p.REPLY_TYPE_OFFSET_DATA:
            (offset,) = struct.unpack_from(">Q", body)
            out[offset - base : offset - base + n - 8] = body[8:]
        else:
            assert kind == p.REPLY_TYPE_OFFSET_HOLE
            _offset, hole = struct.unpack(">QI", body)
            assert hole > 0
    return bytes(out), done


def test_read_chunks_sends_zero_units_as_holes() -> None:
    data = b"x" * 100 + bytes(65536 * 3) + b"y" * 10
    pieces = p.read_chunks(9, 65536 - 100, data, hole_granularity=65536)
    decoded, done = decode_read_chunks(pieces, len(data), 65536 - 100)
    assert decoded == data
    assert done == 1
    assert sum(len(x) for x in pieces) < 1000


def test_read_chunks_finds_holes_aligned_to_the_export_not_to_the_read() -> None:
    # The read starts 512 bytes before a 1024-byte boundary: its only hole is bytes 512..1535 of the data.
    data = b"\x01" * 512 + bytes(1024) + b"\x01" * 1024
    pieces = p.read_chunks(9, 7 * 1024 + 512, data, hole_granularity=1024)
    decoded, done = decode_read_chunks(pieces, len(data), 7 * 1024 + 512)
    assert (decoded, done) == (data, 1)
    holes = [bytes(x) for x in pieces if struct.unpack_from(">IHH", bytes(x))[2:] == (p.REPLY_TYPE_OFFSET_HOLE,)]
    assert [struct.unpack_from(">QI", hole, 20) for hole in holes] == [(8 * 1024, 1024)]


def test_structured_error_and_simple_reply_layout() -> None:
    assert struct.unpack(">IIQ", p.simple_reply(5, p.EIO)) == (p.SIMPLE_REPLY_MAGIC, p.EIO, 5)
    chunk = p.chunk_error(5, p.EIO, "boom")
    assert struct.unpack_from(">IHHQI", chunk) == (p.STRUCTURED_REPLY_MAGIC, 1, p.REPLY_TYPE_ERROR, 5, 10)
    assert struct.unpack_from(">IH", chunk, 20) == (p.EIO, 4)
