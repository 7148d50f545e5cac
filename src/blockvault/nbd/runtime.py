"""Start and stop the NBD server inside `blockvault serve` (the composition root calls `start(server)`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from blockvault.nbd.export import VolumeExport
from blockvault.nbd.server import NbdServer, Target
from blockvault.nbd.tls import TlsAuthority

log = logging.getLogger("blockvault.nbd")


def resolver(regions: dict[str, Any]) -> Callable[[str], Target | None]:
    """Find an export name among the ATTACHED attachments of every region (names are random, so unique)."""

    def resolve(name: str) -> Target | None:
        for region in regions.values():
            attachments = region.blockstorage.attachments
            found = attachments.find_export(name)
            if found is not None:
                fingerprint = found.credential if found.transport == "tls" else None
                generation = _generation_of(region.blockstorage)
                return Target(found.transport, _opener(attachments, name, generation), fingerprint)
        return None

    return resolve


def certificate_check(regions: dict[str, Any]) -> Callable[[bytes], bool]:
    """Whether a client certificate (by SHA-256 fingerprint) belongs to an ATTACHED tls attachment of any region."""

    def known(fingerprint: bytes) -> bool:
        return any(region.blockstorage.attachments.certificate_known(fingerprint) for region in regions.values())

    return known


def _opener(attachments: Any, name: str, generation: Callable[[], int]) -> Callable[[], VolumeExport]:
    return lambda: VolumeExport(attachments.session(name), generation)


def _generation_of(blockstorage: Any) -> Callable[[], int]:
    """The service's generation counter (bumped by key state changes and detaches): VolumeExport batches hold a
    lease only while it stays put (nbd.md K1)."""
    return lambda: int(blockstorage.generation)


def start(server: Any) -> Callable[[], None] | None:
    """Start serving NBD for `server` (a blockvault.server.Server); return a function that stops it, or None."""
    settings = server.settings
    if not settings.nbd_port:
        return None
    # TLS material lives in <data_dir>/nbd-tls (0700/0600), apart from the metadata (nbd.md T2).
    authority = TlsAuthority.open(settings.data_dir, host_names=[settings.nbd_host, settings.public_host or ""])
    nbd = NbdServer(
        host=settings.nbd_host,
        port=settings.nbd_port,
        resolve=resolver(server.regions),
        tls=authority.server_context(),
        accept_certificate=certificate_check(server.regions),
    )
    nbd.start()
    for region in server.regions.values():
        attachments = region.blockstorage.attachments
        attachments.subscribe_detach(nbd.close_export)
        attachments.certificate_issuer = authority.issue
    host, port = nbd.address
    public = settings.public_host or host
    # The API face builds attachment URIs from this (api/attach.py); the services stay transport-free.
    server.app.state.nbd_endpoint = f"{public}:{port}"
    return nbd.stop
