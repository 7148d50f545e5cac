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
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in mapping:
            continue
        value = mapping[f.name]
        hint = str(hints.get(f.name, ""))
        if value is not None and "datetime" in hint:
            value = datetime.fromisoformat(value)
        elif value is not None and hint.startswith("dict"):
            value = json.loads(value)
        elif isinstance(value, memoryview):
            value = bytes(value)
        kwargs[f.name] = value
    return cls(**kwargs)
