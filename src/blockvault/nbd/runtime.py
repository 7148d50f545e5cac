"""Start and stop the NBD server inside `blockvault serve`. Filled in by the NBD attach issue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def start(server: Any) -> Callable[[], None] | None:
    """Start serving NBD for `server` (a blockvault.server.Server); return a function that stops it, or None."""
    return None
