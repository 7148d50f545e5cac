"""Block Volume operations (/20160918/...): volumes, boot volumes, backups, KMS keys of volumes, volume data.

Not yet implemented (answered 501 MethodNotImplemented, never retried): delta restores. Ignored on input:
autotunePolicies, clusterPlacementGroupId, isReservationsEnabled, retention settings of backups. `backupPolicyId`
(with `xrcKmsKeyId`) on create assigns that backup policy to the new volume (api/policies.create_with_policy).
Volume data (blockvault extension): PUT/GET /20160918/{volumes|bootVolumes}/{id}/data?offset=N[&length=M].
Cross-region backup copy: POST .../{volumeBackups|bootVolumeBackups}/{id}/actions/copy on the SOURCE region's
endpoint creates the copy in the destination region (its own job, store and keys); GET of a backup by id on any
region's endpoint is answered by the region named in the OCID (the CLI's copy --wait-for-state polls that way).
Replication (docs/design/replication.md): `blockVolumeReplicas` / `bootVolumeReplicas` on create and update of a
volume, on the SOURCE region's endpoint, create or delete the replica in its destination region (named by its AD);
replicas are read (GET/LIST /blockVolumeReplicas, /bootVolumeReplicas) and activated (CreateVolume with
sourceDetails blockVolumeReplica) on the DESTINATION region's endpoint.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from blockvault.api import schemas
from blockvault.api.framework import Ctx, Reply, operation, sort
from blockvault.api.policies import create_with_policy
from blockvault.api.services import RegionServices
from blockvault.blockstorage.service import NotImplementedYet
from blockvault.errors import InvalidArgument, MissingParameter, NotFound, RelatedResourceNotFound

MAX_DATA_REQUEST = 64 << 20  # one data request carries at most 64 MiB

_KIND = {"volumes": "volume", "bootVolumes": "bootvolume"}
_BACKUP_KIND = {"volumeBackups": "volume", "bootVolumeBackups": "bootvolume"}


def _vol_id(ctx: Ctx, kind: str) -> str:
    return str(ctx.path["volume_id"])


def _created(body: dict[str, Any], job_id: str) -> Reply:
    return Reply(body, headers={"opc-work-request-id": job_id})


def _volume_wire(ctx: Ctx, volume: Any, attached: int | None = None, links: list[Any] | None = None) -> dict[str, Any]:
    """The volume's JSON with its attachment state and its replicas (one definition, so GET, lists and if-match
    agree)."""
    svc = ctx.region.blockstorage
    if attached is None:
        attached = len(svc.attachments.active(volume.id))
    out = schemas.volume(volume, attached)
    if links is None:
        links = svc.replication.links_of(volume.id)
    out[_REPLICAS_FIELD[volume.kind]] = schemas.replica_infos(volume.kind, links) or None
    return out


_REPLICAS_FIELD = {"volume": "blockVolumeReplicas", "bootvolume": "bootVolumeReplicas"}
_REPLICA_OP = {"volume": "BlockVolumeReplica", "bootvolume": "BootVolumeReplica"}


def _authorize_replicas(ctx: Ctx, kind: str, compartment_id: str, body: dict[str, Any], volume_id: str | None) -> None:
    """Turning replication on needs `manage block-volume-replicas` (BLOCK_VOLUME_REPLICA_CREATE) where the volume
    is, and an xrrKmsKeyId the same key delegation as a kmsKeyId, asked of the DESTINATION region's vault (the key
    lives there, R5.16); turning it off needs BLOCK_VOLUME_REPLICA_DELETE."""
    if _REPLICAS_FIELD[kind] not in body:
        return
    svc = ctx.region.blockstorage
    entries = svc.replica_entries(kind, body)
    op = _REPLICA_OP[kind]
    if entries:
        ctx.authorize(f"Create{op}", compartment_id=compartment_id)
        key_id = entries[0].get("xrrKmsKeyId")
        region = svc.replication.destination_region(entries[0]["availabilityDomain"])
        destination = ctx.app.regions.get(region) if region else None
        if key_id and destination is not None:
            Ctx(ctx.request, ctx.body, ctx.principal, ctx.app, destination).authorize_key_use(
                f"Create{op}", key_id, field="xrrKmsKeyId"
            )
        elif key_id and region is not None:
            # The destination runs in another process (docs/design/regions.md): the key check runs there, for the
            # caller's principal (verified here), with the same errors and messages as in one process.
            remote = ctx.app.remote_regions.get(region)
            if remote is None:  # fail closed: a region with ADs but neither served here nor a peer
                raise InvalidArgument(field="xrrKmsKeyId", reason=f"{region} is not reachable from this process")
            remote.copy_target.authorize_key_use(ctx.principal, f"Create{op}", str(key_id), "xrrKmsKeyId")
    elif volume_id and svc.replication.links_of(volume_id):
        ctx.authorize(f"Delete{op}", compartment_id=compartment_id)


def _make_volume_ops(collection: str) -> list[Route]:
    kind = _KIND[collection]
    op = "Volume" if kind == "volume" else "BootVolume"

    def create(ctx: Ctx) -> Reply:
        """Clone and restore also need the source (`use volumes` / `read volume-backups`, else 400
        RelatedResourceNotAuthorizedOrNotFound as for an absent source); a kmsKeyId needs key delegation (D6)."""
        body = ctx.json()
        ctx.require(body, "compartmentId")
        ctx.authorize(
            f"Create{op}",
            compartment_id=str(body["compartmentId"]),
            **({"request.kms-key.id": body["kmsKeyId"]} if body.get("kmsKeyId") else {}),
        )
        _authorize_source(ctx, kind, body)
        if body.get("kmsKeyId"):
            ctx.authorize_key_use(f"Create{op}", str(body["kmsKeyId"]))
        _authorize_replicas(ctx, kind, str(body["compartmentId"]), body, None)
        volume, job_id = create_with_policy(
            ctx, body, lambda b: ctx.region.blockstorage.create_volume(kind, b), lambda made: made[0].id
        )
        return _created(_volume_wire(ctx, volume), job_id)

    def get(ctx: Ctx) -> Reply:
        volume = ctx.region.blockstorage.get_volume(kind, _vol_id(ctx, kind))
        ctx.authorize(f"Get{op}", compartment_id=volume.compartment_id, target_id=volume.id)
        return Reply(_volume_wire(ctx, volume))

    def list_(ctx: Ctx) -> Reply:
        compartment_id = ctx.query("compartmentId")
        if kind == "bootvolume" and not compartment_id:
            raise MissingParameter(field="compartmentId")
        items = ctx.region.blockstorage.list_volumes(
            kind, compartment_id, ctx.query("availabilityDomain"), ctx.query("lifecycleState"), ctx.query("displayName")
        )
        items = ctx.visible(f"List{op}s", items, lambda v: (v.compartment_id, v.id, _key_var(v.kms_key_id)))
        items = [v for v in items if v.volume_group_id == g] if (g := ctx.query("volumeGroupId")) else items  # groups
        counts = ctx.region.blockstorage.attachments.attached_counts()
        links = ctx.region.blockstorage.replication.links_of_many([v.id for v in items])
        return ctx.page(sort([_volume_wire(ctx, v, counts.get(v.id, 0), links.get(v.id, [])) for v in items], ctx))

    def update(ctx: Ctx) -> Reply:
        svc = ctx.region.blockstorage
        volume = svc.get_volume(kind, _vol_id(ctx, kind))
        ctx.authorize(f"Update{op}", compartment_id=volume.compartment_id, target_id=volume.id)
        body = ctx.json()
        _authorize_replicas(ctx, kind, volume.compartment_id, body, volume.id)
        ctx.check_if_match(_volume_wire(ctx, volume), kind, volume.id)
        return Reply(_volume_wire(ctx, svc.update_volume(kind, volume.id, body)))

    def delete(ctx: Ctx) -> Reply:
        svc = ctx.region.blockstorage
        volume = svc.get_volume(kind, _vol_id(ctx, kind))
        ctx.authorize(f"Delete{op}", compartment_id=volume.compartment_id, target_id=volume.id)
        ctx.check_if_match(_volume_wire(ctx, volume), kind, volume.id)
        _, job_id = svc.delete_volume(kind, volume.id)
        return Reply(None, status=204, headers={"opc-work-request-id": job_id}, etag=False)

    def get_key(ctx: Ctx) -> Reply:
        volume = ctx.region.blockstorage.get_volume(kind, _vol_id(ctx, kind))
        ctx.authorize(f"Get{op}KmsKey", compartment_id=volume.compartment_id, target_id=volume.id)
        return Reply(schemas.kms_key(volume.kms_key_id))

    def update_key(ctx: Ctx) -> Reply:
        svc = ctx.region.blockstorage
        volume = svc.get_volume(kind, _vol_id(ctx, kind))
        body = ctx.json()
        key_id = body.get("kmsKeyId")
        ctx.authorize(
            f"Update{op}KmsKey",
            compartment_id=volume.compartment_id,
            target_id=volume.id,
            **({"request.kms-key.id": key_id} if key_id else {}),
        )
        if key_id:
            ctx.authorize_key_use(f"Update{op}KmsKey", str(key_id))
        ctx.check_if_match(schemas.kms_key(volume.kms_key_id), kind, volume.id)
        updated = svc.update_volume_key(kind, volume.id, key_id or None)
        return Reply(schemas.kms_key(updated.kms_key_id))

    def delete_key(ctx: Ctx) -> Reply:
        svc = ctx.region.blockstorage
        volume = svc.get_volume(kind, _vol_id(ctx, kind))
        ctx.authorize(f"Delete{op}KmsKey", compartment_id=volume.compartment_id, target_id=volume.id)
        ctx.check_if_match(schemas.kms_key(volume.kms_key_id), kind, volume.id)
        svc.update_volume_key(kind, volume.id, None)
        return Reply(None, status=204, etag=False)

    def read_data(ctx: Ctx) -> Reply:
        svc = ctx.region.blockstorage
        volume = svc.get_volume(kind, _vol_id(ctx, kind))
        ctx.authorize(f"Read{op}Data", compartment_id=volume.compartment_id, target_id=volume.id)
        offset = ctx.query_int("offset", 0) or 0
        length = ctx.query_int("length")
        if length is None:
            raise MissingParameter(field="length")
        if length > MAX_DATA_REQUEST:
            raise InvalidArgument(field="length", reason=f"at most {MAX_DATA_REQUEST} bytes per request")
        return Reply(raw=svc.read(kind, volume.id, offset, length))

    def write_data(ctx: Ctx) -> Reply:
        svc = ctx.region.blockstorage
        volume = svc.get_volume(kind, _vol_id(ctx, kind))
        ctx.authorize(f"Write{op}Data", compartment_id=volume.compartment_id, target_id=volume.id)
        offset = ctx.query_int("offset", 0) or 0
        if len(ctx.body) > MAX_DATA_REQUEST:
            raise InvalidArgument(field="body", reason=f"at most {MAX_DATA_REQUEST} bytes per request")
        written = svc.write(kind, volume.id, offset, ctx.body)
        return Reply({"bytesWritten": written}, etag=False)

    base = f"/20160918/{collection}"
    return [
        Route(base, operation(create, idempotent_post=True), methods=["POST"]),
        Route(base, operation(list_), methods=["GET"]),
        Route(base + "/{volume_id}", operation(get), methods=["GET"]),
        Route(base + "/{volume_id}", operation(update), methods=["PUT"]),
        Route(base + "/{volume_id}", operation(delete), methods=["DELETE"]),
        Route(base + "/{volume_id}/kmsKey", operation(get_key), methods=["GET"]),
        Route(base + "/{volume_id}/kmsKey", operation(update_key), methods=["PUT"]),
        Route(base + "/{volume_id}/kmsKey", operation(delete_key), methods=["DELETE"]),
        Route(base + "/{volume_id}/data", operation(read_data), methods=["GET"]),
        Route(base + "/{volume_id}/data", operation(write_data), methods=["PUT"]),
    ]


def _make_backup_ops(collection: str) -> list[Route]:
    kind = _BACKUP_KIND[collection]
    op = "VolumeBackup" if kind == "volume" else "BootVolumeBackup"

    def create(ctx: Ctx) -> Reply:
        """The backup goes to its volume's compartment: `manage volume-backups` + `use volumes` there (R7.23)."""
        body = ctx.json()
        field = "volumeId" if kind == "volume" else "bootVolumeId"
        ctx.require(body, field)
        svc = ctx.region.blockstorage
        volume = svc.volumes.get(str(body[field]))
        if volume is not None and volume.kind == kind:
            ctx.authorize(f"Create{op}", compartment_id=volume.compartment_id, target_id=volume.id)
        else:
            ctx.authorize(f"Create{op}")  # absent: the same answer a forbidden volume would get, unless admin
        if body.get("kmsKeyId"):
            ctx.authorize_key_use(f"Create{op}", str(body["kmsKeyId"]))
        backup, job_id = svc.create_backup(kind, body)
        return _created(schemas.backup(backup), job_id)

    def get(ctx: Ctx) -> Reply:
        """A backup of another region (its OCID's region code) is read from that region (cross-region copy)."""
        info = ctx.region.blockstorage.lookup_backup(kind, str(ctx.path["backup_id"]))
        backup = info.backup
        ctx.authorize(f"Get{op}", compartment_id=backup.compartment_id, target_id=backup.id)
        return Reply(schemas.backup(backup, info.source_backup_id))

    def list_(ctx: Ctx) -> Reply:
        compartment_id = ctx.query("compartmentId")
        if not compartment_id:
            raise MissingParameter(field="compartmentId")
        volume_filter = ctx.query("volumeId") if kind == "volume" else ctx.query("bootVolumeId")
        items = ctx.region.blockstorage.list_backups(
            kind, compartment_id, volume_filter, ctx.query("lifecycleState"), ctx.query("displayName")
        )
        items = ctx.visible(f"List{op}s", items, lambda b: (b.compartment_id, b.id, _key_var(b.kms_key_id)))
        sources = ctx.region.blockstorage.copy_sources([b.id for b in items])
        return ctx.page(sort([schemas.backup(b, sources.get(b.id)) for b in items], ctx))

    def update(ctx: Ctx) -> Reply:
        svc = ctx.region.blockstorage
        backup = svc.get_backup(kind, str(ctx.path["backup_id"]))
        body = ctx.json()
        ctx.authorize(
            f"Update{op}",
            compartment_id=backup.compartment_id,
            target_id=backup.id,
            **({"request.kms-key.id": body["kmsKeyId"]} if body.get("kmsKeyId") else {}),
        )
        if body.get("kmsKeyId"):
            ctx.authorize_key_use(f"Update{op}", str(body["kmsKeyId"]))
        source = svc.copy_source(backup.id)
        ctx.check_if_match(schemas.backup(backup, source), f"{kind} backup", backup.id)
        return Reply(schemas.backup(svc.update_backup(kind, backup.id, body), source))

    def delete(ctx: Ctx) -> Reply:
        svc = ctx.region.blockstorage
        backup = svc.get_backup(kind, str(ctx.path["backup_id"]))
        ctx.authorize(f"Delete{op}", compartment_id=backup.compartment_id, target_id=backup.id)
        ctx.check_if_match(schemas.backup(backup, svc.copy_source(backup.id)), f"{kind} backup", backup.id)
        _, job_id = svc.delete_backup(kind, backup.id)
        return Reply(None, status=204, headers={"opc-work-request-id": job_id}, etag=False)

    def copy(ctx: Ctx) -> Reply:
        """CopyVolumeBackup / CopyBootVolumeBackup (R3.25-R3.31, D11) on the source region's endpoint.

        Source: `Copy{op}` (VOLUME_BACKUP_READ + VOLUME_BACKUP_COPY) on the backup; destination: `Create{op}Copy`
        (VOLUME_BACKUP_CREATE) in the compartment the copy lands in (the source's); a kmsKeyId needs the same key
        delegation as a create with a key, asked of the DESTINATION region's vault (the key must live there).
        Answers 200 with the new backup (CREATING) of the destination region."""
        svc = ctx.region.blockstorage
        backup = svc.get_backup(kind, str(ctx.path["backup_id"]))
        body = ctx.json()
        key_id = body.get("kmsKeyId")
        ctx.authorize(
            f"Copy{op}",
            compartment_id=backup.compartment_id,
            target_id=backup.id,
            **({"request.kms-key.id": key_id} if key_id and isinstance(key_id, str) else {}),
        )
        ctx.require(body, "destinationRegion")
        wanted = body["destinationRegion"]
        remote = ctx.app.remote_regions.get(wanted) if isinstance(wanted, str) else None
        if remote is not None:
            # The destination runs in another process (docs/design/regions.md): it checks the key there.
            ctx.authorize(f"Create{op}Copy", compartment_id=backup.compartment_id)
            created = remote.copy_target.create_backup_copy(
                ctx.principal, kind, ctx.region.region.name, backup.id, body
            )
            return Reply(schemas.backup(created.backup, backup.id), headers={"opc-work-request-id": created.job_id})
        destination = copy_destination(ctx, body["destinationRegion"])
        ctx.authorize(f"Create{op}Copy", compartment_id=backup.compartment_id)
        if key_id:
            Ctx(ctx.request, ctx.body, ctx.principal, ctx.app, destination).authorize_key_use(f"Copy{op}", str(key_id))
        copied, job_id = destination.blockstorage.create_copy(kind, ctx.region.region.name, backup.id, body)
        return Reply(schemas.backup(copied, backup.id), headers={"opc-work-request-id": job_id})

    base = f"/20160918/{collection}"
    return [
        Route(base, operation(create, idempotent_post=True), methods=["POST"]),
        Route(base, operation(list_), methods=["GET"]),
        Route(base + "/{backup_id}", operation(get), methods=["GET"]),
        Route(base + "/{backup_id}", operation(update), methods=["PUT"]),
        Route(base + "/{backup_id}", operation(delete), methods=["DELETE"]),
        Route(base + "/{backup_id}/actions/copy", operation(copy, idempotent_post=True), methods=["POST"]),
    ]


def copy_destination(ctx: Ctx, name: Any) -> RegionServices:
    """D11: any other region this blockvault serves; the source's own region or an unknown one is 400 (backup and
    volume group backup copies)."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument(field="destinationRegion", reason="must be a region name such as us-phoenix-1")
    if name == ctx.region.region.name:
        raise InvalidArgument(
            field="destinationRegion", reason=f"the backup is already in {name}; a copy goes to another region"
        )
    destination = ctx.app.regions.get(name)
    if destination is None:
        served = ", ".join(n for n in [*ctx.app.regions, *ctx.app.remote_regions] if n != ctx.region.region.name)
        raise InvalidArgument(
            field="destinationRegion", reason=f"{name!r} is not a region this blockvault serves (it serves {served})"
        )
    return destination


def _key_var(key_id: str | None) -> dict[str, str]:
    return {"target.kms-key.id": key_id} if key_id else {}


def _authorize_source(ctx: Ctx, kind: str, body: dict[str, Any]) -> None:
    """A clone's source volume or a restore's backup is a resource named in the body: forbidden looks absent."""
    source = body.get("sourceDetails")
    if source is None and body.get("volumeBackupId"):
        source = {"type": "volumeBackup", "id": body["volumeBackupId"]}
    if not isinstance(source, dict) or not isinstance(source.get("id"), str):
        return
    svc = ctx.region.blockstorage
    source_id = source["id"]
    op = "Volume" if kind == "volume" else "BootVolume"
    if source.get("type") in ("volume", "bootVolume"):
        src = svc.volumes.get(source_id)
        if (
            src is not None
            and src.kind == kind
            and not ctx.can(f"Clone{op}Source", compartment_id=src.compartment_id, target_id=src.id)
        ):
            raise RelatedResourceNotFound(field="sourceDetails.id", ident=source_id)
    elif source.get("type") in ("blockVolumeReplica", "bootVolumeReplica"):
        replica = svc.replication.replicas.get(source_id)
        if (
            replica is not None
            and replica.kind == kind
            and not ctx.can(f"Activate{_REPLICA_OP[kind]}", compartment_id=replica.compartment_id, target_id=replica.id)
        ):
            raise RelatedResourceNotFound(field="sourceDetails.id", ident=source_id)
    elif source.get("type") in ("volumeBackup", "bootVolumeBackup"):
        backup = svc.backups.get(source_id)
        if (
            backup is not None
            and backup.kind == kind
            and not ctx.can(f"Restore{op}BackupSource", compartment_id=backup.compartment_id, target_id=backup.id)
        ):
            raise RelatedResourceNotFound(field="sourceDetails.id", ident=source_id)


def _make_replica_ops(collection: str) -> list[Route]:
    """GetBlockVolumeReplica / ListBlockVolumeReplicas and the boot twins: read-only, on the replica's region."""
    kind = "volume" if collection == "blockVolumeReplicas" else "bootvolume"
    op = _REPLICA_OP[kind]

    def get(ctx: Ctx) -> Reply:
        replica = ctx.region.blockstorage.replication.get_replica(kind, str(ctx.path["replica_id"]))
        ctx.authorize(f"Get{op}", compartment_id=replica.compartment_id, target_id=replica.id)
        return Reply(schemas.replica(replica))

    def list_(ctx: Ctx) -> Reply:
        items = ctx.region.blockstorage.replication.list_replicas(
            kind,
            ctx.query("compartmentId"),
            ctx.query("availabilityDomain"),
            ctx.query("lifecycleState"),
            ctx.query("displayName"),
            ctx.query("volumeGroupReplicaId"),  # the members of a volume group replica
        )
        items = ctx.visible(f"List{op}s", items, lambda r: (r.compartment_id, r.id, _key_var(r.kms_key_id)))
        return ctx.page(sort([schemas.replica(r) for r in items], ctx))

    base = f"/20160918/{collection}"
    return [
        Route(base, operation(list_), methods=["GET"]),
        Route(base + "/{replica_id}", operation(get), methods=["GET"]),
    ]


def _not_yet(feature: str) -> Any:
    def handler(ctx: Ctx) -> Reply:
        raise NotImplementedYet(feature=feature)

    return operation(handler)


def _work_request(ctx: Ctx) -> Reply:
    job = ctx.region.runner.repo.get(str(ctx.path["work_request_id"]))
    if job is None:
        raise NotFound(kind="work request", ident=str(ctx.path["work_request_id"]))
    name = "GetBackupWorkRequest" if "Backup" in job.operation else "GetWorkRequest"
    ctx.authorize(name, compartment_id=job.compartment_id, target_id=job.id)
    return Reply(schemas.work_request(job, "volume"))


routes = [
    *_make_volume_ops("volumes"),
    *_make_volume_ops("bootVolumes"),
    *_make_backup_ops("volumeBackups"),
    *_make_backup_ops("bootVolumeBackups"),
    Route("/20160918/workRequests/{work_request_id}", operation(_work_request), methods=["GET"]),
    *_make_replica_ops("blockVolumeReplicas"),
    *_make_replica_ops("bootVolumeReplicas"),
    Route("/20160918/volumeGroups", _not_yet("Volume groups"), methods=["GET", "POST"]),
]
