"""Start and stop the NBD server inside `blockvault serve` (the composition root calls `start(server)`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from blockvault.nbd.export import VolumeExport
from blockvault.nbd.server import NbdServer, Target

log = logging.getLogger("blockvault.nbd")


def resolver(regions: dict[str, Any]) -> Callable[[str], Target | None]:
    """Find an export name among the ATTACHED attachments of every region (names are random, so unique)."""

    def resolve(name: str) -> Target | None:
        for region in regions.values():
            attachments = region.blockstorage.attachments
            found = attachments.find_export(name)
            if found is not None:
                return Target(found.transport, _opener(attachments, name))
        return None

    return resolve


def _opener(attachments: Any, name: str) -> Callable[[], VolumeExport]:
    return lambda: VolumeExport(attachments.session(name))


def start(server: Any) -> Callable[[], None] | None:
    """Start serving NBD for `server` (a blockvault.server.Server); return a function that stops it, or None."""
    settings = server.settings
    if not settings.nbd_port:
        return None
    nbd = NbdServer(host=settings.nbd_host, port=settings.nbd_port, resolve=resolver(server.regions))
    nbd.start()
    for region in server.regions.values():
        region.blockstorage.attachments.subscribe_detach(nbd.close_export)
    host, port = nbd.address
    public = settings.public_host or host
    # The API face builds attachment URIs from this (api/attach.py); the services stay transport-free.
    server.app.state.nbd_endpoint = f"{public}:{port}"
    return nbd.stop
