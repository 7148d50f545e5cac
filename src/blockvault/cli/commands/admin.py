"""``blockvault clock ...`` and ``blockvault endpoints``: operator conveniences, not OCI commands.

``clock`` drives the server's admin-only clock extension, which moves time-based Vault behaviour (key and vault
deletion windows) forward without waiting days::

    GET  <region>/blockvault/admin/clock
    POST <region>/blockvault/admin/clock/advance   {"seconds": <int>}

``endpoints`` shows what ``blockvault serve`` published in ``<data_dir>/blockvault.json``: one row per region with
its endpoint, plus the ``oci`` CLI flags that reach the same server.
"""

from __future__ import annotations

import argparse
from typing import Any

from blockvault.cli.client import DISCOVERY_FILE, CliContext, ServerNotFound, UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    clock = sub.add_parser("clock", help="the server's admin clock (time-based Vault behaviour)", allow_abbrev=False)
    verbs = clock.add_subparsers(title="clock", dest="_clock", required=True, metavar="COMMAND")

    get = verbs.add_parser("get", help="show the server's clock", allow_abbrev=False)
    get.set_defaults(handler=cmd_clock_get)

    adv = verbs.add_parser("advance", help="move the server's clock forward (never back)", allow_abbrev=False)
    adv.add_argument("--days", type=int, default=0)
    adv.add_argument("--hours", type=int, default=0)
    adv.add_argument("--minutes", type=int, default=0)
    adv.add_argument("--seconds", type=int, default=0)
    adv.set_defaults(handler=cmd_clock_advance)

    ep = sub.add_parser("endpoints", help=f"show the regions and endpoints in {DISCOVERY_FILE}", allow_abbrev=False)
    ep.set_defaults(handler=cmd_endpoints)


def advance_seconds(args: argparse.Namespace) -> int:
    """The total of --days/--hours/--minutes/--seconds; positive, since the clock never goes back."""
    total = int(args.days) * 86400 + int(args.hours) * 3600 + int(args.minutes) * 60 + int(args.seconds)
    if total <= 0:
        raise UsageError(reason="clock advance needs a positive --days, --hours, --minutes or --seconds")
    return total


def cmd_clock_get(args: argparse.Namespace, ctx: CliContext) -> int:
    resp = ctx.client.get(ctx.client.admin_url("/clock"))
    ctx.out.emit_raw(resp.data)
    return 0


def cmd_clock_advance(args: argparse.Namespace, ctx: CliContext) -> int:
    seconds = advance_seconds(args)
    resp = ctx.client.request("POST", ctx.client.admin_url("/clock/advance"), body={"seconds": seconds})
    ctx.out.emit_raw(resp.data)
    return 0


def endpoints_view(disc_raw: dict[str, Any], *, data_dir: str, selected: str | None) -> dict[str, Any]:
    """A readable summary of blockvault.json (already in the CLI's kebab-case)."""
    default = disc_raw.get("defaultRegion")
    config = disc_raw.get("ociConfigFile")
    profile = disc_raw.get("profile")
    regions = []
    for name, info in sorted((disc_raw.get("regions") or {}).items()):
        endpoint = info.get("endpoint")
        oci_args = ["--endpoint", str(endpoint)]
        if config:
            oci_args = ["--config-file", str(config), *(["--profile", str(profile)] if profile else []), *oci_args]
        regions.append(
            {
                "region": name,
                "key": info.get("key"),
                "endpoint": endpoint,
                "availability-domains": list(info.get("availabilityDomains") or []),
                "is-default": name == default,
                "is-selected": name == (selected or default),
                "oci-cli-args": " ".join(oci_args),
            }
        )
    return {
        "data-dir": data_dir,
        "default-region": default,
        "oci-config-file": config,
        "profile": profile,
        "tenancy-id": disc_raw.get("tenancyId"),
        "regions": regions,
    }


def cmd_endpoints(args: argparse.Namespace, ctx: CliContext) -> int:
    disc = ctx.discovery()
    if disc is None:
        raise ServerNotFound(file=DISCOVERY_FILE, data_dir=ctx.opts.data_dir)
    view = endpoints_view(dict(disc.raw), data_dir=str(ctx.opts.data_dir), selected=ctx.opts.region)
    if ctx.out.fmt == "table":
        ctx.out.emit_raw(view["regions"])
    else:
        ctx.out.emit(view, convert=False)
    return 0
