"""The object-store port every backup byte goes through (docs/design/backup-format.md, "Layout").

Adapters sit beside this module (`local.py`, `memory.py`; `s3.py` later). Wrappers that add retries, rate limits or
logging take an `ObjectStore` and are one (STYLE §2.10, restic `internal/backend/{retry,limiter,logger}`).

Error classification, which the retry wrapper relies on:

    ObjectMissing (NotFound)    permanent: the object is absent, or a range reaches past its end
    Unavailable                 transient: the store could not be reached or failed for a reason worth retrying
    ValueError                  caller bug: a malformed name (see `validate_name`) or a negative range
"""

from __future__ import annotations

from typing import Protocol

from blockvault.errors import NotFound

__all__ = ["ObjectMissing", "ObjectStore", "validate_name", "validate_prefix"]


class ObjectMissing(NotFound):
    """The named object does not exist (restic `IsNotExist`), or a read range reaches past its end. Permanent."""

    message = "object {ident} not found"

    def __init__(self, name: str, *, reason: str | None = None) -> None:
        text = f"object {name} not found" if reason is None else f"object {name}: {reason}"
        super().__init__(text, kind="object", ident=name)
        self.name = name


# Characters that would let a name mean something different to some adapter: NUL ends C strings, backslash is a
# separator on Windows, and control characters make listings ambiguous in logs.
_FORBIDDEN = frozenset(chr(c) for c in range(0x20)) | {"\x7f", "\\"}


def _check_segments(text: str, what: str, *, allow_trailing_slash: bool) -> None:
    if text.startswith("/"):
        raise ValueError(f"{what} {text!r} is absolute; object names are relative")
    if _FORBIDDEN.intersection(text):
        raise ValueError(f"{what} {text!r} contains a control character or a backslash")
    segments = text.split("/")
    if allow_trailing_slash and len(segments) > 1 and segments[-1] == "":
        segments.pop()
    for segment in segments:
        if segment == "":
            raise ValueError(f"{what} {text!r} has an empty segment")
        # "." and ".." would escape or alias paths in a file-system adapter; every other leading-dot segment is
        # reserved so that adapters may keep temporary files (".tmp-*") beside objects without ever listing them.
        if segment.startswith("."):
            raise ValueError(f"{what} {text!r} has a segment starting with '.' (reserved; rejects '.' and '..')")


def validate_name(name: str) -> str:
    """Return `name` if it is a valid object name, else raise ValueError.

    A name is one or more '/'-separated segments; no segment is empty or starts with '.' (so '.' and '..' are
    rejected and adapters may use dot-files for temporaries), the name is not absolute, and it holds no control
    characters or backslashes.
    """
    if not isinstance(name, str) or name == "":
        raise ValueError("an object name is a non-empty str")
    _check_segments(name, "object name", allow_trailing_slash=False)
    return name


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is a valid listing prefix, else raise ValueError.

    The empty prefix lists everything. Otherwise the same rules as `validate_name`, except that one trailing '/' is
    allowed ("chunks/<backup_id>/"). Matching is by string prefix, as in S3.
    """
    if not isinstance(prefix, str):
        raise ValueError("a prefix is a str")
    if prefix == "":
        return prefix
    _check_segments(prefix, "prefix", allow_trailing_slash=True)
    return prefix


class ObjectStore(Protocol):
    """A flat namespace of immutable-per-write byte objects under '/'-separated names.

    Contract (restic's backend wording, adapted; every adapter runs tests/unit/test_objectstore.py):

    - Names follow `validate_name`; every method raises ValueError for a malformed name before touching storage.
    - A name MUST NOT be both an object and a '/'-prefix of another object's name ("a" and "a/b"); `put` raises
      ValueError rather than create such a pair (file-system adapters could not represent it).
    - Implementations MUST be safe to call from several threads at once: the backup engine writes chunks from a
      small thread pool.
    - Errors are classified by the adapter: `ObjectMissing` is permanent, `blockvault.errors.Unavailable` is
      transient, and no third-party exception escapes an adapter.
    """

    def put(self, name: str, data: bytes, *, durable: bool = True) -> None:
        """Save stores `data` under `name`, replacing any existing object of that name.

        Atomic: a concurrent or later reader sees either the complete old object (or none) or the complete new one,
        never a prefix or a mix; if `put` raises, the old state is unchanged. Durable: when `put` returns, the object
        survives a crash of this process or of the machine. The backup format's commit point (manifest after chunks)
        depends on both properties. With `durable=False` the object is atomic but may be lost in a crash until the
        next `sync()` returns: many small puts then cost one flush instead of one each.
        """
        ...

    def sync(self) -> None:
        """Make every put that returned before this call durable."""
        ...

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        """Load returns the object's bytes from `offset`; if `length` is not None, exactly `length` bytes.

        Raises `ObjectMissing` if the object does not exist, and also if `offset + length` reaches past its end: a
        range past the end is an error, never a short read. Negative `offset` or `length` is a ValueError.
        """
        ...

    def delete(self, name: str) -> None:
        """Remove removes the object. Idempotent: removing a missing object succeeds.

        Durable: when `delete` returns, the object does not reappear after a crash (delete ordering in
        backup-format.md needs the manifest's removal to be durable before its chunks go).
        """
        ...

    def list(self, prefix: str) -> list[str]:
        """List returns the names of all objects whose name starts with `prefix`, sorted, each exactly once.

        `prefix` follows `validate_prefix`; "" lists everything. Objects put or deleted concurrently with a listing
        may or may not appear in it. Temporaries of an in-flight `put` never appear.
        """
        ...

    def exists(self, name: str) -> bool:
        """Test returns whether a complete object named `name` exists."""
        ...
