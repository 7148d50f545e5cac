"""Backup policies and their assignments (/20160918/volumeBackupPolicies, /volumeBackupPolicyAssignments).

Oracle-defined policies (gold, silver, bronze) live in the root compartment: reading them needs `inspect
backup-policies` in the tenancy (R3.13), changing them is refused (400 InvalidParameter, R3.10). An assignment has
no compartment of its own: it is authorized in its asset's compartment. An `xrcKmsKeyId` on an assignment whose
policy copies cross-region is a key of the DESTINATION region and needs the same key delegation there as a
backup copy with a key (D6).

Assets are volumes, boot volumes and volume groups; a group takes only user-defined policies (R3.10).
`backupPolicyId` on CreateVolume / CreateBootVolume / CreateVolumeGroup (`create_with_policy`) is the same
assignment, checked before the resource is made and recorded right after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.routing import Route

from blockvault.api.framework import Ctx, Reply, operation
from blockvault.blockstorage import policies as pol
from blockvault.blockstorage.scheduler import Assignment, BackupPolicyService
from blockvault.clock import to_wire
from blockvault.errors import InvalidArgument, NotFound, RelatedResourceNotFound

R = TypeVar("R")

BASE = "/20160918/volumeBackupPolicies"
ASSIGN = "/20160918/volumeBackupPolicyAssignments"


def service(ctx: Ctx) -> BackupPolicyService:
    region = ctx.region
    return BackupPolicyService(
        engine=region.engine,
        blockstorage=region.blockstorage,
        clock=region.clock,
        compartment_exists=ctx.app.identity.compartment_exists,
        groups=region.groups,
    )


def policy_wire(p: pol.Policy) -> dict[str, Any]:
    return {
        "id": p.id,
        "displayName": p.display_name,
        "compartmentId": p.compartment_id,
        "destinationRegion": p.destination_region,
        "schedules": [s.to_json() for s in p.schedules],
        "timeCreated": to_wire(p.time_created),
        "freeformTags": p.freeform_tags,
        "definedTags": p.defined_tags,
    }


def assignment_wire(a: Assignment) -> dict[str, Any]:
    return {
        "id": a.id,
        "assetId": a.asset_id,
        "policyId": a.policy_id,
        "timeCreated": to_wire(a.time_created),
        "xrcKmsKeyId": a.xrc_kms_key_id,
    }


# --- policies ----------------------------------------------------------------------------------------------------


def create_policy(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "compartmentId")
    ctx.authorize("CreateVolumeBackupPolicy", compartment_id=str(body["compartmentId"]))
    return Reply(policy_wire(service(ctx).create_policy(body)))


def _policy(ctx: Ctx, op: str) -> pol.Policy:
    p = service(ctx).get_policy(str(ctx.path["policy_id"]))
    ctx.authorize(op, compartment_id=p.compartment_id, target_id=p.id)
    return p


def get_policy(ctx: Ctx) -> Reply:
    return Reply(policy_wire(_policy(ctx, "GetVolumeBackupPolicy")))


def list_policies(ctx: Ctx) -> Reply:
    items = service(ctx).list_policies(ctx.query("compartmentId"))
    items = ctx.visible("ListVolumeBackupPolicies", items, lambda p: (p.compartment_id or "", p.id, {}))
    return ctx.page([policy_wire(p) for p in items])


def update_policy(ctx: Ctx) -> Reply:
    p = _policy(ctx, "UpdateVolumeBackupPolicy")
    ctx.check_if_match(policy_wire(p), "volume backup policy", p.id)
    return Reply(policy_wire(service(ctx).update_policy(p.id, ctx.json())))


def delete_policy(ctx: Ctx) -> Reply:
    p = _policy(ctx, "DeleteVolumeBackupPolicy")
    ctx.check_if_match(policy_wire(p), "volume backup policy", p.id)
    service(ctx).delete_policy(p.id)
    return Reply(None, status=204, etag=False)


# --- assignments -------------------------------------------------------------------------------------------------


def create_assignment(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "assetId", "policyId")
    svc = service(ctx)
    asset = svc.asset(body["assetId"])
    ctx.authorize("CreateVolumeBackupPolicyAssignment", compartment_id=asset.compartment_id, target_id=asset.id)
    policy_id = str(body["policyId"])
    p = svc.get_policy(policy_id)
    if not ctx.can("GetVolumeBackupPolicy", compartment_id=p.compartment_id, target_id=p.id):
        raise NotFound(kind="volume backup policy", ident=policy_id)
    xrc = _xrc_key(ctx, p, body.get("xrcKmsKeyId"))
    return Reply(assignment_wire(svc.create_assignment(asset.id, p.id, xrc)))


def _xrc_key(ctx: Ctx, p: pol.Policy, xrc: Any) -> str | None:
    """R3.28: the destination key of scheduled copies, checked (D6) in the policy's destination region."""
    if xrc is not None and not isinstance(xrc, str):
        raise InvalidArgument(field="xrcKmsKeyId", reason="must be the OCID of a key")
    if xrc and p.destination_region:
        remote = ctx.app.remote_regions.get(p.destination_region)
        if remote is not None:  # served by another process: the key is checked there, for the caller
            remote.copy_target.authorize_key_use(
                ctx.principal, "CreateVolumeBackupPolicyAssignment", xrc, "xrcKmsKeyId", resolve=True
            )
            return xrc
        destination = ctx.app.regions[p.destination_region]
        Ctx(ctx.request, ctx.body, ctx.principal, ctx.app, destination).authorize_key_use(
            "CreateVolumeBackupPolicyAssignment", xrc, field="xrcKmsKeyId"
        )
        destination.vault.resolve_key(xrc, field="xrcKmsKeyId")
    return xrc or None


def create_with_policy(
    ctx: Ctx,
    body: dict[str, Any],
    create: Callable[[dict[str, Any]], R],
    asset_id: Callable[[R], str],
    *,
    group: bool = False,
) -> R:
    """`backupPolicyId` (with `xrcKmsKeyId`, R3.28) on CreateVolume / CreateBootVolume / CreateVolumeGroup.

    Everything that can be refused is checked before `create` runs, so a refused request makes nothing: the
    assignment permission, the policy (unknown or not visible: 400 RelatedResourceNotAuthorizedOrNotFound naming
    `backupPolicyId`; Oracle-defined for a volume group: 400 InvalidParameter, R3.10) and the key. The assignment
    is recorded right after the resource is made; a create that fails therefore leaves no assignment."""
    policy_id = body.get("backupPolicyId")
    if policy_id is None or policy_id == "":
        return create(body)
    if not isinstance(policy_id, str):
        raise InvalidArgument(field="backupPolicyId", reason="must be the OCID of a volume backup policy")
    svc = service(ctx)
    ctx.authorize("CreateVolumeBackupPolicyAssignment", compartment_id=str(body["compartmentId"]))
    try:
        p = svc.get_policy(policy_id)
    except NotFound:
        raise RelatedResourceNotFound(field="backupPolicyId", ident=policy_id) from None
    if not ctx.can("GetVolumeBackupPolicy", compartment_id=p.compartment_id, target_id=p.id):
        raise RelatedResourceNotFound(field="backupPolicyId", ident=policy_id)
    pol.check_assignable(p, group=group, field="backupPolicyId")
    xrc = _xrc_key(ctx, p, body.get("xrcKmsKeyId"))
    made = create({k: v for k, v in body.items() if k != "backupPolicyId"})
    svc.create_assignment(asset_id(made), p.id, xrc)
    return made


def _assignment(ctx: Ctx, op: str) -> Assignment:
    svc = service(ctx)
    a = svc.get_assignment(str(ctx.path["assignment_id"]))
    asset = svc.find_asset(a.asset_id)
    ctx.authorize(op, compartment_id=asset.compartment_id if asset else None, target_id=a.id)
    return a


def get_assignment(ctx: Ctx) -> Reply:
    return Reply(assignment_wire(_assignment(ctx, "GetVolumeBackupPolicyAssignment")))


def delete_assignment(ctx: Ctx) -> Reply:
    a = _assignment(ctx, "DeleteVolumeBackupPolicyAssignment")
    ctx.check_if_match(assignment_wire(a), "volume backup policy assignment", a.id)
    service(ctx).delete_assignment(a.id)
    return Reply(None, status=204, etag=False)


def asset_assignment(ctx: Ctx) -> Reply:
    """GetVolumeBackupPolicyAssetAssignment: a list of 0 or 1 assignments of `assetId`."""
    asset_id = ctx.query("assetId")
    svc = service(ctx)
    volume = svc.asset(asset_id)
    ctx.authorize("GetVolumeBackupPolicyAssignment", compartment_id=volume.compartment_id, target_id=volume.id)
    return ctx.page([assignment_wire(a) for a in svc.asset_assignments(volume.id)])


routes = [
    Route(BASE, operation(create_policy, idempotent_post=True), methods=["POST"]),
    Route(BASE, operation(list_policies), methods=["GET"]),
    Route(BASE + "/{policy_id}", operation(get_policy), methods=["GET"]),
    Route(BASE + "/{policy_id}", operation(update_policy), methods=["PUT"]),
    Route(BASE + "/{policy_id}", operation(delete_policy), methods=["DELETE"]),
    Route(ASSIGN, operation(create_assignment), methods=["POST"]),
    Route(ASSIGN, operation(asset_assignment), methods=["GET"]),
    Route(ASSIGN + "/{assignment_id}", operation(get_assignment), methods=["GET"]),
    Route(ASSIGN + "/{assignment_id}", operation(delete_assignment), methods=["DELETE"]),
]
