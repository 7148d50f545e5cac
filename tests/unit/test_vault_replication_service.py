"""Vault replication between VaultServices of three in-process regions (separate databases and keystores).

What the e2e suite cannot reach with two regions (409 for a third region), and the contract of the VaultPeer
interface: plain data only, material only wrapped, idempotent syncs, and the replica first (RPO 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from blockvault.clock import OffsetClock
from blockvault.db.engine import make_engine, sqlite_url, upgrade
from blockvault.errors import Conflict, DecryptionFailed, InvalidArgument, Unavailable
from blockvault.vault import lifecycle
from blockvault.vault.keystore import transfer
from blockvault.vault.keystore.software import SoftwareKeystore
from blockvault.vault.replication import (
    InProcessVaultPeer,
    KeySnapshot,
    ReplicaReadOnly,
    ReplicaVaultInfo,
    ReplicaVaultSpec,
    material_context,
)
from blockvault.vault.service import VaultService

T0 = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)
COMPARTMENT = "ocid1.compartment.oc1..aaaacompartment"
REGIONS = {"us-ashburn-1": "iad", "us-phoenix-1": "phx", "eu-frankfurt-1": "fra"}
PLAIN = (str, int, bool, bytes, type(None))


class Recording:
    """A VaultPeer that records every call (to check the plain-data contract) and can be made to fail."""

    def __init__(self, inner: InProcessVaultPeer) -> None:
        self.inner, self.fail = inner, False
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _call(self, name: str, *args: Any) -> Any:
        if self.fail:
            raise Unavailable(dependency="test peer")
        self.calls.append((name, args))
        return getattr(self.inner, name)(*args)

    def transfer_public_key(self) -> bytes:
        return self._call("transfer_public_key")  # type: ignore[no-any-return]

    def ensure_replica_vault(self, spec: ReplicaVaultSpec) -> ReplicaVaultInfo:
        return self._call("ensure_replica_vault", spec)  # type: ignore[no-any-return]

    def sync_key(self, source_vault_id: str, key: KeySnapshot) -> None:
        self._call("sync_key", source_vault_id, key)

    def delete_replica_vault(self, source_vault_id: str, replication_id: str) -> None:
        self._call("delete_replica_vault", source_vault_id, replication_id)


@pytest.fixture
def regions(tmp_path: Path) -> Iterator[dict[str, VaultService]]:
    clock = OffsetClock(base=lambda: T0)
    out: dict[str, VaultService] = {}
    stores: list[SoftwareKeystore] = []
    for name, key in REGIONS.items():
        engine = make_engine(sqlite_url(tmp_path / f"{name}.db"))
        upgrade(engine, "region")
        store = SoftwareKeystore(tmp_path / name / "keys.db", bytes([len(stores)]) * 32, transfer_key_bits=2048)
        stores.append(store)
        out[name] = VaultService(
            engine=engine, keystore=store, clock=clock, region=name, region_key=key, endpoint=f"http://h/{name}"
        )
    yield out
    for store in stores:
        store.close()


@pytest.fixture
def peers(regions: dict[str, VaultService]) -> dict[str, Recording]:
    iad = regions["us-ashburn-1"]
    recs = {name: Recording(InProcessVaultPeer(svc)) for name, svc in regions.items() if name != iad.region}
    iad.connect_peers(recs)
    return recs


def _vault_and_key(svc: VaultService, vault_type: str = "VIRTUAL_PRIVATE") -> tuple[str, str]:
    vault = svc.create_vault(
        compartment_id=COMPARTMENT, display_name="v", vault_type=vault_type, freeform_tags={}, defined_tags={}
    )
    key = svc.create_key(
        vault.id,
        compartment_id=COMPARTMENT,
        display_name="k",
        algorithm="AES",
        length=32,
        curve_id=None,
        protection_mode="HSM",
        freeform_tags={"team": "a"},
        defined_tags={},
    )
    return vault.id, key.id


def _plain(value: Any, path: str = "") -> None:
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _plain(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            _plain(item, f"{path}[{i}]")
    else:
        assert isinstance(value, PLAIN), f"{path} is {type(value).__name__}, not plain data"


def test_only_one_replica_region_at_a_time(regions: dict[str, VaultService], peers: dict[str, Recording]) -> None:
    iad = regions["us-ashburn-1"]
    vault_id, _ = _vault_and_key(iad)
    first = iad.create_vault_replica(vault_id, "us-phoenix-1")
    assert first.status == "CREATED"
    assert iad.create_vault_replica(vault_id, "us-phoenix-1").id == first.id  # the same region: a no-op
    with pytest.raises(Conflict, match="already replicated to us-phoenix-1"):
        iad.create_vault_replica(vault_id, "eu-frankfurt-1")
    iad.delete_vault_replica(vault_id, "us-phoenix-1")
    assert iad.create_vault_replica(vault_id, "eu-frankfurt-1").region == "eu-frankfurt-1"
    with pytest.raises(InvalidArgument):
        iad.create_vault_replica(vault_id, "ap-tokyo-1")  # not a region served here


def test_peer_calls_carry_plain_data_and_wrapped_material_only(
    regions: dict[str, VaultService], peers: dict[str, Recording]
) -> None:
    iad, phx = regions["us-ashburn-1"], regions["us-phoenix-1"]
    vault_id, key_id = _vault_and_key(iad)
    iad.create_vault_replica(vault_id, "us-phoenix-1")
    iad.create_key_version(key_id, vault_id)
    iad.key_action(key_id, vault_id, "disable")
    calls = peers["us-phoenix-1"].calls
    assert {name for name, _ in calls} == {"transfer_public_key", "ensure_replica_vault", "sync_key"}
    for _, args in calls:
        for arg in args:
            _plain(arg)
    snaps = [args[1] for name, args in calls if name == "sync_key"]
    assert [len(s.versions) for s in snaps] == [1, 2, 2]
    private = phx._keystore._transfer_key()  # type: ignore[attr-defined]
    for snap in snaps:
        for version in snap.versions:
            assert version.material.startswith(transfer.MAGIC)
            ctx = material_context("us-phoenix-1", snap.source_key_id, version.source_version_id, snap.length)
            assert len(transfer.unwrap(private, version.material, ctx)) == 32
            with pytest.raises(DecryptionFailed):  # bound to its destination
                transfer.unwrap(private, version.material, {**ctx, "destinationRegion": "eu-frankfurt-1"})


def test_sync_is_idempotent(regions: dict[str, VaultService], peers: dict[str, Recording]) -> None:
    iad, phx = regions["us-ashburn-1"], regions["us-phoenix-1"]
    vault_id, key_id = _vault_and_key(iad)
    iad.create_vault_replica(vault_id, "us-phoenix-1")
    snap = next(args[1] for name, args in peers["us-phoenix-1"].calls if name == "sync_key")
    before = [(k.id, k.current_version_id) for k in phx.keys.find()]
    phx.replica_sync_key(vault_id, snap)
    phx.replica_sync_key(vault_id, snap)
    assert [(k.id, k.current_version_id) for k in phx.keys.find()] == before
    assert len(phx.versions.find()) == 1
    (replica_key,) = phx.keys.find()
    assert (replica_key.source_key_id, replica_key.freeform_tags, replica_key.is_primary) == (
        key_id,
        {"team": "a"},
        False,
    )


def test_the_replica_is_written_first_rpo_zero(regions: dict[str, VaultService], peers: dict[str, Recording]) -> None:
    iad, phx = regions["us-ashburn-1"], regions["us-phoenix-1"]
    vault_id, key_id = _vault_and_key(iad)
    iad.create_vault_replica(vault_id, "us-phoenix-1")
    peers["us-phoenix-1"].fail = True
    with pytest.raises(Unavailable):
        iad.key_action(key_id, vault_id, "disable")
    assert iad.get_key(key_id).state == lifecycle.ENABLED  # nothing committed that the replica does not have
    peers["us-phoenix-1"].fail = False
    iad.key_action(key_id, vault_id, "disable")
    assert [k.state for k in phx.keys.find()] == [lifecycle.DISABLED]


def test_replicas_follow_their_source_only(regions: dict[str, VaultService], peers: dict[str, Recording]) -> None:
    iad, phx = regions["us-ashburn-1"], regions["us-phoenix-1"]
    vault_id, key_id = _vault_and_key(iad)
    iad.create_vault_replica(vault_id, "us-phoenix-1")
    (rvault,) = phx.vaults.find()
    (rkey,) = phx.keys.find()
    with pytest.raises(ReplicaReadOnly):
        phx.key_action(rkey.id, rvault.id, "disable")
    iad.key_action(key_id, vault_id, "schedule_deletion", T0 + timedelta(days=7))
    clock = iad._clock
    assert isinstance(clock, OffsetClock)
    clock.advance(timedelta(days=8))
    assert phx.process_deletions() == []  # the destination never reaps a replica on its own
    assert phx.get_key(rkey.id).state == lifecycle.PENDING_DELETION
    assert iad.process_deletions() == [key_id]
    assert phx.get_key(rkey.id).state == lifecycle.DELETED
    assert not phx._keystore.exists(rkey.current_version_id)


def test_default_vaults_are_not_replicable(regions: dict[str, VaultService], peers: dict[str, Recording]) -> None:
    iad = regions["us-ashburn-1"]
    vault_id, _ = _vault_and_key(iad, "DEFAULT")
    with pytest.raises(Conflict, match="isVaultReplicable"):
        iad.create_vault_replica(vault_id, "us-phoenix-1")
    assert peers["us-phoenix-1"].calls == []
