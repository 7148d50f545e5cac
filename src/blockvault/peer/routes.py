"""The serving side of the peer transport: `POST /<region>/internal/peer/<interface>/<method>`.

Each call is verified as signed by the service identity (401 otherwise, with the API's JSON error body: a user's
key is refused like any other key), decoded, dispatched to the in-process implementation of the Protocol for that
region (or to an open handle), and answered with one frame: `{"r": result}` or the domain error. A result that is a
handle (the method returns a registered Protocol) is kept here under a random id until its `close`, or until it
has been idle for `idle_seconds` (then closed: an export's DEKs do not outlive a caller that died).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from blockvault.api import errors as api_errors
from blockvault.api.services import AppServices, RegionServices
from blockvault.errors import BlockvaultError, NotAuthenticated, NotFound
from blockvault.iam import signing
from blockvault.peer import identity as service_identity
from blockvault.peer.client import HandleGone
from blockvault.peer.codec import CodecError, HandleRef, decode, encode, remote_error
from blockvault.peer.registry import Interface, PeerRegistry

__all__ = ["HandleTable", "PeerServer", "routes"]

log = logging.getLogger("blockvault.peer")

# An open export holds unwrapped DEKs: a caller that died mid-copy must not keep them alive for long. A live caller
# asks for a batch at least every few seconds; 120 s of silence means it is gone (and it reopens if it was not).
IDLE_SECONDS = 120.0


@dataclass
class _Open:
    obj: Any
    interface: Interface
    region: str
    last_used: float


class HandleTable:
    """Open handles of this process, by random id. Thread-safe."""

    def __init__(self, *, idle_seconds: float = IDLE_SECONDS, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()
        self._idle, self._monotonic = idle_seconds, monotonic

    def add(self, obj: Any, interface: Interface, region: str) -> HandleRef:
        handle = secrets.token_urlsafe(18)
        props = {p: getattr(obj, p) for p in interface.properties}
        with self._lock:
            self._open[handle] = _Open(obj, interface, region, self._monotonic())
        return HandleRef(handle, interface.name, props)

    def get(self, handle: str, interface: Interface, region: str) -> Any:
        with self._lock:
            entry = self._open.get(handle)
            if entry is None or entry.interface is not interface or entry.region != region:
                raise HandleGone(ident=handle[:6] + "...")
            entry.last_used = self._monotonic()
            return entry.obj

    def drop(self, handle: str) -> None:
        with self._lock:
            self._open.pop(handle, None)

    def sweep(self) -> int:
        """Close every handle idle for longer than the limit; returns how many."""
        now = self._monotonic()
        with self._lock:
            stale = [h for h, e in self._open.items() if now - e.last_used > self._idle]
            entries = [self._open.pop(h) for h in stale]
        for entry in entries:
            _close(entry.obj)
        return len(entries)

    def close_all(self) -> None:
        with self._lock:
            entries = list(self._open.values())
            self._open.clear()
        for entry in entries:
            _close(entry.obj)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # closing is best effort; nothing must stop the sweep
            log.exception("closing an idle peer handle failed")


@dataclass
class PeerServer:
    """What the internal routes need; server.py puts one on `app.state.peer`."""

    registry: PeerRegistry
    identity: service_identity.ServiceIdentity
    handles: HandleTable


def _region(request: Request, app: AppServices) -> RegionServices | None:
    root = (request.scope.get("root_path", "") or "").strip("/")
    return app.regions.get(root.split("/")[0]) if root else None


def _json_error(status: int, code: str, message: str, request: Request) -> Response:
    return Response(
        json.dumps({"code": code, "message": message}),
        status_code=status,
        media_type="application/json",
        headers={"opc-request-id": request.headers.get("opc-request-id") or uuid.uuid4().hex.upper()},
    )


def _frame(status: int, value: Any, registry: PeerRegistry) -> Response:
    return Response(encode(value, registry.types), status_code=status, media_type=service_identity.CONTENT_TYPE)


async def call(request: Request) -> Response:
    app: AppServices = request.app.state.services
    peer: PeerServer | None = getattr(request.app.state, "peer", None)
    region = _region(request, app)
    if peer is None or region is None:
        return _json_error(404, "NotFound", f"no operation at {request.method} {request.url.path}", request)
    body = await request.body()
    raw_target = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    qs = request.scope.get("query_string", b"").decode("latin-1")
    signed = signing.SignedRequest(request.method, raw_target + (f"?{qs}" if qs else ""), request.headers, body)
    try:
        service_identity.verify(peer.identity, signed, app.wall_clock.now())
    except NotAuthenticated as exc:
        log.warning("refused a peer call to %s: %s", request.url.path, exc.context.get("check"))
        return _json_error(401, "NotAuthenticated", exc.text, request)
    registry = peer.registry
    iface = registry.get(str(request.path_params["interface"]))
    method = str(request.path_params["method"])
    if iface is None or method not in iface.methods:
        return _json_error(404, "NotFound", f"no peer operation {iface.name if iface else '?'}.{method}", request)
    try:
        message = decode(body, registry.types)
        if not isinstance(message, dict) or set(message) != {"h", "a", "k"}:
            raise CodecError("a call is {h, a, k}")
        handle, args, kwargs = message["h"], message["a"], message["k"]
        if (
            not (handle is None or isinstance(handle, str))
            or not isinstance(args, list)
            or not isinstance(kwargs, dict)
        ):
            raise CodecError("a call's handle is a string or null, its args a list and its kwargs a dict")
    except CodecError as exc:
        return _json_error(400, "CannotParseRequest", f"not a peer call: {exc}", request)
    peer.handles.sweep()
    try:
        result = await run_in_threadpool(_dispatch, peer, app, region, request, iface, method, handle, args, kwargs)
    except BlockvaultError as exc:
        status, _ = api_errors.to_wire(exc)
        return _frame(status, remote_error(exc, registry.types), registry)
    except Exception:
        log.exception("peer call %s.%s crashed", iface.name, method)
        return _json_error(500, "InternalServerError", "internal error", request)
    return _frame(200, {"r": result}, registry)


def _dispatch(
    peer: PeerServer,
    app: AppServices,
    region: RegionServices,
    request: Request,
    iface: Interface,
    method: str,
    handle: str | None,
    args: list[Any],
    kwargs: dict[str, Any],
) -> Any:
    name = region.region.name
    if handle is not None:
        target = peer.handles.get(handle, iface, name)
    elif iface.local is not None:
        target = iface.local(app, region, request)
    else:
        raise NotFound(kind="peer interface", ident=iface.name)
    result = getattr(target, method)(*args, **kwargs)
    if handle is not None and method == "close":
        peer.handles.drop(handle)
    returned = peer.registry.handle_interface(iface, method)
    if returned is not None and result is not None:
        return peer.handles.add(result, returned, name)
    return result


def routes() -> list[BaseRoute]:
    """Mounted under each served region's prefix (api/app.py): never at the root, a call always names its region."""
    return [Route("/internal/peer/{interface}/{method}", call, methods=["POST"])]


def misdirected(region: str, endpoint: str) -> Callable[[Any, Any, Any], Any]:
    """An ASGI app for `/<region>/...` of a region another process serves: 421 Misdirected Request naming the
    endpoint to use. Not a proxy: a user's signature covers the host it was sent to, and blockvault.json already
    lists every region's endpoint, which is where our CLI and a configured oci CLI send their requests."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = _json_error(
            421,
            "MisdirectedRequest",
            f"{region} is served by another blockvault process of this deployment: send the request to {endpoint}",
            request,
        )
        await response(scope, receive, send)

    return app
