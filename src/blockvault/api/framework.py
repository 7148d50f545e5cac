"""The request pipeline every OCI operation goes through: authenticate (OCI signature), parse, authorize,
replay idempotent retries, call the service, serialize, add opc-request-id / etag, and map errors.

Handlers are plain synchronous functions of a Ctx (they block on SQLite and the store), run in a thread pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from blockvault.api import errors as api_errors
from blockvault.api.services import AppServices, RegionServices
from blockvault.clock import to_wire
from blockvault.db import tables
from blockvault.errors import (
    BlockvaultError,
    CannotParseRequest,
    InvalidArgument,
    InvalidatedRetryToken,
    MissingParameter,
    PreconditionFailed,
    RelatedResourceNotFound,
)
from blockvault.iam import signing
from blockvault.iam.authz import Request as AuthzRequest
from blockvault.iam.authz import generic_key_hint, user_subject_text
from blockvault.iam.model import Principal

log = logging.getLogger("blockvault.api")

RETRY_TOKEN_TTL_S = 24 * 3600  # OCI keeps retry tokens for 24 hours

T = TypeVar("T")


@dataclass
class Reply:
    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # raw bytes (volume data) instead of JSON
    etag: bool = True


def etag_of(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]


class Ctx:
    def __init__(
        self, request: Request, body: bytes, principal: Principal, app: AppServices, region: RegionServices
    ) -> None:
        self.request, self.body, self.principal, self.app, self.region = request, body, principal, app, region
        self.path = request.path_params

    def json(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            value = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CannotParseRequest(reason=str(exc)) from exc
        if not isinstance(value, dict):
            raise CannotParseRequest(reason="the body must be a JSON object")
        return value

    def require(self, body: dict[str, Any], *names: str) -> None:
        for name in names:
            if body.get(name) is None:
                raise MissingParameter(field=name)

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def query_int(self, name: str, default: int | None = None) -> int | None:
        value = self.query(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise InvalidArgument(field=name, reason="must be an integer") from exc

    def authorize(
        self,
        operation: str,
        *,
        compartment_id: str | None = None,
        target_id: str | None = None,
        **variables: str,
    ) -> None:
        """Ask the one authorization function; a refusal is 404 NotAuthorizedOrNotFound (same bytes as absent)."""
        self.app.authz.authorize(self.principal, AuthzRequest(operation, compartment_id, target_id, variables))

    def can(
        self, operation: str, *, compartment_id: str | None = None, target_id: str | None = None, **variables: str
    ) -> bool:
        return self.app.authz.allowed(self.principal, AuthzRequest(operation, compartment_id, target_id, variables))

    def visible(
        self, operation: str, items: Iterable[T], where: Callable[[T], tuple[str, str, dict[str, str]]]
    ) -> list[T]:
        """Lists return only what the caller may inspect: `where(item)` gives (compartment, id, variables)."""
        out: list[T] = []
        for item in items:
            compartment_id, target_id, variables = where(item)
            if self.can(operation, compartment_id=compartment_id, target_id=target_id, **variables):
                out.append(item)
        return out

    def authorize_key_use(self, operation: str, key_id: str, *, field: str = "kmsKeyId") -> None:
        """D6 / R7.13-R7.19: naming a Vault key in a body needs KEY_ASSOCIATE for the caller and `use keys` for
        `service blockstorage` on that key. Absent and forbidden give the same 400
        RelatedResourceNotAuthorizedOrNotFound; the hint names the key's compartment only to a caller who may
        inspect the key."""
        vault = self.region.vault
        key = vault.keys.get(key_id) if isinstance(key_id, str) else None
        authz = self.app.authz
        subject = user_subject_text(authz, self.principal)
        base = f"the {field} {key_id} does not exist or you are not authorized to use it"
        if key is None or key.state == "DELETED":
            with contextlib.suppress(RelatedResourceNotFound):
                vault.resolve_key(key_id, field=field)  # syntax and region errors are about the string only
            raise RelatedResourceNotFound(
                f"{base}. If it exists, these statements allow it: "
                + "; ".join(generic_key_hint(operation, key_id, subject))
            )
        decision = authz.key_delegation(
            self.principal,
            operation=operation,
            key_id=key.id,
            key_compartment_id=key.compartment_id,
            vault_id=key.vault_id,
        )
        if decision.allowed:
            return
        if self.can(
            "ListKeys", compartment_id=key.compartment_id, target_id=key.id, **{"target.vault.id": key.vault_id}
        ):
            hint = "; ".join(f"{m.principal} lacks {m.permission}: {m.statement}" for m in decision.missing)
            raise RelatedResourceNotFound(f"{base}. Missing: {hint}")
        raise RelatedResourceNotFound(
            f"{base}. If it exists, these statements allow it: "
            + "; ".join(generic_key_hint(operation, key_id, subject))
        )

    def check_if_match(self, current: Any, kind: str, ident: str) -> None:
        wanted = self.request.headers.get("if-match")
        if wanted is not None and wanted != etag_of(current):
            raise PreconditionFailed(kind=kind, ident=ident)

    def page(self, items: list[Any]) -> Reply:
        """Bare JSON array + opc-next-page only when more remain (oci-wire.md §0.4)."""
        limit = self.query_int("limit", 1000) or 1000
        if limit < 1 or limit > 1000:
            raise InvalidArgument(field="limit", reason="must be between 1 and 1000")
        token = self.query("page")
        start = 0
        if token:
            try:
                start = int(token)
            except ValueError as exc:
                raise InvalidArgument(field="page", reason="not a page token from this service") from exc
        chunk = items[start : start + limit]
        headers = {"opc-next-page": str(start + limit)} if start + limit < len(items) else {}
        return Reply(chunk, headers=headers, etag=False)


def sort(items: list[dict[str, Any]], ctx: Ctx) -> list[dict[str, Any]]:
    by = (ctx.query("sortBy") or "TIMECREATED").upper()
    order = (ctx.query("sortOrder") or ("DESC" if by == "TIMECREATED" else "ASC")).upper()
    if by not in ("TIMECREATED", "DISPLAYNAME") or order not in ("ASC", "DESC"):
        raise InvalidArgument(field="sortBy", reason="sortBy is TIMECREATED or DISPLAYNAME; sortOrder ASC or DESC")
    field_name = "timeCreated" if by == "TIMECREATED" else "displayName"
    return sorted(items, key=lambda x: (str(x.get(field_name) or "").lower(), x["id"]), reverse=order == "DESC")


Handler = Callable[[Ctx], Reply]


def _json_response(status: int, body: Any, request_id: str, headers: dict[str, str] | None = None) -> Response:
    data = b"" if body is None else json.dumps(body).encode()
    out = {"opc-request-id": request_id, **(headers or {})}
    return Response(data, status_code=status, headers=out, media_type="application/json")


def _region_of(request: Request, app: AppServices) -> RegionServices:
    root = request.scope.get("root_path", "") or ""
    first = root.strip("/").split("/")[0] if root.strip("/") else ""
    return app.regions.get(first) or app.regions[app.default_region]


def operation(handler: Handler, *, idempotent_post: bool = False) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        app: AppServices = request.app.state.services
        request_id = request.headers.get("opc-request-id") or uuid.uuid4().hex.upper()
        try:
            body = await request.body()
            raw_target = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
            qs = request.scope.get("query_string", b"").decode("latin-1")
            if qs:
                raw_target += "?" + qs
            signed = signing.SignedRequest(
                method=request.method,
                raw_target=raw_target,
                headers=request.headers,
                body=body,
            )
            verified = signing.verify(signed, lookup=app.identity.public_key, now=app.wall_clock.now())
            principal = Principal(verified.key_id.tenancy_id, verified.key_id.user_id, verified.key_id.fingerprint)
            region = _region_of(request, app)
            ctx = Ctx(request, body, principal, app, region)
            token = request.headers.get("opc-retry-token") if request.method == "POST" else None
            if token and idempotent_post:
                replay = await run_in_threadpool(_replay, region, token, principal, signed)
                if replay is not None:
                    return replay
            reply = await run_in_threadpool(handler, ctx)
        except BlockvaultError as exc:
            status, payload = api_errors.to_wire(exc)
            if status >= 500 and status != 501:
                log.error("%s %s failed: %s", request.method, request.url.path, exc)
            return _json_response(status, payload, request_id)
        except Exception:
            log.exception("%s %s crashed", request.method, request.url.path)
            return _json_response(500, {"code": "InternalServerError", "message": "internal error"}, request_id)
        if reply.raw is not None:
            return Response(
                reply.raw,
                status_code=reply.status,
                media_type="application/octet-stream",
                headers={"opc-request-id": request_id, **reply.headers},
            )
        headers = dict(reply.headers)
        if reply.etag and isinstance(reply.body, dict):
            headers["etag"] = etag_of(reply.body)
        response = _json_response(reply.status, reply.body, request_id, headers)
        if token and idempotent_post and 200 <= reply.status < 300:
            await run_in_threadpool(_remember, region, token, principal, signed, response)
        return response

    return endpoint


def _request_hash(signed: signing.SignedRequest) -> str:
    return hashlib.sha256(signed.method.encode() + b" " + signed.raw_target.encode() + b"\n" + signed.body).hexdigest()


def _replay(region: RegionServices, token: str, principal: Principal, signed: signing.SignedRequest) -> Response | None:
    """opc-retry-token: the same token and request within 24 h answer what the first attempt answered."""
    now = region.clock.now()
    with region.engine.begin() as conn:
        conn.execute(
            delete(tables.retry_tokens).where(
                tables.retry_tokens.c.time_created
                < to_wire(now.__class__.fromtimestamp(now.timestamp() - RETRY_TOKEN_TTL_S, now.tzinfo))
            )
        )
        row = conn.execute(
            select(tables.retry_tokens).where(
                tables.retry_tokens.c.token == token, tables.retry_tokens.c.principal == principal.user_id
            )
        ).first()
    if row is None:
        return None
    if row.request_hash != _request_hash(signed):
        raise InvalidatedRetryToken()
    return Response(
        bytes(row.response), status_code=row.status, headers=json.loads(row.headers), media_type="application/json"
    )


def _remember(
    region: RegionServices, token: str, principal: Principal, signed: signing.SignedRequest, response: Response
) -> None:
    headers = {k: v for k, v in response.headers.items() if k in ("etag", "opc-work-request-id", "opc-request-id")}
    with region.engine.begin() as conn:
        existing = conn.execute(
            select(tables.retry_tokens.c.token).where(
                tables.retry_tokens.c.token == token, tables.retry_tokens.c.principal == principal.user_id
            )
        ).first()
        if existing is None:
            conn.execute(
                insert(tables.retry_tokens).values(
                    token=token,
                    principal=principal.user_id,
                    request_hash=_request_hash(signed),
                    status=response.status_code,
                    response=bytes(response.body),
                    headers=json.dumps(headers),
                    time_created=to_wire(region.clock.now()),
                )
            )
