"""``blockvault bv volume-group ...``, ``bv volume-group-backup ...`` and ``bv volume-group-replica ...``: the real
``oci bv`` names, flags and bodies.

Registered under ``bv`` by ``register`` (cli/app.py calls it after bv.py built the ``bv`` group).

Differences from ``oci bv`` (all additive):

* ``volume-group create`` also takes the source as one of ``--volume-ids '[...]'``, ``--source-volume-group-id``,
  ``--volume-group-backup-id`` or ``--source-volume-group-replica-id`` (activation, run against the replica's
  region) instead of ``--source-details`` JSON; ``--compartment-id`` defaults to the tenancy and
  ``--availability-domain`` to the source group's AD (clone), the group replica's AD (activation) or the
  region's first AD.
* ``volume-group-replica list`` defaults ``--compartment-id`` to the tenancy and ``--availability-domain`` to the
  region's first AD (both required by ``oci``).
* Deletes and membership updates never prompt (``--force`` is accepted and ignored).
"""

from __future__ import annotations

import argparse
from typing import Any

from blockvault.cli.client import (
    CliContext,
    UsageError,
    add_force_option,
    add_list_options,
    add_wait_options,
    bool_arg,
    compact,
    finish,
    json_arg,
    list_and_emit,
)
from blockvault.cli.commands._common import (
    add_sort_options,
    add_tag_options,
    bv_create,
    bv_delete,
    bv_get,
    bv_item_url,
    bv_subcommands,
    bv_update,
    leaf,
    name_and_tags,
    subcommands,
)

GROUP_STATES = ("PROVISIONING", "AVAILABLE", "TERMINATING", "TERMINATED", "FAULTY", "UPDATE_PENDING")
GROUP_BACKUP_STATES = ("CREATING", "COMMITTED", "AVAILABLE", "TERMINATING", "TERMINATED", "FAULTY", "REQUEST_RECEIVED")
REPLICA_STATES = ("PROVISIONING", "AVAILABLE", "ACTIVATING", "TERMINATING", "TERMINATED", "FAULTY")


def _list_sorting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--display-name")
    add_sort_options(parser)


# ------------------------------------------------------------------------------------------------ registration


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``volume-group`` and ``volume-group-backup`` to the ``bv`` command that bv.register made."""
    groups = bv_subcommands(sub)
    _register_volume_group(groups)
    _register_volume_group_backup(groups)
    _register_volume_group_replica(groups)


def _register_volume_group_replica(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vgr = subcommands(
        groups.add_parser("volume-group-replica", help="volume group replicas (read-only)", allow_abbrev=False),
        "volume-group-replica",
    )
    get = leaf(vgr, "get", "get a volume group replica (on its destination region: --region)")
    get.add_argument("--volume-group-replica-id", required=True)
    get.set_defaults(handler=cmd_group_replica_get)

    lst = leaf(vgr, "list", "list the volume group replicas of an availability domain")
    lst.add_argument("-c", "--compartment-id", help="default: the tenancy")
    lst.add_argument("--availability-domain", help="default: the region's first")
    _list_sorting(lst)
    lst.add_argument("--lifecycle-state", type=str.upper, choices=REPLICA_STATES)
    add_list_options(lst)
    lst.set_defaults(handler=cmd_group_replica_list)


def _register_volume_group(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vg = subcommands(groups.add_parser("volume-group", help="volume groups", allow_abbrev=False), "volume-group")

    create = leaf(vg, "create", "create a volume group (from volumes, a volume group or a volume group backup)")
    create.add_argument("-c", "--compartment-id", help="default: the tenancy")
    create.add_argument("--availability-domain", help="default: the source group's AD, else the region's first")
    create.add_argument("--source-details", type=json_arg, help='JSON, e.g. {"type": "volumeIds", "volumeIds": [...]}')
    create.add_argument("--volume-ids", type=json_arg, help="JSON list of volumes (blockvault shorthand)")
    create.add_argument("--source-volume-group-id", help="clone this volume group (blockvault shorthand)")
    create.add_argument("--volume-group-backup-id", help="restore this volume group backup (blockvault shorthand)")
    create.add_argument(
        "--source-volume-group-replica-id", help="activate this volume group replica (blockvault shorthand)"
    )
    create.add_argument("--backup-policy-id")
    create.add_argument("--display-name")
    add_tag_options(create)
    create.add_argument("--volume-group-replicas", type=json_arg)
    create.add_argument("--cluster-placement-group-id")
    create.add_argument("--xrc-kms-key-id")
    add_wait_options(create, GROUP_STATES)
    create.set_defaults(handler=cmd_group_create)

    get = leaf(vg, "get", "get a volume group")
    get.add_argument("--volume-group-id", required=True)
    get.set_defaults(handler=cmd_group_get)

    lst = leaf(vg, "list", "list volume groups")
    lst.add_argument("-c", "--compartment-id", help="default: the tenancy")
    lst.add_argument("--availability-domain")
    _list_sorting(lst)
    lst.add_argument("--lifecycle-state", type=str.upper, choices=GROUP_STATES)
    add_list_options(lst)
    lst.set_defaults(handler=cmd_group_list)

    upd = leaf(vg, "update", "update a volume group (--volume-ids is the complete new list of volumes)")
    upd.add_argument("--volume-group-id", required=True)
    upd.add_argument("--display-name")
    add_tag_options(upd)
    upd.add_argument("--volume-ids", type=json_arg, help="JSON list: the group's volumes after the update")
    upd.add_argument("--volume-group-replicas", type=json_arg)
    upd.add_argument("--preserve-volume-replica", type=bool_arg)
    upd.add_argument("--if-match")
    add_force_option(upd)
    add_wait_options(upd, GROUP_STATES)
    upd.set_defaults(handler=cmd_group_update)

    move = leaf(vg, "change-compartment", "move a volume group to another compartment (its volumes stay)")
    move.add_argument("--volume-group-id", required=True)
    move.add_argument("-c", "--compartment-id", required=True)
    move.set_defaults(handler=cmd_group_move)

    dele = leaf(vg, "delete", "delete a volume group (its volumes stay)")
    dele.add_argument("--volume-group-id", required=True)
    dele.add_argument("--if-match")
    add_force_option(dele)
    add_wait_options(dele, GROUP_STATES)
    dele.set_defaults(handler=cmd_group_delete)


def _register_volume_group_backup(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vgb = subcommands(
        groups.add_parser("volume-group-backup", help="volume group backups", allow_abbrev=False), "volume-group-backup"
    )

    create = leaf(vgb, "create", "back up every volume of a volume group at one point in time")
    create.add_argument("--volume-group-id", required=True)
    create.add_argument("-c", "--compartment-id", help="default: the group's compartment")
    create.add_argument("--display-name")
    add_tag_options(create)
    create.add_argument("--type", type=str.upper, choices=("FULL", "INCREMENTAL"))
    add_wait_options(create, GROUP_BACKUP_STATES)
    create.set_defaults(handler=cmd_group_backup_create)

    get = leaf(vgb, "get", "get a volume group backup")
    get.add_argument("--volume-group-backup-id", required=True)
    get.set_defaults(handler=cmd_group_backup_get)

    lst = leaf(vgb, "list", "list volume group backups")
    lst.add_argument("-c", "--compartment-id", help="default: the tenancy")
    lst.add_argument("--volume-group-id")
    _list_sorting(lst)
    add_list_options(lst)
    lst.set_defaults(handler=cmd_group_backup_list)

    upd = leaf(vgb, "update", "rename a volume group backup or change its tags")
    upd.add_argument("--volume-group-backup-id", required=True)
    upd.add_argument("--display-name")
    add_tag_options(upd)
    upd.add_argument("--if-match")
    add_force_option(upd)
    add_wait_options(upd, GROUP_BACKUP_STATES)
    upd.set_defaults(handler=cmd_group_backup_update)

    dele = leaf(vgb, "delete", "delete a volume group backup and all of its member volume backups")
    dele.add_argument("--volume-group-backup-id", required=True)
    dele.add_argument("--if-match")
    add_force_option(dele)
    add_wait_options(dele, GROUP_BACKUP_STATES)
    dele.set_defaults(handler=cmd_group_backup_delete)

    move = leaf(vgb, "change-compartment", "move a volume group backup (its member backups stay)")
    move.add_argument("--volume-group-backup-id", required=True)
    move.add_argument("-c", "--compartment-id", required=True)
    move.set_defaults(handler=cmd_group_backup_move)

    copy = leaf(vgb, "copy", "copy a volume group backup (every member backup) to another region")
    copy.add_argument("--volume-group-backup-id", required=True)
    copy.add_argument("--destination-region", required=True)
    copy.add_argument("--display-name")
    copy.add_argument("--kms-key-id")
    add_wait_options(copy, GROUP_BACKUP_STATES)
    copy.set_defaults(handler=cmd_group_backup_copy)


# ------------------------------------------------------------------------------------------------ request bodies
# Pure: argparse namespace -> the JSON body the real CLI would send.


def group_source(args: argparse.Namespace) -> dict[str, Any]:
    """sourceDetails from --source-details or exactly one of the shorthands."""
    given = [
        (flag, value)
        for flag, value in (
            ("--source-details", args.source_details),
            ("--volume-ids", args.volume_ids),
            ("--source-volume-group-id", args.source_volume_group_id),
            ("--volume-group-backup-id", args.volume_group_backup_id),
            ("--source-volume-group-replica-id", getattr(args, "source_volume_group_replica_id", None)),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise UsageError(
            reason="give exactly one of --source-details, --volume-ids, --source-volume-group-id, "
            "--volume-group-backup-id or --source-volume-group-replica-id"
        )
    if args.source_details is not None:
        source = args.source_details
        if not isinstance(source, dict):
            raise UsageError(reason="--source-details must be a JSON object with a type")
        return dict(source)
    if args.volume_ids is not None:
        return {"type": "volumeIds", "volumeIds": args.volume_ids}
    if args.source_volume_group_id is not None:
        return {"type": "volumeGroupId", "volumeGroupId": args.source_volume_group_id}
    if args.volume_group_backup_id is not None:
        return {"type": "volumeGroupBackupId", "volumeGroupBackupId": args.volume_group_backup_id}
    return {"type": "volumeGroupReplicaId", "volumeGroupReplicaId": args.source_volume_group_replica_id}


def create_group_body(
    args: argparse.Namespace, *, compartment_id: str, availability_domain: str, source: dict[str, Any]
) -> dict[str, Any]:
    """CreateVolumeGroupDetails, in the order of the CLI's generated ``create_volume_group``."""
    return compact(
        [
            ("availabilityDomain", availability_domain),
            ("compartmentId", compartment_id),
            ("sourceDetails", source),
            ("backupPolicyId", args.backup_policy_id),
            *name_and_tags(args),
            ("volumeGroupReplicas", args.volume_group_replicas),
            ("clusterPlacementGroupId", args.cluster_placement_group_id),
            ("xrcKmsKeyId", args.xrc_kms_key_id),
        ]
    )


def update_group_body(args: argparse.Namespace) -> dict[str, Any]:
    return compact(
        [
            *name_and_tags(args),
            ("volumeIds", args.volume_ids),
            ("volumeGroupReplicas", args.volume_group_replicas),
        ]
    )


def create_group_backup_body(args: argparse.Namespace) -> dict[str, Any]:
    return compact(
        [
            ("volumeGroupId", args.volume_group_id),
            ("compartmentId", args.compartment_id),
            *name_and_tags(args),
            ("type", args.type),
        ]
    )


def update_group_backup_body(args: argparse.Namespace) -> dict[str, Any]:
    return compact(name_and_tags(args))


# ------------------------------------------------------------------------------------------------ handlers


def cmd_group_create(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    source = group_source(args)
    ad = args.availability_domain
    if not ad and source.get("type") == "volumeGroupId" and isinstance(source.get("volumeGroupId"), str):
        ad = (client.get(client.bv_url(f"/volumeGroups/{source['volumeGroupId']}")).data or {}).get(
            "availabilityDomain"
        )
    replica_id = source.get("volumeGroupReplicaId")
    if not ad and source.get("type") == "volumeGroupReplicaId" and isinstance(replica_id, str):
        ad = (client.get(client.bv_url(f"/volumeGroupReplicas/{replica_id}")).data or {}).get("availabilityDomain")
    body = create_group_body(
        args,
        compartment_id=args.compartment_id or client.tenancy_id,
        availability_domain=ad or client.first_availability_domain(),
        source=source,
    )
    return bv_create(ctx, args, "/volumeGroups", body)


def cmd_group_get(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_get(ctx, f"/volumeGroups/{args.volume_group_id}")


def cmd_group_list(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [
        ("availabilityDomain", args.availability_domain),
        ("compartmentId", args.compartment_id or ctx.client.tenancy_id),
        ("limit", None),
        ("page", None),
        ("displayName", args.display_name),
        ("sortBy", args.sort_by),
        ("sortOrder", args.sort_order),
        ("lifecycleState", args.lifecycle_state),
    ]
    return list_and_emit(ctx, args, ctx.client.bv_url("/volumeGroups"), params)


def cmd_group_update(args: argparse.Namespace, ctx: CliContext) -> int:
    url = ctx.client.bv_url(f"/volumeGroups/{args.volume_group_id}")
    params = [("preserveVolumeReplica", args.preserve_volume_replica)]
    resp = ctx.client.request("PUT", url, body=update_group_body(args), if_match=args.if_match, params=params)
    return finish(ctx, args, resp, url)


def cmd_group_replica_get(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_get(ctx, f"/volumeGroupReplicas/{args.volume_group_replica_id}")


def cmd_group_replica_list(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [
        ("availabilityDomain", args.availability_domain or ctx.client.first_availability_domain()),
        ("compartmentId", args.compartment_id or ctx.client.tenancy_id),
        ("limit", None),
        ("page", None),
        ("displayName", args.display_name),
        ("sortBy", args.sort_by),
        ("sortOrder", args.sort_order),
        ("lifecycleState", args.lifecycle_state),
    ]
    return list_and_emit(ctx, args, ctx.client.bv_url("/volumeGroupReplicas"), params)


def cmd_group_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_delete(ctx, args, f"/volumeGroups/{args.volume_group_id}")


def cmd_group_move(args: argparse.Namespace, ctx: CliContext) -> int:
    return _move(ctx, f"/volumeGroups/{args.volume_group_id}", args.compartment_id)


def cmd_group_backup_move(args: argparse.Namespace, ctx: CliContext) -> int:
    return _move(ctx, f"/volumeGroupBackups/{args.volume_group_backup_id}", args.compartment_id)


def _move(ctx: CliContext, path: str, compartment_id: str) -> int:
    url = ctx.client.bv_url(f"{path}/actions/changeCompartment")
    ctx.client.request("POST", url, body={"compartmentId": compartment_id})
    return 0


def cmd_group_backup_create(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_create(ctx, args, "/volumeGroupBackups", create_group_backup_body(args))


def cmd_group_backup_get(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_get(ctx, f"/volumeGroupBackups/{args.volume_group_backup_id}")


def cmd_group_backup_list(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [
        ("compartmentId", args.compartment_id or ctx.client.tenancy_id),
        ("volumeGroupId", args.volume_group_id),
        ("limit", None),
        ("page", None),
        ("displayName", args.display_name),
        ("sortBy", args.sort_by),
        ("sortOrder", args.sort_order),
    ]
    return list_and_emit(ctx, args, ctx.client.bv_url("/volumeGroupBackups"), params)


def cmd_group_backup_update(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_update(ctx, args, f"/volumeGroupBackups/{args.volume_group_backup_id}", update_group_backup_body(args))


def cmd_group_backup_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_delete(ctx, args, f"/volumeGroupBackups/{args.volume_group_backup_id}")


def cmd_group_backup_copy(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    url = client.bv_url(f"/volumeGroupBackups/{args.volume_group_backup_id}/actions/copy")
    body = compact(
        [
            ("destinationRegion", args.destination_region),
            ("displayName", args.display_name),
            ("kmsKeyId", args.kms_key_id),
        ]
    )
    resp = client.request("POST", url, body=body, retry_token=True)
    return finish(ctx, args, resp, bv_item_url(ctx, "/volumeGroupBackups", resp))
