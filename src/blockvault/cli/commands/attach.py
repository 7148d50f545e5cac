"""`blockvault volume attach|detach` (NBD). Filled in by the NBD attach issue."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add the attach/detach commands to the CLI."""
