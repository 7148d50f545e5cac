"""``blockvault bv ...``: the Block Volume commands, with the real ``oci bv`` names, flags and request bodies.

Groups: ``volume``, ``boot-volume``, ``backup``, ``boot-volume-backup`` (create/get/list/update/delete),
``volume-kms-key``, ``boot-volume-kms-key`` (get/update/delete), ``block-volume-replica``, ``boot-volume-replica``
(get/list). Replication is turned on and off with ``--block-volume-replicas`` / ``--boot-volume-replicas`` on
volume create/update (source region), replicas are read and activated (``--source-volume-replica-id``) in their own
region (``--region``).

Differences from ``oci bv`` (all additive):

* ``--compartment-id`` defaults to the tenancy, ``--availability-domain`` to the region's first AD (empty volume or
  restore from backup), so short command lines work against a fresh server.
* The spellings printed on OCI's "Managing Vault Encryption Keys for Block Volume" page, which the real CLI rejects
  (oci-wire.md §7.2), are accepted verbatim: ``bv create`` (= ``bv volume create``) and ``--backup-id``
  (= ``--volume-backup-id``).
* Deletes and tag updates never prompt (``--force`` is accepted and ignored).

Request bodies list fields in the order the CLI's generated code adds them; only flags given are sent, and an
empty ``--kms-key-id ''`` is sent as ``""`` (oci-wire.md §0.16).
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
    json_arg,
    list_and_emit,
    ocid_or_empty_arg,
)
from blockvault.cli.commands._common import (
    add_sort_options,
    add_tag_options,
    bv_create,
    bv_delete,
    bv_get,
    bv_update,
    leaf,
    name_and_tags,
    subcommands,
)

VOLUME_STATES = ("PROVISIONING", "RESTORING", "AVAILABLE", "TERMINATING", "TERMINATED", "FAULTY")
REPLICA_STATES = ("PROVISIONING", "AVAILABLE", "ACTIVATING", "TERMINATING", "TERMINATED", "FAULTY")
BACKUP_STATES = ("CREATING", "AVAILABLE", "TERMINATING", "TERMINATED", "FAULTY", "REQUEST_RECEIVED")


def _kms_key(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--kms-key-id", type=ocid_or_empty_arg, help=help_text)


# ------------------------------------------------------------------------------------------------ registration


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bv = sub.add_parser("bv", help="Block Volume service (oci bv)", allow_abbrev=False)
    groups = subcommands(bv, "bv")

    # The doc page's `oci bv create ...` (not a real CLI command): same parser as `bv volume create`.
    _volume_create_parser(leaf(groups, "create", "alias of `bv volume create` (the spelling on OCI's keys page)"))

    _register_volume(groups)
    _register_boot_volume(groups)
    _register_backup(groups)
    _register_boot_volume_backup(groups)
    _register_kms_key(groups, "volume-kms-key", "volume", "--volume-id", "/volumes")
    _register_kms_key(groups, "boot-volume-kms-key", "boot volume", "--boot-volume-id", "/bootVolumes")
    _register_replica(groups, "block-volume-replica", "--block-volume-replica-id", "/blockVolumeReplicas")
    _register_replica(groups, "boot-volume-replica", "--boot-volume-replica-id", "/bootVolumeReplicas")


def _register_replica(
    groups: argparse._SubParsersAction[argparse.ArgumentParser], name: str, id_flag: str, collection: str
) -> None:
    """``oci bv block-volume-replica get/list`` and the boot twin: replicas are read-only resources."""
    what = name.replace("-", " ")
    group = subcommands(groups.add_parser(name, help=f"{what}s (read-only)", allow_abbrev=False), name)
    get = leaf(group, "get", f"get a {what}")
    get.add_argument(id_flag, required=True, dest="replica_id")
    get.set_defaults(handler=cmd_replica_get, replica_collection=collection)

    lst = leaf(group, "list", f"list {what}s")
    lst.add_argument("--availability-domain")
    lst.add_argument("-c", "--compartment-id", help="default: the tenancy")
    lst.add_argument("--display-name")
    add_sort_options(lst)
    lst.add_argument("--lifecycle-state", type=str.upper, choices=REPLICA_STATES)
    lst.add_argument("--volume-group-replica-id")
    add_list_options(lst)
    lst.set_defaults(handler=cmd_replica_list, replica_collection=collection)


def _register_volume(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    volume = subcommands(groups.add_parser("volume", help="block volumes", allow_abbrev=False), "volume")
    _volume_create_parser(leaf(volume, "create", "create a block volume (empty, clone, restore or from a replica)"))

    get = leaf(volume, "get", "get a block volume")
    get.add_argument("--volume-id", required=True)
    get.set_defaults(handler=cmd_volume_get)

    lst = leaf(volume, "list", "list block volumes")
    lst.add_argument("-c", "--compartment-id", help="default: the tenancy")
    lst.add_argument("--availability-domain")
    lst.add_argument("--display-name")
    add_sort_options(lst)
    lst.add_argument("--volume-group-id")
    lst.add_argument("--cluster-placement-group-id")
    lst.add_argument("--lifecycle-state", type=str.upper, choices=VOLUME_STATES)
    add_list_options(lst)
    lst.set_defaults(handler=cmd_volume_list)

    upd = leaf(volume, "update", "update a block volume")
    upd.add_argument("--volume-id", required=True)
    upd.add_argument("--display-name")
    upd.add_argument("--vpus-per-gb", type=int)
    upd.add_argument("--size-in-gbs", type=int)
    upd.add_argument("--is-auto-tune-enabled", type=bool_arg)
    upd.add_argument("--block-volume-replicas", type=json_arg, help="JSON list; '[]' disables replication")
    upd.add_argument("--autotune-policies", type=json_arg)
    upd.add_argument("--is-reservations-enabled", type=bool_arg)
    add_tag_options(upd)
    upd.add_argument("--if-match")
    add_force_option(upd)
    add_wait_options(upd, VOLUME_STATES)
    upd.set_defaults(handler=cmd_volume_update)

    dele = leaf(volume, "delete", "delete a block volume")
    dele.add_argument("--volume-id", required=True)
    dele.add_argument("--if-match")
    add_force_option(dele)
    add_wait_options(dele, VOLUME_STATES)
    dele.set_defaults(handler=cmd_volume_delete)


def _volume_create_parser(create: argparse.ArgumentParser) -> None:
    create.add_argument("-c", "--compartment-id", help="default: the source's compartment, else the tenancy")
    create.add_argument("--availability-domain", help="default: the region's first AD (empty volume or restore)")
    create.add_argument("--display-name")
    create.add_argument("--size-in-gbs", type=int)
    create.add_argument("--vpus-per-gb", type=int)
    _kms_key(create, "the Vault key that protects the volume's data key")
    create.add_argument("--backup-policy-id")
    create.add_argument("--cluster-placement-group-id")
    create.add_argument("--is-auto-tune-enabled", type=bool_arg)
    create.add_argument("--block-volume-replicas", type=json_arg)
    create.add_argument("--autotune-policies", type=json_arg)
    create.add_argument("--xrc-kms-key-id")
    create.add_argument("--is-reservations-enabled", type=bool_arg)
    add_tag_options(create)
    create.add_argument("--volume-backup-id", help="restore from this volume backup")
    create.add_argument("--source-volume-id", help="clone this volume")
    create.add_argument("--source-volume-replica-id", help="activate this block volume replica")
    add_wait_options(create, VOLUME_STATES)
    create.set_defaults(handler=cmd_volume_create)


def _register_boot_volume(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    boot = subcommands(groups.add_parser("boot-volume", help="boot volumes", allow_abbrev=False), "boot-volume")

    create = leaf(boot, "create", "create a boot volume from a boot volume, backup or replica")
    create.add_argument("-c", "--compartment-id", help="default: the source's compartment")
    create.add_argument("--availability-domain", help="default: the region's first AD (restore from backup)")
    create.add_argument("--display-name")
    create.add_argument("--size-in-gbs", type=int)
    create.add_argument("--vpus-per-gb", type=int)
    _kms_key(create, "the Vault key that protects the boot volume's data key")
    create.add_argument("--backup-policy-id")
    create.add_argument("--cluster-placement-group-id")
    create.add_argument("--is-auto-tune-enabled", type=bool_arg)
    create.add_argument("--boot-volume-replicas", type=json_arg)
    create.add_argument("--autotune-policies", type=json_arg)
    create.add_argument("--xrc-kms-key-id")
    add_tag_options(create)
    create.add_argument("--source-boot-volume-id")
    create.add_argument("--boot-volume-backup-id")
    create.add_argument("--source-volume-replica-id", help="a boot volume replica")
    create.add_argument("--source-details", type=json_arg, help="raw sourceDetails JSON (instead of the three above)")
    add_wait_options(create, VOLUME_STATES)
    create.set_defaults(handler=cmd_boot_volume_create)

    get = leaf(boot, "get", "get a boot volume")
    get.add_argument("--boot-volume-id", required=True)
    get.set_defaults(handler=cmd_boot_volume_get)

    lst = leaf(boot, "list", "list boot volumes")
    lst.add_argument("-c", "--compartment-id", help="default: the tenancy")
    lst.add_argument("--availability-domain")
    lst.add_argument("--volume-group-id")
    add_list_options(lst)
    lst.set_defaults(handler=cmd_boot_volume_list)

    upd = leaf(boot, "update", "update a boot volume")
    upd.add_argument("--boot-volume-id", required=True)
    upd.add_argument("--display-name")
    upd.add_argument("--size-in-gbs", type=int)
    upd.add_argument("--vpus-per-gb", type=int)
    upd.add_argument("--is-auto-tune-enabled", type=bool_arg)
    upd.add_argument("--boot-volume-replicas", type=json_arg)
    upd.add_argument("--autotune-policies", type=json_arg)
    add_tag_options(upd)
    upd.add_argument("--if-match")
    add_force_option(upd)
    add_wait_options(upd, VOLUME_STATES)
    upd.set_defaults(handler=cmd_boot_volume_update)

    dele = leaf(boot, "delete", "delete a boot volume")
    dele.add_argument("--boot-volume-id", required=True)
    dele.add_argument("--if-match")
    add_force_option(dele)
    add_wait_options(dele, VOLUME_STATES)
    dele.set_defaults(handler=cmd_boot_volume_delete)


def _register_backup(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = subcommands(groups.add_parser("backup", help="volume backups", allow_abbrev=False), "backup")

    create = leaf(backup, "create", "back up a block volume")
    create.add_argument("--volume-id", required=True)
    _kms_key(create, "the Vault key that protects the backup")
    create.add_argument("--display-name")
    create.add_argument("--type", type=str.upper, choices=("FULL", "INCREMENTAL"))
    add_tag_options(create)
    add_wait_options(create, BACKUP_STATES)
    create.set_defaults(handler=cmd_backup_create)

    get = leaf(backup, "get", "get a volume backup")
    _backup_id(get)
    get.set_defaults(handler=cmd_backup_get)

    lst = leaf(backup, "list", "list volume backups")
    lst.add_argument("-c", "--compartment-id", help="default: the tenancy")
    lst.add_argument("--volume-id")
    lst.add_argument("--display-name")
    lst.add_argument("--source-volume-backup-id")
    add_sort_options(lst)
    lst.add_argument("--lifecycle-state", type=str.upper, choices=BACKUP_STATES)
    add_list_options(lst)
    lst.set_defaults(handler=cmd_backup_list)

    upd = leaf(backup, "update", "update a volume backup (--kms-key-id '' returns it to the provider key)")
    _backup_id(upd)
    upd.add_argument("--display-name")
    _kms_key(upd, "the new Vault key; '' switches back to provider-managed encryption")
    add_tag_options(upd)
    upd.add_argument("--if-match")
    add_force_option(upd)
    add_wait_options(upd, BACKUP_STATES)
    upd.set_defaults(handler=cmd_backup_update)

    dele = leaf(backup, "delete", "delete a volume backup")
    _backup_id(dele)
    dele.add_argument("--if-match")
    add_force_option(dele)
    add_wait_options(dele, BACKUP_STATES)
    dele.set_defaults(handler=cmd_backup_delete)


def _backup_id(parser: argparse.ArgumentParser) -> None:
    # --backup-id is the doc page's spelling (the real CLI says "No such option"); same destination.
    parser.add_argument("--volume-backup-id", "--backup-id", dest="volume_backup_id", required=True)


def _register_boot_volume_backup(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = subcommands(
        groups.add_parser("boot-volume-backup", help="boot volume backups", allow_abbrev=False), "boot-volume-backup"
    )

    create = leaf(backup, "create", "back up a boot volume")
    create.add_argument("--boot-volume-id", required=True)
    create.add_argument("--display-name")
    create.add_argument("--type", type=str.upper, choices=("FULL", "INCREMENTAL"))
    _kms_key(create, "the Vault key that protects the backup")
    add_tag_options(create)
    add_wait_options(create, BACKUP_STATES)
    create.set_defaults(handler=cmd_boot_backup_create)

    get = leaf(backup, "get", "get a boot volume backup")
    get.add_argument("--boot-volume-backup-id", required=True)
    get.set_defaults(handler=cmd_boot_backup_get)

    lst = leaf(backup, "list", "list boot volume backups")
    lst.add_argument("-c", "--compartment-id", help="default: the tenancy")
    lst.add_argument("--boot-volume-id")
    lst.add_argument("--display-name")
    lst.add_argument("--source-boot-volume-backup-id")
    add_sort_options(lst)
    lst.add_argument("--lifecycle-state", type=str.upper, choices=BACKUP_STATES)
    add_list_options(lst)
    lst.set_defaults(handler=cmd_boot_backup_list)

    upd = leaf(backup, "update", "update a boot volume backup")
    upd.add_argument("--boot-volume-backup-id", required=True)
    upd.add_argument("--display-name")
    _kms_key(upd, "the new Vault key; '' switches back to provider-managed encryption")
    add_tag_options(upd)
    upd.add_argument("--if-match")
    add_force_option(upd)
    add_wait_options(upd, BACKUP_STATES)
    upd.set_defaults(handler=cmd_boot_backup_update)

    dele = leaf(backup, "delete", "delete a boot volume backup")
    dele.add_argument("--boot-volume-backup-id", required=True)
    dele.add_argument("--if-match")
    add_force_option(dele)
    add_wait_options(dele, BACKUP_STATES)
    dele.set_defaults(handler=cmd_boot_backup_delete)


def _register_kms_key(
    groups: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    what: str,
    id_flag: str,
    collection: str,
) -> None:
    grp = subcommands(groups.add_parser(name, help=f"the Vault key of a {what}", allow_abbrev=False), name)
    dest = id_flag.lstrip("-").replace("-", "_")

    get = leaf(grp, "get", f"show the Vault key of a {what}")
    get.add_argument(id_flag, dest=dest, required=True)
    get.add_argument("--if-match")
    get.set_defaults(handler=cmd_kms_key_get, kms_collection=collection, kms_id_dest=dest)

    upd = leaf(grp, "update", f"assign or rotate the Vault key of a {what}")
    upd.add_argument(id_flag, dest=dest, required=True)
    _kms_key(upd, "the new Vault key")
    upd.add_argument("--if-match")
    upd.set_defaults(handler=cmd_kms_key_update, kms_collection=collection, kms_id_dest=dest)

    dele = leaf(grp, "delete", f"return a {what} to provider-managed encryption")
    dele.add_argument(id_flag, dest=dest, required=True)
    dele.add_argument("--if-match")
    add_force_option(dele)
    dele.set_defaults(handler=cmd_kms_key_delete, kms_collection=collection, kms_id_dest=dest)


# ------------------------------------------------------------------------------------------------ request bodies
# Pure: argparse namespace (+ what the pre-GET learned) -> the JSON body the real CLI would send.


def create_volume_body(
    args: argparse.Namespace,
    *,
    compartment_id: str | None,
    availability_domain: str | None,
    source_details: dict[str, Any] | None,
) -> dict[str, Any]:
    """CreateVolumeDetails, in the order of the CLI's generated ``create_volume``."""
    return compact(
        [
            ("compartmentId", compartment_id),
            ("availabilityDomain", availability_domain),
            ("backupPolicyId", args.backup_policy_id),
            *name_and_tags(args),
            ("kmsKeyId", args.kms_key_id),
            ("vpusPerGB", args.vpus_per_gb),
            ("clusterPlacementGroupId", args.cluster_placement_group_id),
            ("sizeInGBs", args.size_in_gbs),
            ("sourceDetails", source_details),
            ("isAutoTuneEnabled", args.is_auto_tune_enabled),
            ("blockVolumeReplicas", args.block_volume_replicas),
            ("autotunePolicies", args.autotune_policies),
            ("xrcKmsKeyId", args.xrc_kms_key_id),
            ("isReservationsEnabled", args.is_reservations_enabled),
        ]
    )


def volume_source(args: argparse.Namespace) -> tuple[str, str, str] | None:
    """(sourceDetails.type, id, GET path of the source) from the three mutually exclusive flags."""
    given = [
        (flag, value)
        for flag, value in (
            ("--volume-backup-id", args.volume_backup_id),
            ("--source-volume-id", args.source_volume_id),
            ("--source-volume-replica-id", args.source_volume_replica_id),
        )
        if value
    ]
    if len(given) > 1:
        raise UsageError(
            reason="You can only specify one of either --volume-backup-id, --source-volume-id or "
            "--source-volume-replica-id option"
        )
    if args.volume_backup_id:
        return "volumeBackup", args.volume_backup_id, f"/volumeBackups/{args.volume_backup_id}"
    if args.source_volume_id:
        return "volume", args.source_volume_id, f"/volumes/{args.source_volume_id}"
    if args.source_volume_replica_id:
        rid = args.source_volume_replica_id
        return "blockVolumeReplica", rid, f"/blockVolumeReplicas/{rid}"
    return None


def update_volume_body(args: argparse.Namespace) -> dict[str, Any]:
    return compact(
        [
            *name_and_tags(args),
            ("vpusPerGB", args.vpus_per_gb),
            ("sizeInGBs", args.size_in_gbs),
            ("isAutoTuneEnabled", args.is_auto_tune_enabled),
            ("blockVolumeReplicas", args.block_volume_replicas),
            ("autotunePolicies", args.autotune_policies),
            ("isReservationsEnabled", args.is_reservations_enabled),
        ]
    )


def create_boot_volume_body(
    args: argparse.Namespace,
    *,
    compartment_id: str | None,
    availability_domain: str | None,
    source_details: Any,
) -> dict[str, Any]:
    return compact(
        [
            ("availabilityDomain", availability_domain),
            ("backupPolicyId", args.backup_policy_id),
            ("compartmentId", compartment_id),
            *name_and_tags(args),
            ("kmsKeyId", args.kms_key_id),
            ("sizeInGBs", args.size_in_gbs),
            ("clusterPlacementGroupId", args.cluster_placement_group_id),
            ("vpusPerGB", args.vpus_per_gb),
            ("sourceDetails", source_details),
            ("isAutoTuneEnabled", args.is_auto_tune_enabled),
            ("bootVolumeReplicas", args.boot_volume_replicas),
            ("autotunePolicies", args.autotune_policies),
            ("xrcKmsKeyId", args.xrc_kms_key_id),
        ]
    )


def update_boot_volume_body(args: argparse.Namespace) -> dict[str, Any]:
    return compact(
        [
            *name_and_tags(args),
            ("sizeInGBs", args.size_in_gbs),
            ("vpusPerGB", args.vpus_per_gb),
            ("isAutoTuneEnabled", args.is_auto_tune_enabled),
            ("bootVolumeReplicas", args.boot_volume_replicas),
            ("autotunePolicies", args.autotune_policies),
        ]
    )


def create_backup_body(args: argparse.Namespace) -> dict[str, Any]:
    return compact(
        [
            ("volumeId", args.volume_id),
            *name_and_tags(args),
            ("kmsKeyId", args.kms_key_id),
            ("type", args.type),
        ]
    )


def create_boot_backup_body(args: argparse.Namespace) -> dict[str, Any]:
    return compact(
        [
            ("bootVolumeId", args.boot_volume_id),
            *name_and_tags(args),
            ("type", args.type),
            ("kmsKeyId", args.kms_key_id),
        ]
    )


def update_backup_body(args: argparse.Namespace) -> dict[str, Any]:
    """UpdateVolumeBackupDetails / UpdateBootVolumeBackupDetails; ``kmsKeyId: ""`` goes out verbatim."""
    return compact(
        [
            *name_and_tags(args),
            ("kmsKeyId", args.kms_key_id),
        ]
    )


def update_kms_key_body(args: argparse.Namespace) -> dict[str, Any]:
    return compact([("kmsKeyId", args.kms_key_id)])


# ------------------------------------------------------------------------------------------------ handlers


def cmd_volume_create(args: argparse.Namespace, ctx: CliContext) -> int:
    """Mirror of ``oci bv volume create`` (oci-wire.md §4.6): validate, pre-GET the source, POST, wait."""
    client = ctx.client
    source = volume_source(args)
    compartment = args.compartment_id
    ad = args.availability_domain
    source_details: dict[str, Any] | None = None
    if source is not None:
        kind, source_id, path = source
        found = client.get(client.bv_url(path)).data or {}
        if not compartment:
            compartment = found.get("compartmentId")
        if kind == "blockVolumeReplica":
            # The real CLI replaces the AD with the replica's, even one given on the command line.
            ad = found.get("availabilityDomain")
        source_details = {"type": kind, "id": source_id}
    if not compartment:
        compartment = client.tenancy_id
    if not ad and (source is None or source[0] == "volumeBackup"):
        ad = client.first_availability_domain()
    body = create_volume_body(args, compartment_id=compartment, availability_domain=ad, source_details=source_details)
    return bv_create(ctx, args, "/volumes", body)


def cmd_volume_get(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_get(ctx, f"/volumes/{args.volume_id}")


def cmd_volume_list(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [
        ("availabilityDomain", args.availability_domain),
        ("compartmentId", args.compartment_id or ctx.client.tenancy_id),
        ("limit", None),
        ("page", None),
        ("displayName", args.display_name),
        ("sortBy", args.sort_by),
        ("sortOrder", args.sort_order),
        ("volumeGroupId", args.volume_group_id),
        ("clusterPlacementGroupId", args.cluster_placement_group_id),
        ("lifecycleState", args.lifecycle_state),
    ]
    return list_and_emit(ctx, args, ctx.client.bv_url("/volumes"), params)


def cmd_volume_update(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_update(ctx, args, f"/volumes/{args.volume_id}", update_volume_body(args))


def cmd_volume_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_delete(ctx, args, f"/volumes/{args.volume_id}")


def cmd_boot_volume_create(args: argparse.Namespace, ctx: CliContext) -> int:
    """Mirror of ``oci bv boot-volume create``: a source is required (no empty boot volumes)."""
    client = ctx.client
    given = [
        (kind, value, path)
        for kind, value, path in (
            ("bootVolume", args.source_boot_volume_id, "/bootVolumes/{}"),
            ("bootVolumeBackup", args.boot_volume_backup_id, "/bootVolumeBackups/{}"),
            ("bootVolumeReplica", args.source_volume_replica_id, "/bootVolumeReplicas/{}"),
        )
        if value
    ]
    if len(given) > 1:
        raise UsageError(
            reason="You can only specify one of either --source-boot-volume-id, --boot-volume-backup-id or "
            "--source-volume-replica-id option"
        )
    compartment = args.compartment_id
    ad = args.availability_domain
    source_details: Any
    if given:
        kind, source_id, path = given[0]
        found = client.get(client.bv_url(path.format(source_id))).data or {}
        if not compartment:
            compartment = found.get("compartmentId")
        if kind == "bootVolumeReplica":
            ad = found.get("availabilityDomain")
        if kind == "bootVolumeBackup" and not ad:
            ad = client.first_availability_domain()
        source_details = {"type": kind, "id": source_id}
    elif args.source_details is not None:
        source_details = args.source_details
    else:
        raise UsageError(
            reason="An empty boot volume cannot be created. Please specify either --boot-volume-backup-id, "
            "--source-boot-volume-id or --source-volume-replica-id"
        )
    if not compartment:
        compartment = client.tenancy_id
    body = create_boot_volume_body(
        args, compartment_id=compartment, availability_domain=ad, source_details=source_details
    )
    return bv_create(ctx, args, "/bootVolumes", body)


def cmd_boot_volume_get(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_get(ctx, f"/bootVolumes/{args.boot_volume_id}")


def cmd_boot_volume_list(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [
        ("availabilityDomain", args.availability_domain),
        ("compartmentId", args.compartment_id or ctx.client.tenancy_id),
        ("limit", None),
        ("page", None),
        ("volumeGroupId", args.volume_group_id),
    ]
    return list_and_emit(ctx, args, ctx.client.bv_url("/bootVolumes"), params)


def cmd_boot_volume_update(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_update(ctx, args, f"/bootVolumes/{args.boot_volume_id}", update_boot_volume_body(args))


def cmd_boot_volume_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_delete(ctx, args, f"/bootVolumes/{args.boot_volume_id}")


def cmd_backup_create(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_create(ctx, args, "/volumeBackups", create_backup_body(args))


def cmd_backup_get(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_get(ctx, f"/volumeBackups/{args.volume_backup_id}")


def cmd_backup_list(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [
        ("compartmentId", args.compartment_id or ctx.client.tenancy_id),
        ("volumeId", args.volume_id),
        ("limit", None),
        ("page", None),
        ("displayName", args.display_name),
        ("sourceVolumeBackupId", args.source_volume_backup_id),
        ("sortBy", args.sort_by),
        ("sortOrder", args.sort_order),
        ("lifecycleState", args.lifecycle_state),
    ]
    return list_and_emit(ctx, args, ctx.client.bv_url("/volumeBackups"), params)


def cmd_backup_update(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_update(ctx, args, f"/volumeBackups/{args.volume_backup_id}", update_backup_body(args))


def cmd_backup_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_delete(ctx, args, f"/volumeBackups/{args.volume_backup_id}")


def cmd_boot_backup_create(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_create(ctx, args, "/bootVolumeBackups", create_boot_backup_body(args))


def cmd_boot_backup_get(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_get(ctx, f"/bootVolumeBackups/{args.boot_volume_backup_id}")


def cmd_boot_backup_list(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [
        ("compartmentId", args.compartment_id or ctx.client.tenancy_id),
        ("bootVolumeId", args.boot_volume_id),
        ("limit", None),
        ("page", None),
        ("displayName", args.display_name),
        ("sourceBootVolumeBackupId", args.source_boot_volume_backup_id),
        ("sortBy", args.sort_by),
        ("sortOrder", args.sort_order),
        ("lifecycleState", args.lifecycle_state),
    ]
    return list_and_emit(ctx, args, ctx.client.bv_url("/bootVolumeBackups"), params)


def cmd_boot_backup_update(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_update(ctx, args, f"/bootVolumeBackups/{args.boot_volume_backup_id}", update_backup_body(args))


def cmd_boot_backup_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_delete(ctx, args, f"/bootVolumeBackups/{args.boot_volume_backup_id}")


def cmd_kms_key_get(args: argparse.Namespace, ctx: CliContext) -> int:
    return _kms_key_call(ctx, args, "GET")


def cmd_kms_key_update(args: argparse.Namespace, ctx: CliContext) -> int:
    return _kms_key_call(ctx, args, "PUT", update_kms_key_body(args))


def cmd_kms_key_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    return _kms_key_call(ctx, args, "DELETE")


def _kms_key_call(ctx: CliContext, args: argparse.Namespace, method: str, body: dict[str, Any] | None = None) -> int:
    """GetVolumeKmsKey & co.: the key of a volume/boot volume/backup; a delete prints nothing, a get no key ``{}``."""
    url = ctx.client.bv_url(f"{args.kms_collection}/{getattr(args, args.kms_id_dest)}/kmsKey")
    sent: dict[str, Any] = {} if body is None else {"body": body}  # no body at all on GET and DELETE
    resp = ctx.client.request(method, url, if_match=args.if_match, **sent)
    if method != "DELETE":
        ctx.out.emit(resp.data if resp.data is not None else {}, etag=resp.etag)
    return 0


def cmd_replica_get(args: argparse.Namespace, ctx: CliContext) -> int:
    return bv_get(ctx, f"{args.replica_collection}/{args.replica_id}")


def cmd_replica_list(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [
        ("availabilityDomain", args.availability_domain),
        ("compartmentId", args.compartment_id or ctx.client.tenancy_id),
        ("volumeGroupReplicaId", args.volume_group_replica_id),
        ("limit", None),
        ("page", None),
        ("displayName", args.display_name),
        ("sortBy", args.sort_by),
        ("sortOrder", args.sort_order),
        ("lifecycleState", args.lifecycle_state),
    ]
    return list_and_emit(ctx, args, ctx.client.bv_url(args.replica_collection), params)
