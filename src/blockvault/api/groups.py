"""Volume groups and volume group backups (/20160918/volumeGroups, /20160918/volumeGroupBackups; oci-wire.md §4.5).

Group replication (docs/design/replication.md, "Volume group replicas"): `volumeGroupReplicas` on create and
update (with `?preserveVolumeReplica=`), GET/LIST /volumeGroupReplicas on the destination's endpoint, activation
with sourceDetails volumeGroupReplicaId. A group backup copy to a region another process serves goes through
`BackupCopyTarget.create_group_backup_copy` (peer/interfaces.py), as CopyVolumeBackup does. `backupPolicyId`
assigns a user-defined backup policy to the new group (api/policies.create_with_policy). Ignored on input:
clusterPlacementGroupId, xrcKmsKeyId (but for the backupPolicyId assignment), retention settings.

Authorization (R7.25, iam/operations.py): the group operation in the group's compartment, plus, for a resource the
body names, the permission on that resource in its own compartment: each volume joining a group (`inspect
volumes`), each source volume of a group clone (`use volumes`, as a volume clone), each member backup of a restored
group backup (`read volume-backups`, as a restore); forbidden looks like absent (400
RelatedResourceNotAuthorizedOrNotFound). A group backup also needs `CreateVolumeBackup` on every member volume and
its deletion `DeleteVolumeBackup` on every member backup, since it creates and deletes ordinary volume backups.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from blockvault.api.core import copy_destination
from blockvault.api.framework import Ctx, Reply, operation, sort
from blockvault.api.policies import create_with_policy
from blockvault.blockstorage.group_replication import GroupReplicaLink, GroupReplicaView
from blockvault.blockstorage.groups import GroupBackupView, GroupView, VolumeGroupService, replica_entries
from blockvault.blockstorage.service import NotImplementedYet
from blockvault.clock import to_wire as t
from blockvault.errors import InvalidArgument, MissingParameter, RelatedResourceNotFound

MIB = 1 << 20
GIB = 1 << 30


def _svc(ctx: Ctx) -> VolumeGroupService:
    groups = ctx.region.groups
    if groups is None:  # a composition without VolumeGroupService: 501, which the CLI does not retry (503 it would)
        raise NotImplementedYet(feature=f"Volume groups in {ctx.region.region.name}")
    return groups


# --- wire -----------------------------------------------------------------------------------------------------


def volume_group(view: GroupView, links: list[GroupReplicaLink] | None = None) -> dict[str, Any]:
    g = view.group
    return {
        "id": g.id,
        "availabilityDomain": g.availability_domain,
        "compartmentId": g.compartment_id,
        "displayName": g.display_name,
        "freeformTags": g.freeform_tags,
        "definedTags": g.defined_tags,
        "lifecycleState": view.state,
        "sizeInGBs": view.size_gb,
        "sizeInMBs": view.size_gb * 1024,
        "sourceDetails": g.source_details,
        "timeCreated": t(g.time_created),
        "volumeIds": [v.id for v in view.members],
        "isHydrated": view.is_hydrated,
        "volumeGroupReplicas": [
            {
                "displayName": link.display_name,
                "volumeGroupReplicaId": link.id,
                "availabilityDomain": link.availability_domain,
                "kmsKeyId": link.kms_key_id,
            }
            for link in links
        ]
        if links
        else None,
    }


def _group_wire(ctx: Ctx, view: GroupView) -> dict[str, Any]:
    return volume_group(view, _svc(ctx).replica_links(view.group.id))


def volume_group_replica(view: GroupReplicaView) -> dict[str, Any]:
    """VolumeGroupReplica: its members are block/boot volume replicas (`memberReplicas`, R5.19)."""
    r = view.replica
    return {
        "id": r.id,
        "availabilityDomain": r.availability_domain,
        "compartmentId": r.compartment_id,
        "displayName": r.display_name,
        "freeformTags": r.freeform_tags,
        "definedTags": r.defined_tags,
        "lifecycleState": view.state,
        "sizeInGBs": view.size_gb,
        "volumeGroupId": r.source_group_id,
        "timeCreated": t(r.time_created),
        "timeLastSynced": t(r.time_last_synced) if r.time_last_synced else None,
        "memberReplicas": [
            {"volumeReplicaId": m.id, "membershipState": view.membership_state(m)} for m in view.members
        ],
    }


def volume_group_backup(view: GroupBackupView) -> dict[str, Any]:
    b = view.backup
    unique = view.unique_size_bytes
    return {
        "id": b.id,
        "compartmentId": b.compartment_id,
        "displayName": b.display_name,
        "freeformTags": b.freeform_tags,
        "definedTags": b.defined_tags,
        "expirationTime": t(b.expiration_time) if b.expiration_time else None,  # scheduled (policy) backups
        "lifecycleState": view.state,
        "sizeInGBs": view.size_gb,
        "sizeInMBs": view.size_gb * 1024,
        "sourceType": b.source_type,
        "timeCreated": t(b.time_created),
        "timeRequestReceived": t(b.time_request_received),
        "type": b.type,
        "uniqueSizeInMbs": -(-unique // MIB),  # oci-wire.md §0.17: this casing, rounded up like volume backups
        "uniqueSizeInGbs": -(-unique // GIB),
        "volumeBackupIds": [m.id for m in view.members],
        "volumeGroupId": b.volume_group_id,
        "sourceVolumeGroupBackupId": b.source_volume_group_backup_id,
        "isPreventDeletionEnabled": False,
        "isRetentionLockEnabled": False,
        "isIndefiniteRetentionEnabled": False,
    }


# --- volume groups --------------------------------------------------------------------------------------------


def _authorize_source(ctx: Ctx, svc: VolumeGroupService, body: dict[str, Any]) -> None:
    """Resources named in sourceDetails: forbidden looks absent (400 RelatedResourceNotAuthorizedOrNotFound)."""
    source = body.get("sourceDetails")
    if not isinstance(source, dict):
        return
    stype = source.get("type")
    value = source.get(stype) if isinstance(stype, str) else None
    field = f"sourceDetails.{stype}"
    if stype == "volumeIds" and isinstance(value, list):
        _authorize_members(ctx, svc, [v for v in value if isinstance(v, str)], field)
    elif stype == "volumeGroupId" and isinstance(value, str):
        group = svc.groups.get(value)
        if group is None:
            return
        if not ctx.can("CloneVolumeGroupSource", compartment_id=group.compartment_id, target_id=group.id):
            raise RelatedResourceNotFound(field=field, ident=value)
        ctx.authorize("CreateVolume", compartment_id=str(body["compartmentId"]))
        for volume in svc.view(group).members:
            if not ctx.can("CloneVolumeSource", compartment_id=volume.compartment_id, target_id=volume.id):
                raise RelatedResourceNotFound(field=field, ident=value)
    elif stype == "volumeGroupReplicaId" and isinstance(value, str):
        replica = svc.bs.replication.group_replicas.replicas.get(value)
        if replica is None:
            return
        if not ctx.can("ActivateVolumeGroupReplica", compartment_id=replica.compartment_id, target_id=replica.id):
            raise RelatedResourceNotFound(field=field, ident=value)
        ctx.authorize("CreateVolume", compartment_id=str(body["compartmentId"]))
    elif stype == "volumeGroupBackupId" and isinstance(value, str):
        found = svc.group_backups.get(value)
        if found is None:
            return
        if not ctx.can("RestoreVolumeGroupBackupSource", compartment_id=found.compartment_id, target_id=found.id):
            raise RelatedResourceNotFound(field=field, ident=value)
        ctx.authorize("CreateVolume", compartment_id=str(body["compartmentId"]))
        for member in svc.backup_view(found).members:
            if not ctx.can("RestoreVolumeBackupSource", compartment_id=member.compartment_id, target_id=member.id):
                raise RelatedResourceNotFound(field=field, ident=value)


def _authorize_members(ctx: Ctx, svc: VolumeGroupService, volume_ids: list[str], field: str) -> None:
    for volume_id in volume_ids:
        volume = svc.bs.volumes.get(volume_id)
        if volume is not None and not ctx.can(
            "AddVolumeToVolumeGroup", compartment_id=volume.compartment_id, target_id=volume.id
        ):
            raise RelatedResourceNotFound(field=field, ident=volume_id)


def _authorize_replicas(ctx: Ctx, svc: VolumeGroupService, compartment_id: str, body: dict[str, Any]) -> None:
    """As for a volume's blockVolumeReplicas (api/core.py): CreateVolumeGroupReplica where the group is, and an
    xrrKmsKeyId the key delegation asked of the DESTINATION region's vault (R5.16); off: DeleteVolumeGroupReplica."""
    if "volumeGroupReplicas" not in body:
        return
    entries = replica_entries(body)
    if not entries:
        ctx.authorize("DeleteVolumeGroupReplica", compartment_id=compartment_id)
        return
    ctx.authorize("CreateVolumeGroupReplica", compartment_id=compartment_id)
    key_id = entries[0].get("xrrKmsKeyId")
    region = svc.bs.replication.destination_region(entries[0]["availabilityDomain"])
    destination = ctx.app.regions.get(region) if region else None
    if key_id and destination is not None:
        Ctx(ctx.request, ctx.body, ctx.principal, ctx.app, destination).authorize_key_use(
            "CreateVolumeGroupReplica", key_id, field="xrrKmsKeyId"
        )
    elif key_id and region is not None:
        # The destination runs in another process (docs/design/regions.md): the key check runs there, for the
        # caller's principal, exactly as for a volume's xrrKmsKeyId (api/core.py).
        remote = getattr(ctx.app, "remote_regions", {}).get(region)
        if remote is None:  # fail closed: a region with ADs but neither served here nor a peer
            raise InvalidArgument(field="xrrKmsKeyId", reason=f"{region} is not reachable from this process")
        remote.copy_target.authorize_key_use(ctx.principal, "CreateVolumeGroupReplica", str(key_id), "xrrKmsKeyId")


def _create_group(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "compartmentId")
    svc = _svc(ctx)
    ctx.authorize("CreateVolumeGroup", compartment_id=str(body["compartmentId"]))
    _authorize_source(ctx, svc, body)
    _authorize_replicas(ctx, svc, str(body["compartmentId"]), body)
    view, _jobs = create_with_policy(ctx, body, svc.create_group, lambda made: made[0].group.id, group=True)
    return Reply(_group_wire(ctx, view))


def _group_of(ctx: Ctx, operation_name: str) -> GroupView:
    view = _svc(ctx).get_group(str(ctx.path["group_id"]))
    ctx.authorize(operation_name, compartment_id=view.group.compartment_id, target_id=view.group.id)
    return view


def _get_group(ctx: Ctx) -> Reply:
    return Reply(_group_wire(ctx, _group_of(ctx, "GetVolumeGroup")))


def _list_groups(ctx: Ctx) -> Reply:
    compartment_id = ctx.query("compartmentId")
    if not compartment_id:
        raise MissingParameter(field="compartmentId")
    views = _svc(ctx).list_groups(
        compartment_id, ctx.query("availabilityDomain"), ctx.query("lifecycleState"), ctx.query("displayName")
    )
    views = ctx.visible("ListVolumeGroups", views, lambda v: (v.group.compartment_id, v.group.id, {}))
    return ctx.page(sort([_group_wire(ctx, v) for v in views], ctx))


def _update_group(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    view = _group_of(ctx, "UpdateVolumeGroup")
    body = ctx.json()
    ctx.check_if_match(_group_wire(ctx, view), "volume group", view.group.id)
    wanted = body.get("volumeIds")
    if isinstance(wanted, list):
        current = {v.id for v in view.members}
        _authorize_members(ctx, svc, [v for v in wanted if isinstance(v, str) and v not in current], "volumeIds")
    _authorize_replicas(ctx, svc, view.group.compartment_id, body)
    preserve = (ctx.query("preserveVolumeReplica") or "true").lower()
    if preserve not in ("true", "false"):
        raise InvalidArgument(field="preserveVolumeReplica", reason="must be true or false")
    return Reply(_group_wire(ctx, svc.update_group(view.group.id, body, preserve == "true")))


def _delete_group(ctx: Ctx) -> Reply:
    view = _group_of(ctx, "DeleteVolumeGroup")
    ctx.check_if_match(_group_wire(ctx, view), "volume group", view.group.id)
    _svc(ctx).delete_group(view.group.id)
    return Reply(None, status=204, etag=False)


# --- volume group backups -------------------------------------------------------------------------------------


def _create_group_backup(ctx: Ctx) -> Reply:
    """The group backup goes to `compartmentId` (default: the group's); each member backup to its volume's."""
    body = ctx.json()
    ctx.require(body, "volumeGroupId")
    svc = _svc(ctx)
    group = svc.groups.get(str(body["volumeGroupId"]))
    if group is None or not ctx.can("GetVolumeGroup", compartment_id=group.compartment_id, target_id=group.id):
        raise RelatedResourceNotFound(field="volumeGroupId", ident=str(body["volumeGroupId"]))
    ctx.authorize("CreateVolumeGroupBackup", compartment_id=str(body.get("compartmentId") or group.compartment_id))
    for volume in svc.view(group).members:
        ctx.authorize("CreateVolumeBackup", compartment_id=volume.compartment_id, target_id=volume.id)
    view, _jobs = svc.create_group_backup(body)
    return Reply(volume_group_backup(view))


def _group_backup_of(ctx: Ctx, operation_name: str) -> GroupBackupView:
    view = _svc(ctx).get_group_backup(str(ctx.path["backup_id"]))
    ctx.authorize(operation_name, compartment_id=view.backup.compartment_id, target_id=view.backup.id)
    return view


def _get_group_backup(ctx: Ctx) -> Reply:
    """A group backup of another region this process serves (by its OCID's region code) is read from that region:
    `oci bv volume-group-backup copy --wait-for-state` polls the copy on the source's endpoint."""
    backup_id = str(ctx.path["backup_id"])
    bs = ctx.region.blockstorage
    owner = bs.owning_region(backup_id)
    # Another region's (in this process or another): read through its RegionClient, as a volume backup's GET.
    view = bs.peers[owner].get_group_backup(backup_id) if owner is not None else _svc(ctx).get_group_backup(backup_id)
    ctx.authorize("GetVolumeGroupBackup", compartment_id=view.backup.compartment_id, target_id=view.backup.id)
    return Reply(volume_group_backup(view))


def _list_group_backups(ctx: Ctx) -> Reply:
    compartment_id = ctx.query("compartmentId")
    if not compartment_id:
        raise MissingParameter(field="compartmentId")
    views = _svc(ctx).list_group_backups(compartment_id, ctx.query("volumeGroupId"), ctx.query("displayName"))
    views = ctx.visible("ListVolumeGroupBackups", views, lambda v: (v.backup.compartment_id, v.backup.id, {}))
    return ctx.page(sort([volume_group_backup(v) for v in views], ctx))


def _update_group_backup(ctx: Ctx) -> Reply:
    view = _group_backup_of(ctx, "UpdateVolumeGroupBackup")
    ctx.check_if_match(volume_group_backup(view), "volume group backup", view.backup.id)
    return Reply(volume_group_backup(_svc(ctx).update_group_backup(view.backup.id, ctx.json())))


def _delete_group_backup(ctx: Ctx) -> Reply:
    view = _group_backup_of(ctx, "DeleteVolumeGroupBackup")
    for member in view.members:
        ctx.authorize("DeleteVolumeBackup", compartment_id=member.compartment_id, target_id=member.id)
    ctx.check_if_match(volume_group_backup(view), "volume group backup", view.backup.id)
    _, job_id = _svc(ctx).delete_group_backup(view.backup.id)
    return Reply(None, status=204, headers={"opc-work-request-id": job_id}, etag=False)


def _copy_group_backup(ctx: Ctx) -> Reply:
    """CopyVolumeGroupBackup (R3.25-R3.31, D11) on the source region's endpoint: the checks of CopyVolumeBackup for
    every member backup (READ + COPY on it, CREATE where its copy lands, key delegation in the DESTINATION region for
    a kmsKeyId), and the group backup's own COPY and CREATE. Answers 200 with the new group backup of the
    destination region (COMMITTED; AVAILABLE once every member copy is)."""
    view = _group_backup_of(ctx, "CopyVolumeGroupBackup")
    body = ctx.json()
    ctx.require(body, "destinationRegion")
    for member in view.members:
        ctx.authorize("CopyVolumeBackup", compartment_id=member.compartment_id, target_id=member.id)
    wanted = body["destinationRegion"]
    remote = ctx.app.remote_regions.get(wanted) if isinstance(wanted, str) else None
    destination = None if remote is not None else copy_destination(ctx, wanted)
    ctx.authorize("CreateVolumeGroupBackupCopy", compartment_id=view.backup.compartment_id)
    for member in view.members:
        ctx.authorize("CreateVolumeBackupCopy", compartment_id=member.compartment_id)
    if remote is not None:
        # The destination runs in another process (docs/design/regions.md): the key is checked there, for the caller.
        made = remote.copy_target.create_group_backup_copy(ctx.principal, ctx.region.region.name, view, body)
        return Reply(volume_group_backup(made))
    assert destination is not None
    key_id = body.get("kmsKeyId")
    if key_id:
        Ctx(ctx.request, ctx.body, ctx.principal, ctx.app, destination).authorize_key_use(
            "CopyVolumeGroupBackup", str(key_id)
        )
    groups = destination.groups
    if groups is None:
        raise NotImplementedYet(feature=f"Volume groups in {destination.region.name}")
    copied = groups.create_group_backup_copy(ctx.region.region.name, view, body)
    return Reply(volume_group_backup(copied))


def _move_group(ctx: Ctx) -> Reply:
    """ChangeVolumeGroupCompartment: VOLUME_GROUP_MOVE in the group's compartment and in the target (as R7.23)."""
    view = _group_of(ctx, "ChangeVolumeGroupCompartment")
    _svc(ctx).move_group(view.group.id, _move_target(ctx, "ChangeVolumeGroupCompartment"))
    return Reply(None, status=204, etag=False)


def _move_group_backup(ctx: Ctx) -> Reply:
    """ChangeVolumeGroupBackupCompartment: VOLUME_GROUP_BACKUP_MOVE in both compartments."""
    view = _group_backup_of(ctx, "ChangeVolumeGroupBackupCompartment")
    _svc(ctx).move_group_backup(view.backup.id, _move_target(ctx, "ChangeVolumeGroupBackupCompartment"))
    return Reply(None, status=204, etag=False)


def _move_target(ctx: Ctx, operation_name: str) -> Any:
    """The body's compartmentId, once the caller may move the resource into it (the source was checked by
    ``_group_of``/``_group_backup_of``)."""
    body = ctx.json()
    ctx.require(body, "compartmentId")
    ctx.authorize(operation_name, compartment_id=str(body["compartmentId"]))
    return body["compartmentId"]


# --- volume group replicas (read-only, on the destination's endpoint) -------------------------------------------


def _get_group_replica(ctx: Ctx) -> Reply:
    view = _svc(ctx).bs.replication.group_replicas.get(str(ctx.path["replica_id"]))
    ctx.authorize("GetVolumeGroupReplica", compartment_id=view.replica.compartment_id, target_id=view.replica.id)
    return Reply(volume_group_replica(view))


def _list_group_replicas(ctx: Ctx) -> Reply:
    compartment_id = ctx.query("compartmentId")
    if not compartment_id:
        raise MissingParameter(field="compartmentId")
    ad = ctx.query("availabilityDomain")
    if not ad:
        raise MissingParameter(field="availabilityDomain")
    views = _svc(ctx).bs.replication.group_replicas.list_replicas(
        compartment_id, ad, ctx.query("lifecycleState"), ctx.query("displayName")
    )
    views = ctx.visible("ListVolumeGroupReplicas", views, lambda v: (v.replica.compartment_id, v.replica.id, {}))
    return ctx.page(sort([volume_group_replica(v) for v in views], ctx))


_GROUPS = "/20160918/volumeGroups"
_BACKUPS = "/20160918/volumeGroupBackups"

# Registered before api/core.py's routes (api/app.py): its placeholder for /volumeGroups must not answer first.
routes = [
    Route(_GROUPS, operation(_create_group, idempotent_post=True), methods=["POST"]),
    Route(_GROUPS, operation(_list_groups), methods=["GET"]),
    Route(_GROUPS + "/{group_id}", operation(_get_group), methods=["GET"]),
    Route(_GROUPS + "/{group_id}", operation(_update_group), methods=["PUT"]),
    Route(_GROUPS + "/{group_id}", operation(_delete_group), methods=["DELETE"]),
    Route(_GROUPS + "/{group_id}/actions/changeCompartment", operation(_move_group), methods=["POST"]),
    Route(_BACKUPS, operation(_create_group_backup, idempotent_post=True), methods=["POST"]),
    Route(_BACKUPS, operation(_list_group_backups), methods=["GET"]),
    Route(_BACKUPS + "/{backup_id}", operation(_get_group_backup), methods=["GET"]),
    Route(_BACKUPS + "/{backup_id}", operation(_update_group_backup), methods=["PUT"]),
    Route(_BACKUPS + "/{backup_id}", operation(_delete_group_backup), methods=["DELETE"]),
    Route(
        _BACKUPS + "/{backup_id}/actions/copy", operation(_copy_group_backup, idempotent_post=True), methods=["POST"]
    ),
    Route(_BACKUPS + "/{backup_id}/actions/changeCompartment", operation(_move_group_backup), methods=["POST"]),
    Route("/20160918/volumeGroupReplicas", operation(_list_group_replicas), methods=["GET"]),
    Route("/20160918/volumeGroupReplicas/{replica_id}", operation(_get_group_replica), methods=["GET"]),
]
