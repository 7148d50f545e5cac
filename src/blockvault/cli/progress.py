"""A small progress bar for data transfers, drawn on stderr.

    [##########..........]  50.0%  2048.0/4096.0 MiB  312.4 MB/s

Redrawn in place with ``\\r`` at most ``max_fps`` times a second, finished with a newline. Rates are in MB/s
(10**6 bytes, like ``dd``), sizes in MiB. The clock is injected so tests need not sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

_WIDTH = 30
_MIB = 1 << 20


class Progress:
    """Tracks bytes done out of a known total; silent when ``enabled`` is false."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        enabled: bool,
        label: str = "",
        now: Callable[[], float] = time.monotonic,
        max_fps: float = 10.0,
    ) -> None:
        self.total = max(total, 0)
        self.done = 0
        self._stream = stream
        self._enabled = enabled
        self._label = label
        self._now = now
        self._start = now()
        self._last_draw = float("-inf")
        self._drawn_done = -1
        self._min_interval = 1.0 / max_fps if max_fps > 0 else 0.0
        self._closed = False

    def advance(self, nbytes: int) -> None:
        """Count ``nbytes`` more as done and redraw if enough time has passed."""
        self.done += nbytes
        if not self._enabled:
            return
        t = self._now()
        if t - self._last_draw >= self._min_interval or self.done >= self.total:
            self._last_draw = t
            self._draw(t)

    def render(self, t: float | None = None) -> str:
        """The bar as text (without the leading carriage return)."""
        t = self._now() if t is None else t
        frac = 1.0 if self.total == 0 else min(self.done / self.total, 1.0)
        filled = int(frac * _WIDTH)
        bar = "#" * filled + "." * (_WIDTH - filled)
        elapsed = max(t - self._start, 1e-9)
        rate = self.done / elapsed / 1e6
        prefix = f"{self._label} " if self._label else ""
        return (
            f"{prefix}[{bar}] {frac * 100:5.1f}%  {self.done / _MIB:.1f}/{self.total / _MIB:.1f} MiB  {rate:.1f} MB/s"
        )

    def _draw(self, t: float) -> None:
        self._drawn_done = self.done
        self._stream.write("\r" + self.render(t))
        self._stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self._closed:
            return
        self._closed = True
        if self._enabled:
            if self._drawn_done != self.done:
                self._draw(self._now())
            self._stream.write("\n")
            self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def should_show(stream: TextIO, force: bool | None) -> bool:
    """``--progress`` forces it on, ``--no-progress`` off; otherwise only when ``stream`` is a terminal."""
    if force is not None:
        return force
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):
        return False
