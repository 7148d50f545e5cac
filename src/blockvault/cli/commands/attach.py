"""``blockvault volume|boot-volume attach|detach|attachments``: NBD attachments (blockvault extension).

attach VOLUME_ID [--tls] [--read-only] [--psk-file PATH] [--display-name NAME]
    POST .../volumes/{id}/actions/attach; prints the attachment with its NBD URI (and, for --tls, the PSK
    once; --psk-file writes it as "identity:hexkey", the keys.psk format of qemu's tls-creds-psk and of
    libnbd's tls-psk-file, mode 0600)
detach VOLUME_ID [--attachment-id ID]      POST .../actions/detach (every active attachment if no id)
attachments VOLUME_ID [--lifecycle-state]   GET .../attachments
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from blockvault.cli.client import CliContext, compact
from blockvault.errors import InvalidArgument

_KINDS = {"volume": "/volumes", "boot-volume": "/bootVolumes"}


def _verbs(sub: Any, noun: str) -> Any:
    """The subcommand action of the `volume` / `boot-volume` parser (data.py made them; we add verbs)."""
    parser = sub.choices.get(noun)
    if parser is None:
        parser = sub.add_parser(noun, help=f"commands on a {noun.replace('-', ' ')}", allow_abbrev=False)
        return parser.add_subparsers(title=noun, dest=f"_{noun}", required=True, metavar="COMMAND")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(title=noun, dest=f"_{noun}", required=True, metavar="COMMAND")


def register(sub: Any) -> None:
    """Add the attach/detach commands to the CLI."""
    for noun in _KINDS:
        what = noun.replace("-", " ")
        verbs = _verbs(sub, noun)
        attach = verbs.add_parser(
            "attach",
            help=f"attach a {what} over NBD and print its URI",
            allow_abbrev=False,
            description=f"Create an NBD attachment of a {what}: a fresh, unguessable export name (and with --tls a "
            "pre-shared key, shown once).",
        )
        attach.add_argument("volume_id", metavar="VOLUME_ID")
        attach.add_argument("--tls", action="store_true", help="NBD over TLS with a per-attachment pre-shared key")
        attach.add_argument("--read-only", action="store_true", help="the export refuses writes")
        attach.add_argument("--display-name", help="a name for the attachment")
        attach.add_argument("--psk-file", help="with --tls: write the PSK here as identity:hexkey (mode 0600)")
        attach.set_defaults(handler=cmd_attach, attach_kind=noun)

        detach = verbs.add_parser(
            "detach", help=f"end NBD attachments of a {what} (their connections are closed)", allow_abbrev=False
        )
        detach.add_argument("volume_id", metavar="VOLUME_ID")
        detach.add_argument("--attachment-id", help="only this attachment (default: every active one)")
        detach.set_defaults(handler=cmd_detach, attach_kind=noun)

        listing = verbs.add_parser("attachments", help=f"list the NBD attachments of a {what}", allow_abbrev=False)
        listing.add_argument("volume_id", metavar="VOLUME_ID")
        listing.add_argument("--lifecycle-state", choices=("ATTACHED", "DETACHED"))
        listing.set_defaults(handler=cmd_list, attach_kind=noun)


def write_psk_file(path: str, identity: str, psk_hex: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{identity}:{psk_hex}\n")
    os.chmod(path, 0o600)


def cmd_attach(args: argparse.Namespace, ctx: CliContext) -> int:
    if args.psk_file and not args.tls:
        raise InvalidArgument(field="--psk-file", reason="only with --tls")
    client = ctx.client
    url = client.bv_url(f"{_KINDS[args.attach_kind]}/{args.volume_id}/actions/attach")
    body = compact(
        [
            ("transport", "tls-psk" if args.tls else "plain"),
            ("isReadOnly", True if args.read_only else None),
            ("displayName", args.display_name),
        ]
    )
    resp = client.request("POST", url, body=body, retry_token=True)
    data = dict(resp.data)
    if args.psk_file and data.get("psk"):
        write_psk_file(args.psk_file, str(data["pskIdentity"]), str(data["psk"]))
        data["pskFile"] = os.path.abspath(args.psk_file)
        if data.get("uri"):
            data["uri"] = f"{data['uri']}?tls-psk-file={data['pskFile']}"
    ctx.out.emit(data)
    return 0


def cmd_detach(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    url = client.bv_url(f"{_KINDS[args.attach_kind]}/{args.volume_id}/actions/detach")
    resp = client.request("POST", url, body=compact([("attachmentId", args.attachment_id)]))
    ctx.out.emit(resp.data)
    return 0


def cmd_list(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    url = client.bv_url(f"{_KINDS[args.attach_kind]}/{args.volume_id}/attachments")
    params = [("lifecycleState", args.lifecycle_state)] if args.lifecycle_state else []
    resp = client.get(url, params=params)
    ctx.out.emit(resp.data)
    return 0
