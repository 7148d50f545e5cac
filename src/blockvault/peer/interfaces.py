"""The registered cross-region Protocols and the one place that connects them (server.py calls `PeerLinks`).

To carry a new Protocol between processes: define it with plain-data values (str, int, float, bool, None, bytes,
lists, tuples, dicts, datetimes, dataclasses of a module registered below), then add ONE `registry.register` line
naming how the serving process builds its in-process implementation for a region, and connect it in server.py with
`links.clients("<name>", regions)`. A new method on a registered Protocol needs nothing at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from blockvault.api.framework import Ctx
from blockvault.api.services import AppServices, RegionServices
from blockvault.blockstorage import model as blockstorage_model
from blockvault.blockstorage import regions as blockstorage_regions
from blockvault.blockstorage.groups import GroupBackupView, VolumeGroupBackup
from blockvault.blockstorage.model import Backup
from blockvault.blockstorage.regions import BackupExport, InProcessRegionClient, RegionClient
from blockvault.blockstorage.service import NotImplementedYet
from blockvault.config import RegionSettings, Settings
from blockvault.iam import model as iam_model
from blockvault.iam.model import Principal
from blockvault.peer.client import PeerTransport, PeerUnavailable, make_proxy
from blockvault.peer.identity import ServiceIdentity, attest, check_attestation
from blockvault.peer.registry import PeerRegistry
from blockvault.vault import replication as vault_replication
from blockvault.vault.replication import InProcessVaultPeer, VaultPeer

__all__ = [
    "AttestedTransferKey",
    "AuthenticatedVaultPeer",
    "BackupCopyTarget",
    "CopyCreated",
    "LocalBackupCopyTarget",
    "PeerLinks",
    "VaultPeerLink",
    "build_registry",
    "transfer_key_statement",
]


@dataclass(frozen=True, slots=True)
class CopyCreated:
    """The copy a destination region recorded (CREATING) and the id of its job."""

    backup: Backup
    job_id: str


class BackupCopyTarget(Protocol):
    """The destination half of CopyVolumeBackup when the destination region runs in another process: the key-use
    authorization (the key lives in the destination's Vault) and `create_copy` run there, for the caller's principal
    (the source process verified the caller's own signature and its source-side permissions)."""

    def create_backup_copy(
        self, principal: Principal, kind: str, source_region: str, source_backup_id: str, details: dict[str, Any]
    ) -> CopyCreated: ...

    def create_group_backup_copy(
        self, principal: Principal, source_region: str, source: GroupBackupView, details: dict[str, Any]
    ) -> GroupBackupView:
        """CopyVolumeGroupBackup's destination half: the key delegation of `kmsKeyId` for `principal` in this
        region's Vault, then `VolumeGroupService.create_group_backup_copy` of the source's group backup (read by the
        source process, which checked the caller's source-side permissions)."""

    def authorize_key_use(
        self, principal: Principal, operation: str, key_id: str, field: str, resolve: bool = False
    ) -> None:
        """D6 for a key of the destination region named in a request served by the source process (xrrKmsKeyId of
        a volume replica, xrcKmsKeyId of a policy assignment): the destination's `Ctx.authorize_key_use` for
        `principal`, so absent and forbidden give the same 400 RelatedResourceNotAuthorizedOrNotFound, with the
        same message, as in one process. `resolve`: then also the Vault's own checks of the key (ENABLED, AES)."""


class LocalBackupCopyTarget:
    def __init__(self, app: AppServices, region: RegionServices, request: Any) -> None:
        self._app, self._region, self._request = app, region, request

    def create_backup_copy(
        self, principal: Principal, kind: str, source_region: str, source_backup_id: str, details: dict[str, Any]
    ) -> CopyCreated:
        key_id = details.get("kmsKeyId")
        if key_id:
            op = "Volume" if kind == "volume" else "BootVolume"
            ctx = Ctx(self._request, b"", principal, self._app, self._region)
            ctx.authorize_key_use(f"Copy{op}", str(key_id))
        backup, job_id = self._region.blockstorage.create_copy(kind, source_region, source_backup_id, details)
        return CopyCreated(backup, job_id)

    def create_group_backup_copy(
        self, principal: Principal, source_region: str, source: GroupBackupView, details: dict[str, Any]
    ) -> GroupBackupView:
        groups = self._region.groups
        if groups is None:
            raise NotImplementedYet(feature=f"Volume groups in {self._region.region.name}")
        key_id = details.get("kmsKeyId")
        if key_id:
            ctx = Ctx(self._request, b"", principal, self._app, self._region)
            ctx.authorize_key_use("CopyVolumeGroupBackup", str(key_id))
        return groups.create_group_backup_copy(source_region, source, details)

    def authorize_key_use(
        self, principal: Principal, operation: str, key_id: str, field: str, resolve: bool = False
    ) -> None:
        ctx = Ctx(self._request, b"", principal, self._app, self._region)
        ctx.authorize_key_use(operation, key_id, field=field)
        if resolve:
            self._region.vault.resolve_key(key_id, field=field)


@dataclass(frozen=True, slots=True)
class AttestedTransferKey:
    """A region's vault transfer public key, signed with the service identity's private key (identity.attest)."""

    region: str
    pem: bytes
    signature: bytes


class VaultPeerLink(VaultPeer, Protocol):
    """`VaultPeer` as it crosses processes: the transfer key comes with a signature by the service identity, so the
    source wraps key material only for a keystore of this deployment's region (regions.md, "Threat model")."""

    def attested_transfer_public_key(self) -> AttestedTransferKey:
        """The transfer public key, signed for this region."""


class LocalVaultPeerLink(InProcessVaultPeer):
    """The serving half: the region's VaultService, plus the attestation (only this deployment has the key)."""

    def __init__(self, region: RegionServices, identity: ServiceIdentity | None) -> None:
        super().__init__(region.vault)
        self._region_name, self._identity = region.region.name, identity

    def attested_transfer_public_key(self) -> AttestedTransferKey:
        if self._identity is None:
            raise PeerUnavailable(region=self._region_name, url="(in process)", reason="no service identity")
        pem = self.transfer_public_key()
        return AttestedTransferKey(
            self._region_name, pem, attest(self._identity, transfer_key_statement(self._region_name, pem))
        )


def transfer_key_statement(region: str, pem: bytes) -> bytes:
    """What an attestation signs: a purpose tag, the region, the PEM (so it vouches for this key of this region)."""
    return b"blockvault.peer.vault-transfer-key.v1\0" + region.encode() + b"\0" + pem


class AuthenticatedVaultPeer:
    """The calling half: a `VaultPeer` whose `transfer_public_key` is the peer's attested key, checked against the
    service identity and the region this proxy was configured for; anything else is `PeerUnavailable` and no
    material is wrapped. The other calls go to the proxy unchanged (they carry only wrapped material)."""

    def __init__(self, proxy: Any, region: str, identity: ServiceIdentity, url: str = "(peer)") -> None:
        self._proxy, self._region, self._identity, self._url = proxy, region, identity, url

    def transfer_public_key(self) -> bytes:
        attested = self._proxy.attested_transfer_public_key()
        if not (
            isinstance(attested, AttestedTransferKey)
            and attested.region == self._region
            and check_attestation(
                self._identity, transfer_key_statement(self._region, attested.pem), attested.signature
            )
        ):
            raise PeerUnavailable(
                region=self._region, url=self._url, reason="its vault transfer key is not signed by this deployment"
            )
        return attested.pem

    def ensure_replica_vault(self, spec: vault_replication.ReplicaVaultSpec) -> vault_replication.ReplicaVaultInfo:
        result: vault_replication.ReplicaVaultInfo = self._proxy.ensure_replica_vault(spec)
        return result

    def sync_key(self, source_vault_id: str, key: vault_replication.KeySnapshot) -> None:
        self._proxy.sync_key(source_vault_id, key)

    def delete_replica_vault(self, source_vault_id: str, replication_id: str) -> None:
        self._proxy.delete_replica_vault(source_vault_id, replication_id)


def _region_client(app: AppServices | None, region: RegionServices, request: Any) -> RegionClient:
    return InProcessRegionClient(region.blockstorage, region.groups)


def _copy_target(app: AppServices | None, region: RegionServices, request: Any) -> BackupCopyTarget:
    assert app is not None, "the copy target is served through the internal routes only"
    return LocalBackupCopyTarget(app, region, request)


def _vault_peer(app: AppServices | None, region: RegionServices, request: Any) -> VaultPeerLink:
    peer = getattr(request.app.state, "peer", None) if request is not None else None
    return LocalVaultPeerLink(region, peer.identity if peer is not None else None)


def build_registry() -> PeerRegistry:
    registry = PeerRegistry()
    registry.register_types(
        blockstorage_regions,
        blockstorage_model,
        iam_model,
        vault_replication,
        classes=[CopyCreated, AttestedTransferKey, GroupBackupView, VolumeGroupBackup],
    )
    # The replica sync's calls to its source (run by the destination's job) are safe to repeat: begin takes a fresh
    # snapshot (dropping an earlier attempt's), reads read that immutable snapshot, end only deletes snapshots. So a
    # source restarted mid-sync costs a retry, not a failed job. The group sync's begin is the same (it drops an
    # earlier attempt's snapshots first). The backup policy's copy calls converge too: a create adopts the copy an
    # earlier attempt made (same source, same displayName), dating a copy sets the same expiration again.
    registry.register(
        "region",
        RegionClient,
        local=_region_client,
        repeatable={
            "begin_replica_sync",
            "read_replica_units",
            "end_replica_sync",
            "begin_group_replica_sync",
            "get_group_backup",
            "create_scheduled_copy",
            "create_scheduled_group_copy",
            "date_scheduled_copy",
            "compartment_in_use",
        },
    )
    registry.register("backup-export", BackupExport)  # returned by RegionClient.open_export: a handle
    registry.register("backup-copy-target", BackupCopyTarget, local=_copy_target)
    registry.register("vault", VaultPeerLink, local=_vault_peer)  # vault replication (vault/replication.py)
    return registry


def _props(rs: RegionSettings) -> dict[str, Any]:
    # The properties a top-level peer answers without a call, by the names Protocols use for them.
    return {"region": rs.name, "region_key": rs.key, "name": rs.name, "key": rs.key}


class PeerLinks:
    """The regions this process does NOT serve, reached over HTTP: one transport per peer region, proxies by
    interface. `clients(name, local_regions)` gives every region's implementation of one interface: in-process for
    the regions served here, HTTP for the others; that is the only thing the domain sees."""

    def __init__(self, registry: PeerRegistry, settings: Settings, identity: ServiceIdentity | None) -> None:
        self.registry = registry
        self._settings = {rs.name: rs for rs in settings.regions}
        self._identity = identity
        self.transports: dict[str, PeerTransport] = {}
        if identity is not None:
            for name, url in settings.peers:
                self.transports[name] = PeerTransport(registry, url, name, identity)

    def remote(self, interface: str) -> dict[str, Any]:
        return {
            name: make_proxy(transport, interface, _props(self._settings[name]))
            for name, transport in self.transports.items()
        }

    def clients(self, interface: str, local_regions: Mapping[str, RegionServices]) -> dict[str, Any]:
        iface = self.registry.get(interface)
        if iface is None or iface.local is None:
            raise ValueError(f"no top-level peer interface {interface!r}")
        out = {name: iface.local(None, region, None) for name, region in local_regions.items()}
        out.update(self.remote(interface))
        return out

    def vault_peers(self, local_regions: Mapping[str, RegionServices]) -> dict[str, VaultPeer]:
        """Every region's `VaultPeer`: in process for the regions served here; for a peer's, the HTTP proxy whose
        transfer key must carry the service identity's signature (AuthenticatedVaultPeer)."""
        out: dict[str, VaultPeer] = {name: InProcessVaultPeer(region.vault) for name, region in local_regions.items()}
        if self._identity is not None:
            for name, proxy in self.remote("vault").items():
                out[name] = AuthenticatedVaultPeer(proxy, name, self._identity, self.transports[name].base_url)
        return out
