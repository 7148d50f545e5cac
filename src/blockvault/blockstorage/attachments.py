"""Volume attachments: NBD exports of a volume, each with its own unguessable export name and credential.

An attachment is blockvault's VolumeAttachment: `attach` creates one (state ATTACHED at once), `detach` ends it
(DETACHED; rows are kept as history). A volume with an ATTACHED attachment cannot be deleted (409 Conflict).

Data sessions (`DataSession`) are what the NBD face uses per connection. Concurrency contract: a session is used
by one connection thread at a time; every request re-validates the attachment, the volume and its key only when
the service's generation counter moved (a key state change, a key change of a volume, a detach), so the common
path costs two integer reads and the lease counter, not a database round trip. The service bumps the generation
*before* it marks leases stale, so a request that starts after a key state change has returned always re-checks.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from blockvault import ids
from blockvault.blockstorage.model import FAULTY
from blockvault.db import tables
from blockvault.errors import BlockvaultError, Conflict, InvalidArgument, KeyUnusable, NotFound
from blockvault.store.volume import UNIT_SIZE, VolumeStore
from blockvault.vault.lifecycle import DELETED
from blockvault.vault.model import WrappedDek

if TYPE_CHECKING:
    from blockvault.blockstorage.model import Volume
    from blockvault.blockstorage.service import BlockStorageService

log = logging.getLogger("blockvault.attachments")

ATTACHED, DETACHED = "ATTACHED", "DETACHED"
# plain: loopback only (nbd.md T1); tls: x509 client certificate issued per attachment (T2); tls-psk: TLS with a
# pre-shared key, refused (501) until the server runs on a Python whose ssl has PSK (3.13).
PLAIN, TLS, TLS_PSK = "plain", "tls", "tls-psk"
TRANSPORTS = (PLAIN, TLS, TLS_PSK)
PSK_SIZE = 32  # 256-bit pre-shared key (GnuTLS accepts up to 64 bytes; qemu's psk file holds it in hex)
EXPORT_NAME_BYTES = 20  # 160 random bits: the export name alone is unguessable (a capability)


@dataclass
class Attachment:
    """One attachment row. `credential` is, by transport: nothing (plain), the SHA-256 fingerprint of the client
    certificate issued for it (tls; never the key, which the server never sees), the wrapped PSK (tls-psk)."""

    id: str
    volume_id: str
    kind: str
    compartment_id: str
    display_name: str
    state: str
    export_name: str
    transport: str
    psk_identity: str | None
    credential: bytes | None
    key_version_id: str | None
    is_read_only: bool
    time_created: datetime

    def psk_context(self) -> dict[str, str]:
        return {"resource": self.id, "purpose": "nbd-psk"}


@dataclass(frozen=True)
class IssuedCertificate:
    """A client certificate issued for a tls attachment (public material only)."""

    certificate_pem: str
    ca_pem: str
    fingerprint: bytes  # SHA-256 of the certificate's DER: what the attachment row keeps
    serial: int


# issuer(attachment id, export name, PEM certificate signing request) -> the signed client certificate.
CertificateIssuer = Callable[[str, str, str], IssuedCertificate]


@dataclass(frozen=True)
class NewAttachment:
    """What attach returns: the attachment and, once only, the plaintext PSK (tls-psk) or the issued client
    certificate (tls); both None for plain transport."""

    attachment: Attachment
    psk: bytes | None
    certificate: IssuedCertificate | None = None


class AttachmentService:
    """Attach/detach/list, and data sessions for the NBD face. Owned by a BlockStorageService."""

    def __init__(self, service: BlockStorageService, *, random: Callable[[int], bytes]) -> None:
        from blockvault.db.repos import TableRepo

        self._svc = service
        self._random = random
        self.repo = TableRepo(service._engine, tables.attachments, Attachment)
        self._listeners: list[Callable[[str], None]] = []
        self._lock = threading.Lock()
        # Set by the NBD face when it can terminate TLS-PSK; until then tls-psk attachments are refused (501).
        self.tls_supported = False
        # Set by the NBD face (nbd/runtime.py) when it serves TLS; until then tls attachments are refused (501).
        self.certificate_issuer: CertificateIssuer | None = None

    def subscribe_detach(self, listener: Callable[[str], None]) -> None:
        """`listener(export_name)` is called after an attachment is detached (the NBD face closes connections)."""
        with self._lock:
            self._listeners.append(listener)

    def attach(self, kind: str, volume_id: str, details: dict[str, Any]) -> NewAttachment:
        svc = self._svc
        volume = svc.get_volume(kind, volume_id)
        if volume.state == FAULTY and volume.kms_key_id:
            raise KeyUnusable(key_id=volume.kms_key_id, state=DELETED)
        svc._require_available(volume)
        svc.vault.require_usable(volume.kms_key_id)  # D1: no attachment under a key that cannot serve data
        transport = details.get("transport") or "plain"
        if transport not in TRANSPORTS:
            raise InvalidArgument(field="transport", reason=f"must be one of {', '.join(TRANSPORTS)}")
        if transport == TLS_PSK and not self.tls_supported:
            from blockvault.blockstorage.service import NotImplementedYet

            # CPython 3.11's ssl has no TLS-PSK (3.13 adds it): docs/design/nbd.md T2; use transport "tls".
            raise NotImplementedYet(feature="NBD over TLS with a pre-shared key (transport tls-psk)")
        issuer = self.certificate_issuer
        csr = details.get("certificateSigningRequest")
        if transport == TLS:
            if issuer is None:
                from blockvault.blockstorage.service import NotImplementedYet

                raise NotImplementedYet(feature="NBD over TLS on a server without an NBD listener")
            if not isinstance(csr, str) or not csr.strip():
                raise InvalidArgument(
                    field="certificateSigningRequest",
                    reason="transport tls needs a PEM certificate signing request for the client's key",
                )
        elif csr is not None:
            raise InvalidArgument(field="certificateSigningRequest", reason="only with transport tls")
        read_only = details.get("isReadOnly", False)
        if not isinstance(read_only, bool):
            raise InvalidArgument(field="isReadOnly", reason="must be a boolean")
        name = details.get("displayName") or ""
        if not isinstance(name, str) or len(name) > 255:
            raise InvalidArgument(field="displayName", reason="must be a string of at most 255 characters")
        attachment_id = ids.new("volumeattachment", svc.region.key, random=self._random)
        export_name = base64.b32encode(self._random(EXPORT_NAME_BYTES)).decode().lower()
        psk: bytes | None = None
        wrapped: WrappedDek | None = None
        identity: str | None = None
        attachment = Attachment(
            id=attachment_id,
            volume_id=volume.id,
            kind=kind,
            compartment_id=volume.compartment_id,
            display_name=name or f"attachment-{export_name[:8]}",
            state=ATTACHED,
            export_name=export_name,
            transport=transport,
            psk_identity=None,
            credential=None,
            key_version_id=None,
            is_read_only=read_only,
            time_created=svc._clock.now(),
        )
        certificate: IssuedCertificate | None = None
        if transport == TLS:
            assert issuer is not None
            assert isinstance(csr, str)
            certificate = issuer(attachment_id, export_name, csr)
            attachment.credential = certificate.fingerprint
        if transport == TLS_PSK:
            psk = self._random(PSK_SIZE)
            identity = f"bv-{export_name[:16]}"
            wrapped = svc.vault.wrap(volume.kms_key_id, psk, attachment.psk_context())
            attachment.psk_identity = identity
            attachment.credential = wrapped.blob
            attachment.key_version_id = wrapped.key_version_id
        self.repo.insert(attachment)
        return NewAttachment(attachment, psk, certificate)

    def list_for(self, kind: str, volume_id: str, *, state: str | None = None) -> list[Attachment]:
        self._svc.get_volume(kind, volume_id)
        cond = [tables.attachments.c.volume_id == volume_id]
        if state:
            cond.append(tables.attachments.c.state == state)
        return self.repo.find(*cond, order_by=[tables.attachments.c.time_created, tables.attachments.c.id])

    def attached_counts(self) -> dict[str, int]:
        """Volume id -> number of ATTACHED attachments (for showing attachment state on volumes)."""
        counts: dict[str, int] = {}
        for attachment in self.repo.find(tables.attachments.c.state == ATTACHED):
            counts[attachment.volume_id] = counts.get(attachment.volume_id, 0) + 1
        return counts

    def active(self, volume_id: str) -> list[Attachment]:
        return self.repo.find(tables.attachments.c.volume_id == volume_id, tables.attachments.c.state == ATTACHED)

    def detach(self, kind: str, volume_id: str, attachment_id: str | None = None) -> list[Attachment]:
        """Detach one attachment (or every active one of the volume); returns what was detached."""
        self._svc.get_volume(kind, volume_id)
        if attachment_id is not None:
            found = self.repo.get(attachment_id)
            if found is None or found.volume_id != volume_id:
                raise NotFound(kind="volume attachment", ident=attachment_id)
            if found.state != ATTACHED:
                raise Conflict(kind="volume attachment", ident=attachment_id, reason=f"it is already {found.state}")
            targets = [found]
        else:
            targets = self.active(volume_id)
        done: list[Attachment] = []
        for attachment in targets:
            updated = replace(attachment, state=DETACHED)
            self.repo.save(updated, expect={"state": ATTACHED})
            done.append(updated)
        if done:
            self._svc.bump_generation()
            with self._lock:
                listeners = list(self._listeners)
            for attachment in done:
                for listener in listeners:
                    listener(attachment.export_name)
        return done

    def open_attached(self, stop: threading.Event | None = None) -> int:
        """Open the store of every volume with an ATTACHED attachment (nbd.md K5; the server calls this in the
        background when it starts): a client that reconnects after a restart then finds its volume open, instead
        of its first request waiting for the open (the allocator is rebuilt from the map: about a second per few
        million units). A volume that cannot be opened now (its key disabled, say) is skipped: its first request
        opens it, or fails, exactly as without this. Returns how many stores were opened."""
        opened = 0
        seen: set[str] = set()
        for attachment in self.repo.find(tables.attachments.c.state == ATTACHED):
            if stop is not None and stop.is_set():
                break  # the server is stopping
            if attachment.volume_id in seen:
                continue
            seen.add(attachment.volume_id)
            try:
                with DataSession(self._svc, attachment).store():
                    opened += 1
            except BlockvaultError as exc:
                log.info("attached volume %s not opened at start: %s", attachment.volume_id, exc)
        return opened

    def find_export(self, export_name: str) -> Attachment | None:
        rows = self.repo.find(tables.attachments.c.export_name == export_name)
        return rows[0] if rows and rows[0].state == ATTACHED else None

    def certificate_known(self, fingerprint: bytes) -> bool:
        """Whether a client certificate with this fingerprint belongs to an ATTACHED tls attachment (detach revokes)."""
        rows = self.repo.find(
            tables.attachments.c.credential == fingerprint,
            tables.attachments.c.transport == TLS,
            tables.attachments.c.state == ATTACHED,
        )
        return bool(rows)

    def psk(self, attachment: Attachment) -> bytes:
        """The plaintext PSK of a tls-psk attachment (needs the volume's key to be usable, D1)."""
        if attachment.credential is None or attachment.key_version_id is None:
            raise InvalidArgument(field="transport", reason="this attachment has no pre-shared key")
        volume = self._svc.get_volume(attachment.kind, attachment.volume_id)
        wrapped = WrappedDek(volume.kms_key_id, attachment.key_version_id, attachment.credential)
        return self._svc.vault.unwrap(wrapped, attachment.psk_context())

    def session(self, export_name: str) -> DataSession:
        attachment = self.find_export(export_name)
        if attachment is None:
            raise NotFound(kind="export", ident="(hidden)")
        session = DataSession(self._svc, attachment)
        session.check()
        return session


class DataSession:
    """Data access for one NBD connection to one attachment. See the module docstring for the concurrency rules.

    Errors are domain errors (KeyUnusable, IntegrityError, InvalidArgument, NotFound for a detached export); the
    NBD face maps them to errno through one table (nbd/export.py).
    """

    def __init__(self, service: BlockStorageService, attachment: Attachment) -> None:
        self._svc = service
        self.attachment = attachment
        self._generation = -1
        self._volume: Volume | None = None

    @property
    def size(self) -> int:
        return self.volume.size_bytes

    @property
    def volume(self) -> Volume:
        if self._volume is None:
            self.check()
        assert self._volume is not None
        return self._volume

    @property
    def read_only(self) -> bool:
        return self.attachment.is_read_only

    def check(self) -> None:
        """Re-validate attachment, volume state and key state if anything relevant changed since the last check.

        A hydrating clone's row is re-read on every request: when hydration ends, the row loses its clone snapshot
        (and the snapshot is deleted) without a generation bump, and opening the store from the stale row would
        look for the deleted snapshot."""
        generation = self._svc.generation
        if generation == self._generation and self._volume is not None and self._volume.clone_snapshot is None:
            return
        current = self._svc.attachments.repo.get(self.attachment.id)
        if current is None or current.state != ATTACHED:
            raise NotFound(kind="export", ident="(detached)")
        volume = self._svc._data_volume(self.attachment.kind, self.attachment.volume_id)
        self._svc.vault.require_usable(volume.kms_key_id)
        self._volume, self._generation = volume, generation

    @contextmanager
    def store(self) -> Iterator[VolumeStore]:
        """The volume's open store for one request (shared with every other user of the volume: multi-conn)."""
        self.check()
        with ExitStack() as stack:
            volume = self.volume
            try:
                store = stack.enter_context(self._svc.lease(volume))
            except NotFound:
                if volume.clone_snapshot is None:
                    raise
                # Hydration finished between our read of the row and the open: its snapshot is gone. Re-read once.
                self._volume = None
                self.check()
                store = stack.enter_context(self._svc.lease(self.volume))
            yield store

    def read(self, offset: int, length: int) -> bytes:
        with self.store() as store:
            return store.read(offset, length)

    def read_into(self, offset: int, out: memoryview) -> None:
        """read() into caller-owned memory (the NBD connection's reply buffer); on an error `out` is garbage."""
        with self.store() as store:
            store.read_into(offset, out)

    def write(self, offset: int, data: bytes | memoryview, *, fua: bool) -> None:
        with self.store() as store:
            store.write(offset, data, fua=fua)

    def flush(self) -> None:
        with self.store() as store:
            store.flush()

    def zero(self, offset: int, length: int, *, fua: bool, fast: bool) -> bool:
        """Make [offset, offset + length) read as zeros. Units that already read as zeros are skipped.

        Returns False (and changes nothing) if `fast` and zeroing would need writes (NBD fast zero: the client
        then falls back to writing zeros itself)."""
        with self.store() as store:
            end = offset + length
            writes: list[tuple[int, int]] = []
            if end > offset:
                # A unit the volume does not hold reads as zeros unless a clone source still supplies it (R2).
                if self._svc.has_clone_source(self.volume.id):
                    runs = [(length, True)]
                else:
                    first, last = offset // UNIT_SIZE, (end - 1) // UNIT_SIZE
                    runs = _byte_runs(store.held_runs(first, last - first + 1), offset, end)
                pos = offset
                for size, held in runs:
                    if held:
                        writes.append((pos, pos + size))
                    pos += size
            if writes and fast:
                return False
            for start, stop in writes:
                for chunk in range(start, stop, 16 * UNIT_SIZE * 4):
                    n = min(stop, chunk + 16 * UNIT_SIZE * 4) - chunk
                    store.write(chunk, bytes(n))
            if fua:
                store.flush()
            return True

    def allocation(self, offset: int, length: int, *, max_units: int = 1 << 16) -> list[tuple[int, bool]]:
        """(length, is_hole) runs from `offset`, covering at most `max_units` units (a client asks again)."""
        end = min(offset + length, (offset // UNIT_SIZE + max_units) * UNIT_SIZE)
        if end <= offset:
            return []
        first, last = offset // UNIT_SIZE, (end - 1) // UNIT_SIZE
        with self.store() as store:
            if self._svc.has_clone_source(self.volume.id):
                return [(end - offset, False)]  # every unit reads from the volume or its clone source (R2)
            units = store.held_runs(first, last - first + 1)
        return [(size, not held) for size, held in _byte_runs(units, offset, end)]


def _byte_runs(units: list[tuple[int, bool]], offset: int, end: int) -> list[tuple[int, bool]]:
    """(units, held) runs that start at unit offset // UNIT_SIZE, as (bytes, held) runs clipped to [offset, end)."""
    out: list[tuple[int, bool]] = []
    pos = offset // UNIT_SIZE * UNIT_SIZE
    for count, held in units:
        lo, hi = max(pos, offset), min(pos + count * UNIT_SIZE, end)
        if hi > lo:
            out.append((hi - lo, held))
        pos += count * UNIT_SIZE
    return out


__all__ = [
    "ATTACHED",
    "DETACHED",
    "Attachment",
    "AttachmentService",
    "CertificateIssuer",
    "DataSession",
    "IssuedCertificate",
    "NewAttachment",
]
