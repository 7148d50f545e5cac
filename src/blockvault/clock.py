"""Time as an injectable value: domain code asks a Clock, never the system directly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """The system clock plus an offset that an operator (or a test) can advance, never rewind.

    Used for time-based Vault behaviour (deletion windows) so that tests and rehearsals need not wait days.
    """

    def __init__(self, base: Callable[[], datetime] | None = None, offset: timedelta = timedelta(0)) -> None:
        self._base = base or SystemClock().now
        self._offset = offset
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._base() + self._offset

    @property
    def offset(self) -> timedelta:
        return self._offset

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += delta
            return self._base() + self._offset


def to_wire(value: datetime | None) -> str | None:
    """RFC 3339 with milliseconds and Z: the SDK's fast parsing path (oci-wire.md §0.8)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_wire(text: str) -> datetime:
    """Accept RFC 3339 with Z or an offset; naive values are taken as UTC."""
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    parsed = datetime.fromisoformat(cleaned)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
