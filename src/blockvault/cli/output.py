"""Everything the CLI writes goes through here; handlers never call ``print``.

The JSON follows the real ``oci`` CLI: ``{"data": ..., "etag": ...}``, ``indent=2``, sorted keys, non-ASCII kept.
The CLI prints SDK model attribute names with ``_`` turned into ``-`` (``size_in_gbs`` -> ``size-in-gbs``); the SDK
derives those names from the camelCase wire names, so :func:`kebab_key` does the same derivation directly on the
wire JSON. User-keyed maps (tags, associated data) are values, not model attributes: their keys are left alone, as
the real CLI leaves them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TextIO

# Wire fields whose value is a map keyed by the user: never rename inside them.
OPAQUE_MAPS = frozenset({"freeformTags", "definedTags", "systemTags", "associatedData", "loggingContext"})

# The only camelCase names (in oci.core, oci.key_management and oci.identity 2.189.0, 5170 attributes checked)
# where the SDK's snake_case name differs from the simple rule below. (minInGBs/maxInGBs are spelled both ways by
# different compute models, so no rule can match both; the simple rule is kept for them.)
_SDK_EXCEPTIONS: dict[str, str] = {
    "canUseDBCredentials": "can-use-db-credentials",
    "canUseOAuth2ClientCredentials": "can-use-o-auth2-client-credentials",
    "defaultPerOcpuInGBs": "default-per-ocpu-in-g-bs",
    "isAIEnterpriseEnabled": "is-ai-enterprise-enabled",
    "lightLevelsInDBm": "light-levels-in-d-bm",
}

_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def kebab_key(key: str) -> str:
    """``sizeInGBs`` -> ``size-in-gbs``, ``vpusPerGB`` -> ``vpus-per-gb``, ``lifecycleState`` -> ``lifecycle-state``."""
    if key in _SDK_EXCEPTIONS:
        return _SDK_EXCEPTIONS[key]
    return _BOUNDARY.sub("-", key).lower()


def to_cli(value: Any) -> Any:
    """Convert wire JSON (camelCase keys) to the CLI's key style, recursively through dicts and lists."""
    if isinstance(value, Mapping):
        return {kebab_key(k): (v if k in OPAQUE_MAPS else to_cli(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [to_cli(v) for v in value]
    return value


def dumps(doc: Any) -> str:
    """The real CLI's ``pretty_print_format``."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)


class Output:
    """Writes results to stdout and diagnostics to stderr, as JSON (default) or a plain table."""

    def __init__(self, stdout: TextIO, stderr: TextIO, *, fmt: str = "json") -> None:
        if fmt not in ("json", "table"):
            raise ValueError(f"unknown output format {fmt!r}")
        self.stdout = stdout
        self.stderr = stderr
        self.fmt = fmt

    def emit(
        self,
        data: Any,
        *,
        etag: str | None = None,
        next_page: str | None = None,
        work_request_id: str | None = None,
        convert: bool = True,
    ) -> None:
        """Print one result the way the real CLI does: ``data`` plus the display headers that are present."""
        doc: dict[str, Any] = {"data": to_cli(data) if convert else data}
        if etag is not None:
            doc["etag"] = etag
        if next_page is not None:
            doc["opc-next-page"] = next_page
        if work_request_id is not None:
            doc["opc-work-request-id"] = work_request_id
        if self.fmt == "table":
            self.stdout.write(render_table(doc["data"]) + "\n")
        else:
            self.stdout.write(dumps(doc) + "\n")
        self.stdout.flush()

    def emit_raw(self, doc: Any) -> None:
        """Print a document as is (admin extension replies, which are not OCI resources)."""
        if self.fmt == "table":
            self.stdout.write(render_table(doc) + "\n")
        else:
            self.stdout.write(dumps(doc) + "\n")
        self.stdout.flush()

    def note(self, message: str) -> None:
        """A human message on stderr (the real CLI's 'Action completed. Waiting ...')."""
        self.stderr.write(message + "\n")
        self.stderr.flush()

    def error(self, doc: Mapping[str, Any]) -> None:
        """An error block on stderr, JSON like the real CLI's ServiceError output."""
        self.stderr.write(json.dumps(doc, indent=4, sort_keys=False, ensure_ascii=False) + "\n")
        self.stderr.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def render_table(data: Any) -> str:
    """A plain-text table: one row per item for lists of objects, key/value rows for one object."""
    if isinstance(data, Mapping):
        rows = [[str(k), _cell(v)] for k, v in sorted(data.items())]
        return _grid(["key", "value"], rows)
    if isinstance(data, list) and all(isinstance(item, Mapping) for item in data):
        columns: list[str] = []
        for item in data:
            for key in item:
                if key not in columns:
                    columns.append(key)
        columns.sort()
        return _grid(columns, [[_cell(item.get(c)) for c in columns] for item in data])
    return _cell(data)


def _grid(header: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: list[str]) -> str:
        return "|" + "|".join(f" {c.ljust(w)} " for c, w in zip(cells, widths, strict=True)) + "|"

    out = [sep, line(header), sep, *(line(r) for r in rows), sep]
    return "\n".join(out)
