"""Assemble blockvault from settings: databases, keystores, regions, services, job runners, the ASGI app.

This is the composition root; it does I/O (files, keys) so that nothing below it has to read configuration.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette

from blockvault.api.app import create_app
from blockvault.api.services import AppServices, RegionServices, RemoteRegion
from blockvault.backup.objectstore.local import LocalObjectStore
from blockvault.blockstorage.groups import VolumeGroupService
from blockvault.blockstorage.jobs import JobRunner
from blockvault.blockstorage.scheduler import BackupPolicyService, Scheduler
from blockvault.blockstorage.service import BlockStorageService, Region
from blockvault.clock import OffsetClock, SystemClock
from blockvault.config import Settings
from blockvault.db.engine import make_engine, sqlite_url, upgrade
from blockvault.iam import signing
from blockvault.iam.authz import Authorizer
from blockvault.iam.service import IdentityService
from blockvault.nbd import runtime as nbd_runtime
from blockvault.peer import identity as service_identity
from blockvault.peer.interfaces import PeerLinks, build_registry
from blockvault.peer.routes import HandleTable, PeerServer
from blockvault.peer.shared import RegionLock, SharedDirectorySource, SharedOffsetClock, bootstrap_lock
from blockvault.vault.keystore.software import SoftwareKeystore, load_or_create_root_key
from blockvault.vault.service import VaultService

log = logging.getLogger("blockvault")

ADMIN_NAME = "admin"


@dataclass
class Bootstrap:
    tenancy_id: str
    admin_user_id: str
    config_file: Path
    key_file: Path


class Server:
    """Everything `blockvault serve` runs in one process, for every configured region."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(settings.data_dir, 0o700)
        # Several processes may share the data dir, each serving some regions (docs/design/regions.md): the admin
        # clock offset is then kept in the data dir, and first-start work runs under a file lock.
        self.domain_clock = SharedOffsetClock(settings.data_dir / "clock-offset") if settings.peers else OffsetClock()
        self.identity_engine = make_engine(sqlite_url(settings.data_dir / "identity.db"))
        with bootstrap_lock(settings.data_dir):
            upgrade(self.identity_engine, "identity")
            self.identity = IdentityService(engine=self.identity_engine, clock=self.domain_clock)
            self.bootstrap = self._bootstrap()
            self.service_identity = service_identity.load_or_create(
                settings.data_dir / "service", self.bootstrap.tenancy_id
            )
        self.regions: dict[str, RegionServices] = {}
        self._keystores: list[SoftwareKeystore] = []
        self._region_locks: list[RegionLock] = []
        for rs in settings.served:
            root = settings.data_dir / "regions" / rs.name
            root.mkdir(parents=True, exist_ok=True)
            self._region_locks.append(RegionLock(root, rs.name))
            engine = make_engine(sqlite_url(root / "meta.db"))
            upgrade(engine, "region")
            kdir = settings.keystore_dir / rs.name
            keystore = SoftwareKeystore(
                kdir / "keys.db", load_or_create_root_key(kdir / "root.key", settings.root_key_b64)
            )
            self._keystores.append(keystore)
            vault = VaultService(
                engine=engine,
                keystore=keystore,
                clock=self.domain_clock,
                region=rs.name,
                region_key=rs.key,
                endpoint=settings.region_url(rs.name),
            )
            runner = JobRunner(engine, region_key=rs.key, clock=self.domain_clock)
            region = Region(rs.name, rs.key, rs.availability_domains, root)
            blockstorage = BlockStorageService(
                engine=engine,
                vault=vault,
                objects=LocalObjectStore(root / "objects"),
                region=region,
                clock=self.domain_clock,
                runner=runner,
                compartment_exists=self.identity.compartment_exists,
                replication_interval=settings.replication_interval,
            )
            self.regions[rs.name] = RegionServices(region, engine, vault, blockstorage, runner, self.domain_clock)
            self.regions[rs.name].groups = VolumeGroupService(
                blockstorage=blockstorage, engine=engine, clock=self.domain_clock
            )
        # Cross-region features reach the other regions through their Protocols: in-process for the regions served
        # here, over HTTP signed by the service identity for the regions of peer processes (peer/interfaces.py).
        self.peer_registry = build_registry()
        self.peers = PeerLinks(self.peer_registry, settings, self.service_identity)
        for services in self.regions.values():
            services.blockstorage.connect_regions(self.peers.clients("region", self.regions))
        # Vault replication (vault/replication.py): each region's Vault reaches the others through a VaultPeer, in
        # process or over HTTP with the peer's transfer key attested by the service identity (peer/interfaces.py).
        for services in self.regions.values():
            services.vault.connect_peers(self.peers.vault_peers(self.regions))
        self._directory = (
            SharedDirectorySource(self.identity, settings.data_dir / "identity.db") if settings.peers else None
        )
        self.services = AppServices(
            identity=self.identity,
            authz=Authorizer(self._directory or self.identity),
            regions=self.regions,
            default_region=settings.served[0].name,
            wall_clock=SystemClock(),
            domain_clock=self.domain_clock,
            allow_clock_control=settings.allow_clock_control,
            admin_user_ids=frozenset({self.bootstrap.admin_user_id}),
        )
        self.services.remote_regions = {
            name: RemoteRegion(name, settings.region_url(name), target)
            for name, target in self.peers.remote("backup-copy-target").items()
        }
        self.app: Starlette = create_app(self.services)
        self.app.state.peer = PeerServer(self.peer_registry, self.service_identity, HandleTable())
        self._stop = threading.Event()
        self._stop_nbd: Callable[[], None] | None = None
        self._reaper = threading.Thread(target=self._reap, name="key-reaper", daemon=True)

    def _bootstrap(self) -> Bootstrap:
        """First start: tenancy, admin user, API key, and a ready oci config file (0600)."""
        oci_dir = self.settings.data_dir / "oci"
        key_file = oci_dir / "oci_api_key.pem"
        config_file = oci_dir / "config"
        tenancy = self.identity.tenancy()
        if tenancy is None:
            oci_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem + b"OCI_API_KEY\n")
            public = private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            (oci_dir / "oci_api_key_public.pem").write_bytes(public)
            tenancy, admin, _fp = self.identity.bootstrap(
                name="blockvault",
                home_region=self.settings.regions[0].name,
                admin_name=ADMIN_NAME,
                admin_public_pem=public,
            )
            admin_id = admin.id
        else:
            users = self.identity.users.find()
            admin_id = next(u.id for u in users if u.name == ADMIN_NAME)
            self.identity.ensure_administrators(admin_id)  # data dirs made before IAM enforcement
        public = (oci_dir / "oci_api_key_public.pem").read_bytes()
        lines = [
            "[DEFAULT]",
            f"user={admin_id}",
            f"fingerprint={signing.fingerprint(public)}",
            f"tenancy={tenancy.id}",
            f"region={self.settings.regions[0].name}",
            f"key_file={key_file}",
            "",
        ]
        fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines))
        return Bootstrap(tenancy.id, admin_id, config_file, key_file)

    def discovery(self) -> dict[str, object]:
        return {
            # Every process of a deployment writes the same file: each region's endpoint, its own or a peer's.
            "defaultRegion": self.settings.reachable[0].name,
            "regions": {
                rs.name: {
                    "endpoint": self.settings.region_url(rs.name),
                    "key": rs.key,
                    "availabilityDomains": list(rs.availability_domains),
                }
                for rs in self.settings.reachable
            },
            "ociConfigFile": str(self.bootstrap.config_file),
            "profile": "DEFAULT",
            "tenancyId": self.bootstrap.tenancy_id,
            "clockControl": self.settings.allow_clock_control,
        }

    def write_discovery(self) -> Path:
        path = self.settings.data_dir / "blockvault.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # processes sharing the data dir write it at once
        tmp.write_text(json.dumps(self.discovery(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    def start_background(self) -> None:
        for region in self.regions.values():
            region.vault.process_deletions()
            region.runner.start()
            region.blockstorage.replication.start()  # the replica sync scheduler
        self._reaper.start()
        with bootstrap_lock(self.settings.data_dir):  # the NBD CA is made at first start, once per data dir
            self._stop_nbd = nbd_runtime.start(self)
        if self._stop_nbd is not None:
            threading.Thread(target=self._open_attached, name="open-attached", daemon=True).start()
        # Backup policies: one thread for every region, on the domain clock; it ends when stop() sets _stop.
        self.scheduler = Scheduler(
            {
                name: BackupPolicyService(engine=r.engine, blockstorage=r.blockstorage, clock=r.clock, groups=r.groups)
                for name, r in self.regions.items()
            },
            self.domain_clock,
            interval=0.5,
            stop=self._stop,
        )
        self.scheduler.start()

    def _open_attached(self) -> None:
        """Open the stores of attached volumes now, not at their first NBD request (AttachmentService.open_attached)."""
        for region in self.regions.values():
            try:
                opened = region.blockstorage.attachments.open_attached(self._stop)
                log.info("%s: %d attached volume(s) opened at start", region.region.name, opened)
            except Exception:
                log.exception("opening the attached volumes of %s failed", region.region.name)

    def _reap(self) -> None:
        while not self._stop.wait(10.0):
            for region in self.regions.values():
                try:
                    region.vault.process_deletions()
                except Exception:
                    log.exception("key reaper failed in %s", region.region.name)
            self.app.state.peer.handles.sweep()  # peer handles (open exports) idle too long

    def stop(self) -> None:
        self._stop.set()
        if self._stop_nbd is not None:
            self._stop_nbd()
        for region in self.regions.values():
            region.blockstorage.replication.stop()
            region.runner.stop()
            region.blockstorage.close()
        for keystore in self._keystores:
            keystore.close()
        self.app.state.peer.handles.close_all()
        if self._directory is not None:
            self._directory.close()
        for lock in self._region_locks:
            lock.release()
