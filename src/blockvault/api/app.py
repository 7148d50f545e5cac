"""The ASGI app: every region under /<region-name>, the default region also at the root."""

from __future__ import annotations

import json
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount

from blockvault.api import admin, attach, core, identity, kms
from blockvault.api.services import AppServices


def region_routes() -> list[BaseRoute]:
    return [*core.routes, *identity.routes, *kms.routes, *admin.routes, *attach.routes]


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
    routes: list[BaseRoute] = [Mount(f"/{name}", routes=region_routes()) for name in services.regions]
    routes += region_routes()
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed})
    app.state.services = services
    return app
