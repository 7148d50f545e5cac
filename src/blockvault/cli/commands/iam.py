"""`blockvault iam ...` and `blockvault cis-check`. Filled in by the IAM issue."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add the IAM commands to the CLI."""
