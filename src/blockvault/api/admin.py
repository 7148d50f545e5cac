"""blockvault's own admin extension: the injected clock (for rehearsing deletion windows).

Only the bootstrap administrator may call it, and only when `serve --allow-clock-control` turned it on: moving time
forward lets pending key deletions happen now, which is exactly what crypto-shredding rehearsals need and what a
production deployment must not allow by accident.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.routing import Route

from blockvault.api.framework import Ctx, Reply, operation
from blockvault.clock import to_wire
from blockvault.errors import InvalidArgument, PermissionDenied


def _admin(ctx: Ctx) -> None:
    if not ctx.app.allow_clock_control or ctx.principal.user_id not in ctx.app.admin_user_ids:
        raise PermissionDenied(kind="admin", ident="clock")


def _state(ctx: Ctx) -> dict[str, object]:
    return {
        "now": to_wire(ctx.app.domain_clock.now()),
        "offsetSeconds": int(ctx.app.domain_clock.offset.total_seconds()),
    }


def get_clock(ctx: Ctx) -> Reply:
    _admin(ctx)
    return Reply(_state(ctx), etag=False)


def advance_clock(ctx: Ctx) -> Reply:
    _admin(ctx)
    body = ctx.json()
    seconds = body.get("seconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
        raise InvalidArgument(field="seconds", reason="a non-negative integer")
    ctx.app.domain_clock.advance(timedelta(seconds=seconds))
    destroyed: list[str] = []
    for region in ctx.app.regions.values():
        destroyed += region.vault.process_deletions()
    return Reply({**_state(ctx), "keysDestroyed": destroyed}, etag=False)


routes = [
    Route("/blockvault/admin/clock", operation(get_clock), methods=["GET"]),
    Route("/blockvault/admin/clock/advance", operation(advance_clock), methods=["POST"]),
]
