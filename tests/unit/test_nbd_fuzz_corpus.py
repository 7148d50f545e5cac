"""Replay the NBD fuzz corpus (tests/fuzz/corpus/{handshake,transmission}/, made by tests/fuzz/make_corpus.py)
through the sans-I/O codec, then a fixed-budget hypothesis "campaign" that mutates the same seeds.

The contract under test is nbd.md P1: whatever the bytes, the codec answers with events, NBD error replies or
`ProtocolError`; no other exception escapes, and state stays bounded. Time per input is bounded by size (seeds are
at most 64 KiB, the parser's payload limit is set to that), never asserted on a clock.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockvault.nbd import protocol as p

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
MAX_SEED = 64 * 1024
INFO = p.ExportInfo(size=1 << 30, flags=p.TFLAG_HAS_FLAGS | p.TFLAG_SEND_FLUSH)
VERDICTS = {0, p.EINVAL, p.ENOSPC, p.EPERM, p.EOVERFLOW}


def lookup(name: str, tls: bool) -> p.ExportInfo | int:
    if name == "disk":
        return INFO
    if name == "tls-only":
        return INFO if tls else p.REP_ERR_TLS_REQD
    return p.REP_ERR_UNKNOWN


def seeds(kind: str) -> list[Path]:
    return sorted((CORPUS / kind).glob("*.bin"))


def pieces(data: bytes, chunk: int) -> list[bytes]:
    return [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]


def check_option_replies(data: bytes) -> None:
    """Every byte the server sends during options is a well-formed option reply (or an EXPORT_NAME answer)."""
    pos = 0
    while pos + 20 <= len(data):
        magic, _option, _kind, length = struct.unpack_from(">QIII", data, pos)
        if magic != p.OPTION_REPLY_MAGIC:
            assert len(data) - pos in (10, 134), "neither an option reply nor an EXPORT_NAME answer"
            return
        assert length <= p.MAX_OPTION_LENGTH
        pos += 20 + length
    assert pos == len(data) or len(data) - pos in (10, 134)


def drive_requests(data: bytes, chunk: int) -> int:
    """Feed transmission bytes; every parsed request gets a verdict. Returns how many requests were parsed."""
    parser = p.RequestParser(max_payload=MAX_SEED)
    count = 0
    try:
        for piece in pieces(data, chunk):
            for request in parser.feed(piece):
                count += 1
                structured = bool(request.cookie & 1)
                verdict = p.check(request, size=1 << 30, export_flags=INFO.flags, structured=structured, meta=True)
                assert verdict in VERDICTS
                if request.command == p.CMD_READ and verdict == 0 and request.length <= MAX_SEED:
                    body = bytes(request.length)
                    chunks = p.read_chunks(request.cookie, request.offset, body, hole_granularity=4096)
                    assert sum(len(c) for c in chunks) >= 20
            assert parser.buffered <= MAX_SEED + p.REQUEST_SIZE
    except p.ProtocolError:
        pass
    return count


def drive_handshake(data: bytes, chunk: int) -> list[p.HandshakeEvent]:
    """Feed handshake bytes in `chunk`-sized pieces; STARTTLS is 'completed' at once, transmission bytes after
    Ready go to the request parser. Returns every event."""
    hs = p.ServerHandshake(lookup, tls_available=True)
    events: list[p.HandshakeEvent] = []
    sent = bytearray()
    try:
        consumed = 0
        for piece in pieces(data, chunk):
            consumed += len(piece)
            out = hs.feed(piece)
            events.extend(out)
            sent += b"".join(e.data for e in out if isinstance(e, p.Send))
            last = out[-1] if out else None
            if isinstance(last, p.StartTls):
                hs.tls_started()
            elif isinstance(last, p.Ready):
                drive_requests(last.leftover + data[consumed:], chunk)
                break
            elif isinstance(last, p.Close):
                break
    except p.ProtocolError:
        pass
    check_option_replies(bytes(sent))
    return events


def test_corpus_is_there_and_small() -> None:
    for kind in ("handshake", "transmission"):
        files = seeds(kind)
        assert len(files) >= 10, f"corpus/{kind} is missing: run tests/fuzz/make_corpus.py"
        assert all(f.stat().st_size <= MAX_SEED for f in files)


@pytest.mark.parametrize("path", seeds("handshake"), ids=lambda f: f.name)
@pytest.mark.parametrize("chunk", [1, 7, MAX_SEED])
def test_replay_handshake_seed(path: Path, chunk: int) -> None:
    drive_handshake(path.read_bytes(), chunk)


@pytest.mark.parametrize("path", seeds("transmission"), ids=lambda f: f.name)
@pytest.mark.parametrize("chunk", [1, 13, MAX_SEED])
def test_replay_transmission_seed(path: Path, chunk: int) -> None:
    drive_requests(path.read_bytes(), chunk)


def test_valid_seeds_reach_their_goal() -> None:
    """The valid seeds are valid: GO reaches Ready, the request seeds parse completely."""
    for name in ("go.bin", "structured-meta-go.bin", "list-info-go.bin", "export-name.bin", "unknown-option.bin"):
        events = drive_handshake((CORPUS / "handshake" / name).read_bytes(), MAX_SEED)
        assert isinstance(events[-1], p.Ready), name
    assert drive_requests((CORPUS / "transmission" / "read-write-flush.bin").read_bytes(), 1) == 3


# --- the campaign: mutate corpus seeds with hypothesis (fixed budget, no deadline) --------------------------------

mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "replace", "splice"]),
    st.integers(min_value=0, max_value=MAX_SEED),
    st.binary(min_size=1, max_size=16),
)


def apply(data: bytes, mutations: list[tuple[str, int, bytes]], other: bytes) -> bytes:
    out = bytearray(data)
    for op, where, blob in mutations:
        pos = where % (len(out) + 1)
        if op == "flip" and out:
            out[min(pos, len(out) - 1)] ^= blob[0] or 1
        elif op == "insert":
            out[pos:pos] = blob
        elif op == "delete":
            del out[pos : pos + len(blob)]
        elif op == "replace":
            out[pos : pos + len(blob)] = blob
        else:  # splice another seed's tail in
            out[pos:] = other[where % (len(other) + 1) :]
    return bytes(out[:MAX_SEED])


HANDSHAKE = [f.read_bytes() for f in seeds("handshake")]
TRANSMISSION = [f.read_bytes() for f in seeds("transmission")]
CAMPAIGN = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@CAMPAIGN
@given(
    seed=st.sampled_from(HANDSHAKE),
    other=st.sampled_from(HANDSHAKE + TRANSMISSION),
    mutations=st.lists(mutation, max_size=6),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_campaign_handshake(seed: bytes, other: bytes, mutations: list[tuple[str, int, bytes]], chunk: int) -> None:
    drive_handshake(apply(seed, mutations, other), chunk)


@CAMPAIGN
@given(
    seed=st.sampled_from(TRANSMISSION),
    other=st.sampled_from(TRANSMISSION),
    mutations=st.lists(mutation, max_size=6),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_campaign_transmission(seed: bytes, other: bytes, mutations: list[tuple[str, int, bytes]], chunk: int) -> None:
    drive_requests(apply(seed, mutations, other), chunk)
