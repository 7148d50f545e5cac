"""``blockvault iam explain`` and ``blockvault cis-check``: clients of blockvault's IAM extensions.

    blockvault iam explain --user-id U --operation CreateVolume --compartment-id C [--kms-key-id K]
                           [--target-id T] [--variable name=value ...]
        -> POST <region>/blockvault/iam/explain: allowed or denied; when denied, each missing permission with
           the statement that would grant it, ready to paste into `oci iam policy create --statements`.
    blockvault cis-check
        -> GET <region>/blockvault/iam/cis-check: findings for the CIS OCI Foundations recommendations that apply.

Both print JSON (or a table with --output table) and exit 0; a denied explanation is an answer, not an error.
"""

from __future__ import annotations

import argparse
from typing import Any

from blockvault.cli.client import CliContext, UsageError


def register(sub: Any) -> None:
    """Add the IAM commands to the CLI."""
    iam = sub.add_parser("iam", help="IAM: explain a policy decision", allow_abbrev=False)
    verbs = iam.add_subparsers(title="iam", dest="_iam", required=True, metavar="COMMAND")
    ex = verbs.add_parser("explain", help="would a user be allowed an operation? what statement is missing?")
    ex.add_argument("--user-id", required=True)
    ex.add_argument("--operation", required=True, help="OCI operation name, e.g. CreateVolume")
    ex.add_argument("--compartment-id", help="the target's compartment (default: the tenancy)")
    ex.add_argument("--target-id", help="the target resource's OCID")
    ex.add_argument("--kms-key-id", help="the kmsKeyId the request names (adds the key delegation checks)")
    ex.add_argument("--variable", action="append", default=[], metavar="NAME=VALUE", help="extra condition variable")
    ex.set_defaults(handler=cmd_explain)

    cis = sub.add_parser("cis-check", help="CIS OCI Foundations findings for volumes, keys, vaults and policies")
    cis.set_defaults(handler=cmd_cis_check)


def explain_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"userId": args.user_id, "operation": args.operation}
    for name, attr in (("compartmentId", "compartment_id"), ("targetId", "target_id"), ("kmsKeyId", "kms_key_id")):
        value = getattr(args, attr, None)
        if value:
            body[name] = value
    variables: dict[str, str] = {}
    for item in args.variable:
        name, sep, value = str(item).partition("=")
        if not sep or not name:
            raise UsageError(reason=f"--variable needs NAME=VALUE, got {item!r}")
        variables[name.strip()] = value.strip()
    if variables:
        body["variables"] = variables
    return body


def cmd_explain(args: argparse.Namespace, ctx: CliContext) -> int:
    resp = ctx.client.request("POST", ctx.client.root + "/blockvault/iam/explain", body=explain_body(args))
    ctx.out.emit_raw(resp.data)
    return 0


def cmd_cis_check(args: argparse.Namespace, ctx: CliContext) -> int:
    resp = ctx.client.get(ctx.client.root + "/blockvault/iam/cis-check")
    data = resp.data or {}
    if ctx.out.fmt == "table":
        ctx.out.emit_raw(data.get("findings", []))
    else:
        ctx.out.emit_raw(data)
    return 0
