"""``blockvault bv volume-backup-policy ...`` and ``bv volume-backup-policy-assignment ...``: backup policies with
the real ``oci bv`` names, flags and request bodies (create/get/list/update/delete; assignment
create/get/delete/get-volume-backup-policy-asset-assignment).

Differences from ``oci bv`` (additive): ``list`` without ``--compartment-id`` lists the Oracle-defined policies
(as the real CLI does); deletes never prompt (``--force`` is accepted and ignored).
"""

from __future__ import annotations

import argparse
from typing import Any

from blockvault.cli.client import (
    CliContext,
    add_force_option,
    add_list_options,
    compact,
    json_arg,
    list_and_emit,
)
from blockvault.cli.commands._common import (
    bv_subcommands,
    leaf,
    subcommands,
)

POLICIES = "/volumeBackupPolicies"
ASSIGNMENTS = "/volumeBackupPolicyAssignments"


def _policy_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--display-name")
    parser.add_argument("--destination-region", help="copy every scheduled backup to this region")
    parser.add_argument(
        "--schedules",
        type=json_arg,
        help='JSON list of VolumeBackupSchedule, e.g. [{"backupType": "INCREMENTAL", "period": "ONE_DAY", '
        '"retentionSeconds": 604800, "offsetType": "STRUCTURED", "hourOfDay": 2, "timeZone": "UTC"}]',
    )
    parser.add_argument("--defined-tags", type=json_arg)
    parser.add_argument("--freeform-tags", type=json_arg)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``volume-backup-policy`` and ``volume-backup-policy-assignment`` to ``bv`` (after bv.register)."""
    groups = bv_subcommands(sub)

    policy = subcommands(groups.add_parser("volume-backup-policy", help="backup policies", allow_abbrev=False), "vbp")
    create = leaf(policy, "create", "create a user-defined backup policy")
    create.add_argument("-c", "--compartment-id", help="default: the tenancy")
    _policy_fields(create)
    create.set_defaults(handler=cmd_policy_create)

    get = leaf(policy, "get", "get a backup policy (user- or Oracle-defined)")
    get.add_argument("--policy-id", required=True)
    get.set_defaults(handler=cmd_policy_get)

    lst = leaf(policy, "list", "list the policies of a compartment, or the Oracle-defined ones without one")
    lst.add_argument("-c", "--compartment-id")
    add_list_options(lst)
    lst.set_defaults(handler=cmd_policy_list)

    upd = leaf(policy, "update", "update a user-defined backup policy (--schedules replaces the list)")
    upd.add_argument("--policy-id", required=True)
    _policy_fields(upd)
    upd.add_argument("--if-match")
    add_force_option(upd)
    upd.set_defaults(handler=cmd_policy_update)

    dele = leaf(policy, "delete", "delete a user-defined backup policy that is assigned to nothing")
    dele.add_argument("--policy-id", required=True)
    dele.add_argument("--if-match")
    add_force_option(dele)
    dele.set_defaults(handler=cmd_policy_delete)

    assignment = subcommands(
        groups.add_parser("volume-backup-policy-assignment", help="backup policy assignments", allow_abbrev=False),
        "vbpa",
    )
    acreate = leaf(assignment, "create", "assign a policy to a volume or boot volume (replaces its assignment)")
    acreate.add_argument("--asset-id", required=True)
    acreate.add_argument("--policy-id", required=True)
    acreate.add_argument("--xrc-kms-key-id", help="key in the policy's destination region for its copies")
    acreate.set_defaults(handler=cmd_assignment_create)

    aget = leaf(assignment, "get", "get a backup policy assignment")
    aget.add_argument("--policy-assignment-id", required=True)
    aget.set_defaults(handler=cmd_assignment_get)

    adel = leaf(assignment, "delete", "delete a backup policy assignment")
    adel.add_argument("--policy-assignment-id", required=True)
    adel.add_argument("--if-match")
    add_force_option(adel)
    adel.set_defaults(handler=cmd_assignment_delete)

    asset = leaf(
        assignment, "get-volume-backup-policy-asset-assignment", "the assignment of an asset (a list of 0 or 1)"
    )
    asset.add_argument("--asset-id", required=True)
    add_list_options(asset)
    asset.set_defaults(handler=cmd_asset_assignment)


def policy_body(args: argparse.Namespace, *, compartment_id: str | None = None) -> dict[str, Any]:
    return compact(
        [
            ("compartmentId", compartment_id),
            ("displayName", args.display_name),
            ("destinationRegion", args.destination_region),
            ("schedules", args.schedules),
            ("definedTags", args.defined_tags),
            ("freeformTags", args.freeform_tags),
        ]
    )


def _emit(ctx: CliContext, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any) -> int:
    if body is not None:
        kw["body"] = body
    resp = ctx.client.request(method, ctx.client.bv_url(path), **kw)
    if resp.data is not None:
        ctx.out.emit(resp.data, etag=resp.etag)
    return 0


def cmd_policy_create(args: argparse.Namespace, ctx: CliContext) -> int:
    body = policy_body(args, compartment_id=args.compartment_id or ctx.client.tenancy_id)
    return _emit(ctx, "POST", POLICIES, body, retry_token=True)


def cmd_policy_get(args: argparse.Namespace, ctx: CliContext) -> int:
    return _emit(ctx, "GET", f"{POLICIES}/{args.policy_id}")


def cmd_policy_list(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [("limit", None), ("page", None), ("compartmentId", args.compartment_id)]
    return list_and_emit(ctx, args, ctx.client.bv_url(POLICIES), params)


def cmd_policy_update(args: argparse.Namespace, ctx: CliContext) -> int:
    return _emit(ctx, "PUT", f"{POLICIES}/{args.policy_id}", policy_body(args), if_match=args.if_match)


def cmd_policy_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.client.request("DELETE", ctx.client.bv_url(f"{POLICIES}/{args.policy_id}"), if_match=args.if_match)
    return 0


def cmd_assignment_create(args: argparse.Namespace, ctx: CliContext) -> int:
    body = compact([("assetId", args.asset_id), ("policyId", args.policy_id), ("xrcKmsKeyId", args.xrc_kms_key_id)])
    return _emit(ctx, "POST", ASSIGNMENTS, body)


def cmd_assignment_get(args: argparse.Namespace, ctx: CliContext) -> int:
    return _emit(ctx, "GET", f"{ASSIGNMENTS}/{args.policy_assignment_id}")


def cmd_assignment_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    url = ctx.client.bv_url(f"{ASSIGNMENTS}/{args.policy_assignment_id}")
    ctx.client.request("DELETE", url, if_match=args.if_match)
    return 0


def cmd_asset_assignment(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [("assetId", args.asset_id), ("limit", None), ("page", None)]
    return list_and_emit(ctx, args, ctx.client.bv_url(ASSIGNMENTS), params)
