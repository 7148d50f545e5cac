"""The peer wire codec: plain data <-> one binary frame (docs/design/regions.md, "Wire format"). Pure, no I/O.

A frame is a small JSON tree plus the byte strings it references, appended raw (no base64: a 4 MiB chunk batch
costs one copy, not a 33 % larger text and a decode pass):

    frame   := "BVP1" | u32 big-endian header length | header | blob 0 | blob 1 | ...
    header  := UTF-8 JSON {"v": <tree>, "b": [len(blob 0), len(blob 1), ...]}

The tree is JSON for None, bool, int, str, finite floats and lists; everything else is a one-key tagged object:

    {"$b": i}                       bytes (blob i; bytearray and memoryview travel as bytes)
    {"$t": [...]}                   tuple
    {"$d": [[key, value], ...]}     dict (any encodable keys, so int-keyed maps round-trip; plain dicts use it too,
                                    so a user's dict that happens to look like a tag is never misread)
    {"$s": [...]} / {"$fs": [...]}  set / frozenset
    {"$f": "nan" | "inf" | "-inf"}  a non-finite float (JSON has none)
    {"$dt": "<ISO 8601>"}           datetime (aware or naive, as given)
    {"$c": "<name>", "f": {...}}    a dataclass REGISTERED under <name> (init fields only); nothing else is ever built
    {"$h": {"id", "i", "p"}}        a handle to a stateful object on the peer (`HandleRef`)
    {"$e": {"c", "m", "x", "bases"}} a domain error: class name, message, context (`RemoteError`)

Decoding trusts nothing it was not told: unknown tags, unregistered classes and blob indexes out of range are
`CodecError`, and the blob lengths must add up to the frame exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import Any

from blockvault.errors import BlockvaultError

__all__ = [
    "MAGIC",
    "CodecError",
    "HandleRef",
    "RemoteError",
    "TypeRegistry",
    "decode",
    "encode",
    "error_class",
    "rebuild",
    "remote_error",
]

MAGIC = b"BVP1"
_LEN = struct.Struct(">I")
# The header is metadata only (ids, small records, blob lengths); 64 MiB bounds what a hostile length could make
# us allocate before the JSON parser even starts.
MAX_HEADER = 64 << 20


class CodecError(ValueError):
    """A frame that is not well formed, or a value the codec cannot carry (a programming error, not a domain error)."""


@dataclass(frozen=True, slots=True)
class HandleRef:
    """A stateful object that stays on the peer (an open export): its id, its interface name, and a snapshot of its
    properties taken when it was opened."""

    id: str
    interface: str
    props: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RemoteError:
    """A domain error as it crosses the wire: the class name, its bases (most specific first, to fall back on when
    this side does not know the class), the message and the context."""

    cls: str
    message: str
    context: dict[str, Any]
    bases: tuple[str, ...]


class TypeRegistry:
    """The dataclasses a frame may carry, by name. Registering a module registers every dataclass defined in it, so a
    new plain-data value in a registered module needs no transport code."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[Any]] = {}
        self._names: dict[type[Any], str] = {}

    def register(self, cls: type[Any], name: str | None = None) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        key = name or cls.__qualname__
        existing = self._by_name.get(key)
        if existing is not None and existing is not cls:
            raise ValueError(f"two dataclasses are registered as {key!r}: {existing!r} and {cls!r}")
        self._by_name[key] = cls
        self._names[cls] = key

    def register_module(self, module: ModuleType) -> None:
        for value in list(vars(module).values()):
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == module.__name__:
                self.register(value)

    def name_of(self, cls: type[Any]) -> str | None:
        return self._names.get(cls)

    def lookup(self, name: str) -> type[Any]:
        cls = self._by_name.get(name)
        if cls is None:
            raise CodecError(f"the dataclass {name!r} is not registered")
        return cls


def encode(value: Any, types: TypeRegistry) -> bytes:
    """One frame holding `value`. Raises `CodecError` for a value of a type the codec does not carry."""
    blobs: list[bytes] = []
    tree = _enc(value, types, blobs)
    header = json.dumps({"v": tree, "b": [len(b) for b in blobs]}, separators=(",", ":"), allow_nan=False).encode()
    return b"".join([MAGIC, _LEN.pack(len(header)), header, *blobs])


def decode(frame: bytes, types: TypeRegistry) -> Any:
    """The value in one frame. Raises `CodecError` for anything that is not a frame `encode` could have made."""
    view = memoryview(frame)
    if len(view) < 8 or bytes(view[:4]) != MAGIC:
        raise CodecError("not a peer frame")
    (size,) = _LEN.unpack_from(view, 4)
    if size > MAX_HEADER or 8 + size > len(view):
        raise CodecError("the frame header is truncated")
    try:
        header = json.loads(bytes(view[8 : 8 + size]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"the frame header is not JSON: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"v", "b"} or not isinstance(header["b"], list):
        raise CodecError("the frame header is not {v, b}")
    lengths = header["b"]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths):
        raise CodecError("blob lengths must be non-negative integers")
    if 8 + size + sum(lengths) != len(view):
        raise CodecError("the blob lengths do not add up to the frame")
    blobs: list[bytes] = []
    at = 8 + size
    for n in lengths:
        blobs.append(bytes(view[at : at + n]))
        at += n
    return _dec(header["v"], types, blobs)


def _enc(value: Any, types: TypeRegistry, blobs: list[bytes]) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$f": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, (bytes, bytearray, memoryview)):
        blobs.append(bytes(value))
        return {"$b": len(blobs) - 1}
    if isinstance(value, list):
        return [_enc(v, types, blobs) for v in value]
    if isinstance(value, tuple):
        return {"$t": [_enc(v, types, blobs) for v in value]}
    if isinstance(value, dict):
        return {"$d": [[_enc(k, types, blobs), _enc(v, types, blobs)] for k, v in value.items()]}
    if isinstance(value, frozenset):
        return {"$fs": [_enc(v, types, blobs) for v in value]}
    if isinstance(value, set):
        return {"$s": [_enc(v, types, blobs) for v in value]}
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, HandleRef):
        return {"$h": {"id": value.id, "i": value.interface, "p": _enc(value.props, types, blobs)}}
    if isinstance(value, RemoteError):
        return {
            "$e": {
                "c": value.cls,
                "m": value.message,
                "x": _enc(value.context, types, blobs),
                "bases": list(value.bases),
            }
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = types.name_of(type(value))
        if name is None:
            raise CodecError(f"the dataclass {type(value).__qualname__} is not registered with the peer codec")
        fields = {f.name: _enc(getattr(value, f.name), types, blobs) for f in dataclasses.fields(value) if f.init}
        return {"$c": name, "f": fields}
    raise CodecError(f"the peer codec does not carry {type(value).__qualname__}")


def _dec(tree: Any, types: TypeRegistry, blobs: list[bytes]) -> Any:
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [_dec(v, types, blobs) for v in tree]
    if not isinstance(tree, dict) or (len(tree) != 1 and "$c" not in tree):
        raise CodecError("an object in the tree is not a tagged value")
    if "$c" in tree:
        return _dec_dataclass(tree, types, blobs)
    ((tag, body),) = tree.items()
    if tag == "$b":
        if not isinstance(body, int) or isinstance(body, bool) or not 0 <= body < len(blobs):
            raise CodecError("a blob reference is out of range")
        return blobs[body]
    if tag in ("$t", "$s", "$fs"):
        items = [_dec(v, types, blobs) for v in _list(body, tag)]
        return tuple(items) if tag == "$t" else (set(items) if tag == "$s" else frozenset(items))
    if tag == "$d":
        out: dict[Any, Any] = {}
        for pair in _list(body, tag):
            if not isinstance(pair, list) or len(pair) != 2:
                raise CodecError("a dict entry is not a [key, value] pair")
            out[_dec(pair[0], types, blobs)] = _dec(pair[1], types, blobs)
        return out
    if tag == "$f":
        if body not in ("nan", "inf", "-inf"):
            raise CodecError("a non-finite float is nan, inf or -inf")
        return float(body)
    if tag == "$dt":
        if not isinstance(body, str):
            raise CodecError("a datetime is an ISO 8601 string")
        try:
            return datetime.fromisoformat(body)
        except ValueError:
            raise CodecError("a datetime is an ISO 8601 string") from None
    if tag == "$h":
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not isinstance(body.get("i"), str):
            raise CodecError("a handle has an id and an interface")
        props = _dec(body.get("p"), types, blobs)
        if not isinstance(props, dict):
            raise CodecError("a handle's properties are a dict")
        return HandleRef(body["id"], body["i"], props)
    if tag == "$e":
        if not isinstance(body, dict) or not isinstance(body.get("c"), str) or not isinstance(body.get("m"), str):
            raise CodecError("an error has a class and a message")
        context = _dec(body.get("x"), types, blobs)
        bases = body.get("bases") or []
        if not isinstance(context, dict) or not all(isinstance(b, str) for b in bases):
            raise CodecError("an error's context is a dict and its bases are names")
        return RemoteError(body["c"], body["m"], context, tuple(bases))
    raise CodecError(f"unknown tag {tag!r}")


def _list(body: Any, tag: str) -> list[Any]:
    if not isinstance(body, list):
        raise CodecError(f"{tag} holds a list")
    return body


def _dec_dataclass(tree: dict[str, Any], types: TypeRegistry, blobs: list[bytes]) -> Any:
    name, fields = tree.get("$c"), tree.get("f")
    if set(tree) != {"$c", "f"} or not isinstance(name, str) or not isinstance(fields, dict):
        raise CodecError("a dataclass is {$c: name, f: fields}")
    cls = types.lookup(name)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    if not set(fields) <= known:
        raise CodecError(f"{name} has no fields {sorted(set(fields) - known)}")
    return cls(**{k: _dec(v, types, blobs) for k, v in fields.items()})


# --- domain errors across the wire ------------------------------------------------------------------------------


def _all_error_classes() -> dict[str, type[BlockvaultError]]:
    # Every BlockvaultError subclass imported in this process (errors.py's, NotImplementedYet, ...), by name. Both
    # sides run the same code, so a class raised there is known here; a name defined twice keeps the first.
    found: dict[str, type[BlockvaultError]] = {}
    todo: list[type[BlockvaultError]] = [BlockvaultError]
    while todo:
        cls = todo.pop(0)
        found.setdefault(cls.__name__, cls)
        todo.extend(cls.__subclasses__())
    return found


def error_class(names: Iterable[str]) -> type[BlockvaultError]:
    """The first class of `names` this process knows (most specific first); BlockvaultError if none."""
    known = _all_error_classes()
    for name in names:
        if name in known:
            return known[name]
    return BlockvaultError


def remote_error(exc: BlockvaultError, types: TypeRegistry) -> RemoteError:
    """What crosses the wire for `exc`: its class, bases, message and the context values the codec can carry."""
    context: dict[str, Any] = {}
    for key, value in exc.context.items():
        try:
            encode(value, types)
        except CodecError:
            value = str(value)
        context[key] = value
    bases = tuple(c.__name__ for c in type(exc).__mro__[1:] if issubclass(c, BlockvaultError))
    return RemoteError(type(exc).__name__, exc.text, context, bases)


def rebuild(err: RemoteError) -> BlockvaultError:
    """`err` as the same class (or its nearest known base) with the same message and context, ready to raise."""
    cls = error_class((err.cls, *err.bases))
    exc = cls.__new__(cls)
    BlockvaultError.__init__(exc, err.message, **err.context)  # the message as the peer wrote it, not re-formatted
    return exc
