"""The peer codec (peer/codec.py): every value it carries comes back equal and of the same type; frames that it
could not have made are refused; domain errors come back as the same class with the same message."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blockvault.blockstorage import regions as blockstorage_regions
from blockvault.blockstorage.model import Backup
from blockvault.blockstorage.regions import BackupLayout
from blockvault.errors import BlockvaultError, Conflict, InvalidArgument, KeyUnusable, NotFound, Unavailable
from blockvault.peer.codec import (
    CodecError,
    HandleRef,
    RemoteError,
    TypeRegistry,
    decode,
    encode,
    rebuild,
    remote_error,
)


@dataclass(frozen=True)
class Point:
    x: int
    label: str
    blob: bytes
    tags: tuple[str, ...] = ()


@dataclass
class Mutable:
    items: list[Any] = field(default_factory=list)
    mapping: dict[Any, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unregistered:
    x: int


TYPES = TypeRegistry()
TYPES.register(Point)
TYPES.register(Mutable)
TYPES.register_module(blockstorage_regions)
TYPES.register(Backup)


def same(a: Any, b: Any) -> bool:
    """Equal, of the same type, all the way down (NaN equals NaN; bytearray/memoryview arrive as bytes)."""
    if isinstance(a, (bytearray, memoryview)):
        return type(b) is bytes and bytes(a) == b
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (Point, Mutable)):
        return same(
            vars(a) if isinstance(a, Mutable) else a.__dict__, vars(b) if isinstance(b, Mutable) else b.__dict__
        )
    return bool(a == b)


keys = st.one_of(st.text(max_size=8), st.integers(), st.tuples(st.integers(), st.text(max_size=3)))
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=300),
    st.binary(max_size=40).map(bytearray),
    st.datetimes(timezones=st.sampled_from([UTC, None])),
    st.frozensets(st.integers(), max_size=4),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(keys, inner, max_size=5),
        st.builds(
            Point, st.integers(), st.text(max_size=5), st.binary(max_size=50), st.lists(st.text(max_size=3)).map(tuple)
        ),
        st.builds(Mutable, st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    ),
    max_leaves=30,
)


@given(values)
def test_every_value_round_trips_with_its_type(value: Any) -> None:
    assert same(value, decode(encode(value, TYPES), TYPES))


@given(st.dictionaries(st.sampled_from(["$b", "$t", "$d", "$c", "f", "$h", "$e", "x"]), st.integers(), max_size=3))
def test_a_user_dict_that_looks_like_a_tag_is_still_a_dict(value: dict[str, int]) -> None:
    assert decode(encode(value, TYPES), TYPES) == value


def test_chunk_batches_travel_as_raw_bytes_not_text() -> None:
    batch = [bytes([n]) * (256 * 1024) for n in range(16)]
    frame = encode({"r": batch}, TYPES)
    assert len(frame) - sum(map(len, batch)) < 400  # a header, no base64 (which would add 1.4 MiB)
    assert decode(frame, TYPES) == {"r": batch}


def test_domain_records_round_trip() -> None:
    now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    backup = Backup(
        "ocid1.volumebackup.oc1.iad.x",
        "volume",
        "ocid1.volume.oc1.iad.v",
        "ocid1.compartment.oc1..c",
        "b",
        "FULL",
        "MANUAL",
        "AVAILABLE",
        None,
        50,
        now,
        now + timedelta(seconds=1),
        freeform_tags={"a": "b"},
        defined_tags={"ns": {"k": 1}},
    )
    layout = BackupLayout("b", "v", 50 << 30, 7, 4 << 20, ((0, 0xFFFF), (9, 1)))
    for value in (backup, layout, HandleRef("h1", "backup-export", {"layout": layout})):
        assert decode(encode(value, TYPES), TYPES) == value


def test_an_unregistered_dataclass_or_type_is_refused_on_both_sides() -> None:
    with pytest.raises(CodecError):
        encode(Unregistered(1), TYPES)
    with pytest.raises(CodecError):
        encode(object(), TYPES)
    other = TypeRegistry()
    other.register(Unregistered)
    frame = encode(Unregistered(1), other)
    with pytest.raises(CodecError):
        decode(frame, TYPES)  # never builds a class it was not told about


def _frame(header: bytes, blobs: bytes = b"") -> bytes:
    return b"BVP1" + struct.pack(">I", len(header)) + header + blobs


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"XXXX\x00\x00\x00\x00",
        _frame(b"not json"),
        _frame(b'{"v": 1}'),
        _frame(b'{"v": {"$b": 0}, "b": []}'),
        _frame(b'{"v": {"$b": 0}, "b": [4]}', b"abc"),  # lengths do not add up
        _frame(b'{"v": 1, "b": [-1]}'),
        _frame(b'{"v": {"$zz": 1}, "b": []}'),
        _frame(b'{"v": {"a": 1, "b": 2}, "b": []}'),
        _frame(b'{"v": {"$c": "Point", "f": {"nope": 1}}, "b": []}'),
        _frame(b'{"v": {"$c": "os.system", "f": {}}, "b": []}'),
        _frame(b'{"v": {"$f": "1e999"}, "b": []}'),
        b"BVP1\xff\xff\xff\xff",
    ],
)
def test_malformed_frames_are_codec_errors(frame: bytes) -> None:
    with pytest.raises(CodecError):
        decode(frame, TYPES)


@pytest.mark.parametrize(
    "exc",
    [
        NotFound(kind="backup", ident="ocid1.x"),
        KeyUnusable(key_id="ocid1.key.oc1.iad.k", state="DISABLED"),
        Conflict("a message of its own"),
        InvalidArgument(field="destinationRegion", reason="no"),
        Unavailable(dependency="region us-phoenix-1"),
    ],
)
def test_domain_errors_come_back_as_the_same_class_and_message(exc: BlockvaultError) -> None:
    crossed = decode(encode(remote_error(exc, TYPES), TYPES), TYPES)
    assert isinstance(crossed, RemoteError)
    again = rebuild(crossed)
    assert type(again) is type(exc)
    assert again.text == exc.text
    assert again.context == exc.context


def test_an_unknown_error_class_falls_back_to_its_nearest_known_base() -> None:
    err = RemoteError("SomethingNewer", "m", {}, ("KeyUnusable", "Conflict", "BlockvaultError"))
    again = rebuild(err)
    assert type(again) is KeyUnusable
    assert again.text == "m"


def test_context_values_the_codec_cannot_carry_travel_as_text() -> None:
    exc = Conflict("x", thing=object())
    crossed = rebuild(decode(encode(remote_error(exc, TYPES), TYPES), TYPES))
    assert isinstance(crossed.context["thing"], str)
