"""blockvault's own admin extensions: the injected clock (for rehearsing deletion windows), the policy explainer
(`POST /blockvault/iam/explain`) and the CIS check (`GET /blockvault/iam/cis-check`).

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
from blockvault.iam import cis
from blockvault.iam.authz import Decision
from blockvault.iam.authz import Request as AuthzRequest
from blockvault.iam.model import Principal


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


# --- IAM: explain and CIS ---------------------------------------------------------------------------------------

_KEY_OPERATIONS = frozenset(
    {
        "CreateVolume",
        "CreateBootVolume",
        "UpdateVolumeKmsKey",
        "UpdateBootVolumeKmsKey",
        "UpdateVolumeBackup",
        "UpdateBootVolumeBackup",
        "CreateVolumeBackup",
        "CreateBootVolumeBackup",
    }
)


def explain(ctx: Ctx) -> Reply:
    """Would `userId` be allowed `operation` on a target in `compartmentId` (with `kmsKeyId` K: and K's
    delegation)? Needs `inspect users` + `read policies` in the tenancy, since it reveals what policies grant.

    Body: {"userId", "operation", "compartmentId"?, "targetId"?, "kmsKeyId"?, "variables"?: {name: value}}
    """
    authz = ctx.app.authz
    tenancy_id = authz.tenancy_id
    ctx.authorize("ExplainAuthorization", compartment_id=tenancy_id)
    body = ctx.json()
    ctx.require(body, "userId", "operation")
    user = ctx.app.identity.get_user(str(body["userId"]))
    variables = body.get("variables") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise InvalidArgument(field="variables", reason="a map of variable names to strings")
    key_id = body.get("kmsKeyId")
    if key_id:
        variables = {**variables, "request.kms-key.id": str(key_id)}
    request = AuthzRequest(
        str(body["operation"]), body.get("compartmentId") or tenancy_id, body.get("targetId"), variables
    )
    decision = authz.explain(user.id, request)
    if key_id and request.operation in _KEY_OPERATIONS:
        key = ctx.region.vault.keys.get(str(key_id))
        if key is None:
            raise InvalidArgument(field="kmsKeyId", reason="no such key in this region")
        delegation = authz.key_delegation(
            _principal(ctx, user.id),
            operation=request.operation,
            key_id=key.id,
            key_compartment_id=key.compartment_id,
            vault_id=key.vault_id,
        )
        decision = Decision(
            decision.allowed and delegation.allowed,
            decision.operation,
            decision.missing + delegation.missing,
            decision.granted_by + delegation.granted_by,
        )
    out = decision.to_json()
    out["userId"] = user.id
    out["userName"] = user.name
    return Reply(out, etag=False)


def _principal(ctx: Ctx, user_id: str) -> Principal:
    return Principal(ctx.app.authz.tenancy_id, user_id, "")


def cis_check(ctx: Ctx) -> Reply:
    """Findings over every region; needs `read policies` in the tenancy (it lists resources of all compartments)."""
    authz = ctx.app.authz
    tenancy_id = authz.tenancy_id
    ctx.authorize("CisCheck", compartment_id=tenancy_id)
    volumes: list[cis.VolumeInfo] = []
    keys: list[cis.KeyInfo] = []
    vaults: list[cis.VaultInfo] = []
    for name, region in ctx.app.regions.items():
        bs, vs = region.blockstorage, region.vault
        for kind in ("volume", "bootvolume"):
            for v in bs.list_volumes(kind, None, None, None, None):
                if v.state not in ("TERMINATED", "TERMINATING"):
                    volumes.append(cis.VolumeInfo(v.id, kind, v.compartment_id, v.kms_key_id, name))
        for vault in vs.vaults.find():
            if vault.state not in ("DELETED", "PENDING_DELETION"):
                vaults.append(cis.VaultInfo(vault.id, vault.compartment_id, name))
        for k in vs.keys.find():
            version = vs.versions.get(k.current_version_id)
            created = version.time_created if version is not None else k.time_created
            keys.append(cis.KeyInfo(k.id, k.vault_id, k.compartment_id, k.state, created, name))
    policies = [cis.PolicyInfo(p.id, p.name, p.compartment_id, p.statements) for p in ctx.app.identity.list_policies()]
    findings = cis.check(
        now=ctx.app.domain_clock.now(),
        tenancy_id=tenancy_id,
        volumes=volumes,
        keys=keys,
        vaults=vaults,
        policies=policies,
    )
    return Reply({"findings": [f.to_json() for f in findings], "count": len(findings)}, etag=False)


routes = [
    Route("/blockvault/admin/clock", operation(get_clock), methods=["GET"]),
    Route("/blockvault/admin/clock/advance", operation(advance_clock), methods=["POST"]),
    Route("/blockvault/iam/explain", operation(explain), methods=["POST"]),
    Route("/blockvault/iam/cis-check", operation(cis_check), methods=["GET"]),
]
