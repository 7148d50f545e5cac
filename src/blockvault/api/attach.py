"""Volume attachments (NBD exports). Filled in by the NBD attach issue."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
