"""``blockvault volume|boot-volume attach|detach|attachments``: NBD attachments (blockvault extension).

attach VOLUME_ID [--tls --cert-dir DIR] [--read-only] [--display-name NAME]
    POST .../volumes/{id}/actions/attach; prints the attachment with its NBD URI. With --tls the CLI makes a
    P-256 key and a certificate signing request, the server signs a client certificate for this attachment, and
    DIR receives ca-cert.pem, client-cert.pem and client-key.pem (0600; the key never leaves this machine): the
    layout of qemu's `--object tls-creds-x509,id=tls0,dir=DIR,endpoint=client` and libnbd's
    `nbds://...?tls-certificates=DIR`. The printed URI carries `?tls-certificates=DIR`.
detach VOLUME_ID [--attachment-id ID]      POST .../actions/detach (every active attachment if no id)
attachments VOLUME_ID [--lifecycle-state]   GET .../attachments
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
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
        attach.add_argument(
            "--tls", action="store_true", help="NBD over TLS with a client certificate issued for this attachment"
        )
        attach.add_argument("--read-only", action="store_true", help="the export refuses writes")
        attach.add_argument("--display-name", help="a name for the attachment")
        attach.add_argument(
            "--cert-dir",
            help="with --tls (required): write ca-cert.pem, client-cert.pem, client-key.pem here (mode 0600)",
        )
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


def write_private(path: Path, data: bytes) -> None:
    """Write `path` with mode 0600 from its first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def client_key_and_request() -> tuple[bytes, str]:
    """A fresh P-256 private key (PKCS#8 PEM) and a certificate signing request for it (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "blockvault NBD client")]))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def cmd_attach(args: argparse.Namespace, ctx: CliContext) -> int:
    if args.cert_dir and not args.tls:
        raise InvalidArgument(field="--cert-dir", reason="only with --tls")
    if args.tls and not args.cert_dir:
        raise InvalidArgument(field="--cert-dir", reason="--tls needs a directory for the client certificate and key")
    key_pem: bytes | None = None
    csr: str | None = None
    cert_dir: Path | None = None
    if args.tls:
        cert_dir = Path(args.cert_dir).expanduser().resolve()
        cert_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_pem, csr = client_key_and_request()
    client = ctx.client
    url = client.bv_url(f"{_KINDS[args.attach_kind]}/{args.volume_id}/actions/attach")
    body = compact(
        [
            ("transport", "tls" if args.tls else "plain"),
            ("isReadOnly", True if args.read_only else None),
            ("displayName", args.display_name),
            ("certificateSigningRequest", csr),
        ]
    )
    resp = client.request("POST", url, body=body, retry_token=True)
    data = dict(resp.data)
    if cert_dir is not None and key_pem is not None:
        write_private(cert_dir / "client-key.pem", key_pem)
        write_private(cert_dir / "client-cert.pem", str(data.pop("clientCertificate")).encode())
        write_private(cert_dir / "ca-cert.pem", str(data.pop("caCertificate")).encode())
        data["certDir"] = str(cert_dir)
        if data.get("uri"):
            data["uri"] = f"{data['uri']}?tls-certificates={cert_dir}"
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
