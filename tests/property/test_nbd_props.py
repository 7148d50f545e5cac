"""Hypothesis: any fragmentation of a valid stream parses the same; garbage never escapes as anything but
ProtocolError (or an NBD error reply)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from blockvault.nbd import protocol as p

INFO = p.ExportInfo(size=1 << 30, flags=p.TFLAG_HAS_FLAGS)


def lookup(name: str, tls: bool) -> p.ExportInfo | int:
    return INFO if name == "disk" else p.REP_ERR_UNKNOWN


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


options = st.one_of(
    st.builds(lambda n: p.encode_option(p.OPT_GO, p.encode_info_request(n, [3])), st.sampled_from(["disk", "x"])),
    st.builds(lambda n: p.encode_option(p.OPT_INFO, p.encode_info_request(n)), st.sampled_from(["disk", "x"])),
    st.just(p.encode_option(p.OPT_STRUCTURED_REPLY)),
    st.just(p.encode_option(p.OPT_LIST)),
    st.builds(
        lambda q: p.encode_option(p.OPT_SET_META_CONTEXT, p.encode_meta_request("disk", q)),
        st.lists(st.sampled_from(["base:allocation", "base:", "other"]), max_size=3),
    ),
    st.builds(lambda d: p.encode_option(0x77, d), st.binary(max_size=20)),
)


def run_handshake(pieces: list[bytes]) -> tuple[list[object], bytes]:
    """Events, and every byte after the end of negotiation (leftover plus pieces never fed)."""
    hs = p.ServerHandshake(lookup)
    events: list[object] = []
    for i, piece in enumerate(pieces):
        events.extend(hs.feed(piece))
        last = events[-1] if events else None
        if isinstance(last, p.Ready):
            events[-1] = p.Ready(last.name, last.export, last.structured, last.meta_contexts)
            return events, last.leftover + b"".join(pieces[i + 1 :])
        if isinstance(last, p.Close):
            break
    return events, b""


def normalise(run: tuple[list[object], bytes]) -> tuple[bytes, list[object], bytes]:
    events, rest = run
    data = b"".join(e.data for e in events if isinstance(e, p.Send))
    return data, [e for e in events if not isinstance(e, p.Send)], rest


@given(opts=st.lists(options, max_size=8), cuts=st.lists(st.integers(min_value=0), max_size=12))
@settings(max_examples=300)
def test_handshake_any_fragmentation_parses_the_same(opts: list[bytes], cuts: list[int]) -> None:
    stream = struct.pack(">I", 3) + b"".join(opts) + p.encode_option(p.OPT_GO, p.encode_info_request("disk"))
    whole = normalise(run_handshake([stream]))
    pieces = normalise(run_handshake(split(stream, cuts)))
    assert whole == pieces
    assert isinstance(whole[1][-1], p.Ready)


@given(garbage=st.binary(max_size=400), cuts=st.lists(st.integers(min_value=0), max_size=6))
@settings(max_examples=500)
def test_handshake_garbage_only_raises_protocol_error(garbage: bytes, cuts: list[int]) -> None:
    hs = p.ServerHandshake(lookup, tls_available=True)
    try:
        for piece in split(garbage, cuts):
            events = hs.feed(piece)
            if events and isinstance(events[-1], p.Ready | p.Close | p.StartTls):
                break
    except p.ProtocolError:
        pass


requests = st.one_of(
    st.builds(
        lambda c, o, d: p.encode_request(p.CMD_WRITE, c, o, len(d), data=d),
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1),
        st.binary(max_size=300),
    ),
    st.builds(
        lambda cmd, f, c, o, n: p.encode_request(cmd, c, o, n, flags=f),
        st.sampled_from([p.CMD_READ, p.CMD_FLUSH, p.CMD_TRIM, p.CMD_CACHE, p.CMD_WRITE_ZEROES, p.CMD_BLOCK_STATUS, 42]),
        st.integers(0, 0xFFFF),
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**32 - 1),
    ),
)


@given(reqs=st.lists(requests, max_size=10), cuts=st.lists(st.integers(min_value=0), max_size=20))
@settings(max_examples=300)
def test_requests_any_fragmentation_parses_the_same(reqs: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(reqs)
    whole = p.RequestParser().feed(stream)
    parser = p.RequestParser()
    pieces = [r for piece in split(stream, cuts) for r in parser.feed(piece)]
    assert pieces == whole
    assert len(whole) == len(reqs)
    assert parser.buffered == 0
    for request in whole:  # every request gets a verdict, never an exception
        verdict = p.check(request, size=1 << 30, export_flags=0, structured=True, meta=True)
        assert verdict in (0, p.EINVAL, p.ENOSPC, p.EPERM, p.EOVERFLOW)


@given(garbage=st.binary(max_size=600), cuts=st.lists(st.integers(min_value=0), max_size=6))
@settings(max_examples=500)
def test_request_garbage_only_raises_protocol_error(garbage: bytes, cuts: list[int]) -> None:
    parser = p.RequestParser(max_payload=4096)
    try:
        for piece in split(garbage, cuts):
            for request in parser.feed(piece):
                p.check(request, size=1 << 20, export_flags=0, structured=False, meta=False)
    except p.ProtocolError:
        pass


@given(
    data=st.lists(st.sampled_from([b"\x00" * 512, b"\x01" * 512, b"\x00" * 511 + b"\x02"]), max_size=24).map(b"".join),
    offset=st.integers(0, 1 << 40),
)
def test_read_chunks_reassemble_to_the_data(data: bytes, offset: int) -> None:
    pieces = p.read_chunks(1, offset, data, hole_granularity=1024)
    stream = b"".join(bytes(x) for x in pieces)
    out = bytearray(len(data))
    holes = bytearray(len(data))  # 1 where the reply says hole
    pos = done = covered = 0
    while pos < len(stream):
        _magic, flags, kind, _cookie, n = struct.unpack_from(">IHHQI", stream, pos)
        body = stream[pos + 20 : pos + 20 + n]
        pos += 20 + n
        done += flags & 1
        if kind == p.REPLY_TYPE_OFFSET_DATA:
            (at,) = struct.unpack_from(">Q", body)
            out[at - offset : at - offset + n - 8] = body[8:]
            covered += n - 8
        else:
            at, hole = struct.unpack(">QI", body)
            holes[at - offset : at - offset + hole] = b"\x01" * hole
            covered += hole
    assert bytes(out) == data
    assert covered == len(data)
    assert done == 1
    # Holes are exactly the all-zero 1024-byte units aligned to absolute offsets that lie wholly inside the read.
    expected = bytearray(len(data))
    for start in range(-offset % 1024, len(data) - 1023, 1024):
        if not any(data[start : start + 1024]):
            expected[start : start + 1024] = b"\x01" * 1024
    assert holes == expected
