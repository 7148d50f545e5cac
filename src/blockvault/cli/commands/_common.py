"""Parser builders, request-body pieces and handler steps that the ``bv``, ``bv volume-group``, backup-policy and
``kms`` command modules share, so that each flag, body field and output is spelled in one place."""

from __future__ import annotations

import argparse
from typing import Any

from blockvault.cli.client import ApiResponse, CliContext, finish, json_arg

SORT_BY = ("TIMECREATED", "DISPLAYNAME")
SORT_ORDER = ("ASC", "DESC")

# ------------------------------------------------------------------------------------------------ parsers


def bv_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse._SubParsersAction[Any]:
    """The sub-commands of ``bv`` that bv.register made (so that bv.py need not know the modules that add more)."""
    parser = sub.choices["bv"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the bv command has no sub-commands")  # pragma: no cover - bv.register builds them


def subcommands(parent: argparse.ArgumentParser, title: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    return parent.add_subparsers(title=title, dest=f"_{title}", required=True, metavar="COMMAND")


def leaf(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, *aliases: str
) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False, aliases=list(aliases))


def add_tag_options(parser: argparse.ArgumentParser, *, examples: bool = True) -> None:
    """``--freeform-tags`` and ``--defined-tags`` (JSON); ``examples`` adds an example to each help line."""
    parser.add_argument(
        "--freeform-tags", type=json_arg, help='JSON, e.g. {"Department": "Finance"}' if examples else None
    )
    parser.add_argument(
        "--defined-tags",
        type=json_arg,
        help='JSON, e.g. {"Operations": {"CostCenter": "42"}}' if examples else None,
    )


def add_sort_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sort-by", type=str.upper, choices=SORT_BY)
    parser.add_argument("--sort-order", type=str.upper, choices=SORT_ORDER)


# ------------------------------------------------------------------------------------------------ request bodies


def name_and_tags(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """definedTags, displayName, freeformTags: the run that the CLI's generated bodies add in this order."""
    return [
        ("definedTags", args.defined_tags),
        ("displayName", args.display_name),
        ("freeformTags", args.freeform_tags),
    ]


# ------------------------------------------------------------------------------------------------ bv handler steps


def bv_item_url(ctx: CliContext, collection: str, resp: ApiResponse) -> str | None:
    """The URL of the resource a create answered with (for ``--wait-for-state``), if it named one."""
    rid = resp.data.get("id") if isinstance(resp.data, dict) else None
    return ctx.client.bv_url(f"{collection}/{rid}") if rid else None


def bv_create(ctx: CliContext, args: argparse.Namespace, collection: str, body: dict[str, Any]) -> int:
    """POST a create (with an opc-retry-token, as the CLI sends) and print or wait for what it made."""
    resp = ctx.client.request("POST", ctx.client.bv_url(collection), body=body, retry_token=True)
    return finish(ctx, args, resp, bv_item_url(ctx, collection, resp))


def bv_get(ctx: CliContext, path: str) -> int:
    resp = ctx.client.get(ctx.client.bv_url(path))
    ctx.out.emit(resp.data, etag=resp.etag)
    return 0


def bv_update(ctx: CliContext, args: argparse.Namespace, path: str, body: dict[str, Any]) -> int:
    url = ctx.client.bv_url(path)
    resp = ctx.client.request("PUT", url, body=body, if_match=args.if_match)
    return finish(ctx, args, resp, url)


def bv_delete(ctx: CliContext, args: argparse.Namespace, path: str) -> int:
    url = ctx.client.bv_url(path)
    resp = ctx.client.request("DELETE", url, if_match=args.if_match)
    return finish(ctx, args, resp, url, deleting=True)
