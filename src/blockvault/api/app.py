"""The ASGI app: every region under /<region-name>, the default region also at the root."""

from __future__ import annotations

import json
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount

from blockvault.api import admin, attach, core, identity, kms
from blockvault.api import groups as volume_groups
from blockvault.api import policies as backup_policies
from blockvault.api.services import AppServices
from blockvault.peer import routes as peer_routes


def region_routes() -> list[BaseRoute]:
    # backup policies first: core.routes still answers /volumeBackupPolicies with 501 (not yet implemented)
    # volume groups first too: core.routes answers /volumeGroups with 501 (not yet implemented)
    return [
        *backup_policies.routes,
        *volume_groups.routes,
        *core.routes,
        *identity.routes,
        *kms.routes,
        *admin.routes,
        *attach.routes,
    ]


async def _not_found(request: Request, exc: Exception) -> Response:
    body = {"code": "NotFound", "message": f"no operation at {request.method} {request.url.path}"}
    return Response(
        json.dumps(body),
        status_code=404,
        media_type="application/json",
        headers={"opc-request-id": request.headers.get("opc-request-id") or uuid.uuid4().hex.upper()},
    )


async def _not_allowed(request: Request, exc: Exception) -> Response:
    body = {"code": "MethodNotAllowed", "message": f"{request.method} is not allowed on {request.url.path}"}
    return Response(
        json.dumps(body),
        status_code=405,
        media_type="application/json",
        headers={"opc-request-id": request.headers.get("opc-request-id") or uuid.uuid4().hex.upper()},
    )


def create_app(services: AppServices) -> Starlette:
    # Internal peer routes live under each served region only (docs/design/regions.md); a region another process
    # serves answers 421 naming its endpoint.
    routes: list[BaseRoute] = [
        Mount(f"/{name}", routes=[*peer_routes.routes(), *region_routes()]) for name in services.regions
    ]
    routes += [
        Mount(f"/{name}", app=peer_routes.misdirected(name, remote.endpoint))
        for name, remote in services.remote_regions.items()
    ]
    routes += region_routes()
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed})
    app.state.services = services
    return app
