"""Dataclass <-> row mapping shared by the repositories: datetimes as ISO text, maps as JSON text."""

from __future__ import annotations

import dataclasses
import json
import typing
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Table

T = TypeVar("T")


def to_row(obj: Any, table: Table) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.name not in table.c:
            continue
        value = getattr(obj, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        row[f.name] = value
    return row


def from_row(cls: type[T], row: Any) -> T:
    mapping = row._mapping if hasattr(row, "_mapping") else row
    kwargs: dict[str, Any] = {}
    for name, kind in _plan(cls):
        if name not in mapping:
            continue
        value = mapping[name]
        if value is not None and kind == "datetime":
            value = datetime.fromisoformat(value)
        elif value is not None and kind == "dict":
            value = json.loads(value)
        elif isinstance(value, memoryview):
            value = bytes(value)
        kwargs[name] = value
    return cls(**kwargs)


_PLANS: dict[type[Any], tuple[tuple[str, str], ...]] = {}


def _plan(cls: type[Any]) -> tuple[tuple[str, str], ...]:
    """Per dataclass, each field's name and how its column converts back: resolving the type hints is far slower
    than converting a row (it was most of an NBD handshake's export lookup), and they never change."""
    plan = _PLANS.get(cls)
    if plan is None:
        hints = {name: str(hint) for name, hint in typing.get_type_hints(cls).items()}
        plan = _PLANS[cls] = tuple((f.name, _kind(hints.get(f.name, ""))) for f in dataclasses.fields(cls))
    return plan


def _kind(hint: str) -> str:
    return "datetime" if "datetime" in hint else "dict" if hint.startswith("dict") else ""
