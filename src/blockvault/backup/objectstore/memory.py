"""In-memory `ObjectStore` for tests and benchmarks (restic's `mem` backend). Nothing survives the process."""

from __future__ import annotations

import threading
from collections import Counter

from blockvault.backup.objectstore.base import ObjectMissing, validate_name, validate_prefix

__all__ = ["MemoryObjectStore"]


def _parents(name: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b']: the directory-like prefixes a name occupies."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class MemoryObjectStore:
    """A dict behind a lock. Thread-safe; every method is atomic with respect to the others."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._dirs: Counter[str] = Counter()  # prefix -> number of objects below it, to enforce the "a" vs "a/b" rule
        self._lock = threading.Lock()

    def sync(self) -> None:
        """Nothing to do: memory has no crash to survive."""

    def put(self, name: str, data: bytes, *, durable: bool = True) -> None:
        validate_name(name)
        blob = bytes(data)  # a caller's later mutation of a bytearray must not change the stored object
        with self._lock:
            if self._dirs[name] > 0:
                raise ValueError(f"object name {name!r} is already a prefix of other objects")
            parents = _parents(name)
            clash = next((p for p in parents if p in self._objects), None)
            if clash is not None:
                raise ValueError(f"object name {name!r} would nest under the object {clash!r}")
            if name not in self._objects:
                self._dirs.update(parents)
            self._objects[name] = blob

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        validate_name(name)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        with self._lock:
            blob = self._objects.get(name)
        if blob is None:
            raise ObjectMissing(name)
        end = len(blob) if length is None else offset + length
        if offset > len(blob) or end > len(blob):
            raise ObjectMissing(name, reason=f"range {offset}..{end} past end {len(blob)}")
        return blob[offset:end]

    def delete(self, name: str) -> None:
        validate_name(name)
        with self._lock:
            if self._objects.pop(name, None) is not None:
                for parent in _parents(name):
                    self._dirs[parent] -= 1
                    if self._dirs[parent] == 0:
                        del self._dirs[parent]  # keep the Counter bounded by the live objects

    def list(self, prefix: str) -> list[str]:
        validate_prefix(prefix)
        with self._lock:
            names = [n for n in self._objects if n.startswith(prefix)]
        return sorted(names)

    def exists(self, name: str) -> bool:
        validate_name(name)
        with self._lock:
            return name in self._objects
