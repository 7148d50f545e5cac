"""Replica sync, crash safety and activation through the in-process RegionClient (blockstorage/replication.py), on a
real two-region Server without HTTP: jobs run in this thread (drain), crashes are injected as SystemExit (nothing may
mark a sync done or failed), and every check reads the data back byte for byte."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_regions import drain

from blockvault.blockstorage import replication
from blockvault.blockstorage.model import AVAILABLE, FAULTY, PROVISIONING
from blockvault.blockstorage.regions import InProcessRegionClient
from blockvault.config import Settings
from blockvault.errors import Conflict, IncorrectState, KeyUnusable
from blockvault.server import Server
from blockvault.store.volume import UNIT_SIZE

MIB = 1 << 20
IAD, PHX = "us-ashburn-1", "us-phoenix-1"
PHX_AD = "bvlt:US-PHOENIX-AD-1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(Settings(data_dir=tmp_path / "data", nbd_port=0))  # runners not started: drain() runs jobs
    yield srv
    for region in srv.regions.values():
        region.blockstorage.close()


def _key(srv: Server, region: str) -> tuple[str, str]:
    vault = srv.regions[region].vault
    v = vault.create_vault(
        compartment_id=srv.bootstrap.tenancy_id,
        display_name="v",
        vault_type="DEFAULT",
        freeform_tags={},
        defined_tags={},
    )
    k = vault.create_key(
        v.id,
        compartment_id=srv.bootstrap.tenancy_id,
        display_name="k",
        algorithm="AES",
        length=32,
        curve_id=None,
        protection_mode="SOFTWARE",
        freeform_tags={},
        defined_tags={},
    )
    return v.id, k.id


def _replicating(srv: Server, *, key: str | None = None, xrr: str | None = None) -> tuple[str, str]:
    bs = srv.regions[IAD].blockstorage
    entry: dict[str, str] = {"availabilityDomain": PHX_AD}
    if xrr:
        entry["xrrKmsKeyId"] = xrr
    details: dict[str, Any] = {
        "compartmentId": srv.bootstrap.tenancy_id,
        "availabilityDomain": "bvlt:US-ASHBURN-AD-1",
        "sizeInGBs": 50,
        "blockVolumeReplicas": [entry],
    }
    if key:
        details["kmsKeyId"] = key
    volume, _ = bs.create_volume("volume", details)
    [link] = bs.replication.links_of(volume.id)
    return volume.id, link.id


def _write(srv: Server, volume_id: str, image: dict[int, bytes], offset: int, data: bytes) -> None:
    srv.regions[IAD].blockstorage.write("volume", volume_id, offset, data)
    image[offset] = data


def _sync(srv: Server) -> None:
    srv.domain_clock.advance(timedelta(seconds=replication.DEFAULT_INTERVAL_SECONDS + 1))
    srv.regions[PHX].blockstorage.replication.tick()
    drain(srv)


def _activate(srv: Server, replica_id: str, **extra: Any) -> str:
    phx = srv.regions[PHX].blockstorage
    volume, _ = phx.create_volume(
        "volume",
        {"compartmentId": srv.bootstrap.tenancy_id, "sourceDetails": {"type": "blockVolumeReplica", "id": replica_id}}
        | extra,
    )
    return volume.id


def _contents(srv: Server, volume_id: str, image: dict[int, bytes]) -> dict[int, bytes]:
    phx = srv.regions[PHX].blockstorage
    return {offset: phx.read("volume", volume_id, offset, len(data)) for offset, data in image.items()}


def test_sync_ships_only_changes_and_activation_gives_the_last_completed_sync(server: Server) -> None:
    volume_id, replica_id = _replicating(server)
    rep = server.regions[PHX].blockstorage.replication
    assert rep.get_replica("volume", replica_id).state == PROVISIONING
    drain(server)  # volume created, initial sync of an empty volume
    first = rep.get_replica("volume", replica_id)
    assert (first.state, first.sync_count, first.bytes_transferred) == (AVAILABLE, 1, 0)
    image: dict[int, bytes] = {}
    _write(server, volume_id, image, 0, os.urandom(MIB))
    _write(server, volume_id, image, 3 << 30, os.urandom(UNIT_SIZE))
    assert rep.tick() == []  # not due yet
    _sync(server)
    second = rep.get_replica("volume", replica_id)
    assert (second.sync_count, second.bytes_transferred) == (2, MIB + UNIT_SIZE)
    assert second.time_last_synced is not None
    assert first.time_last_synced is not None
    assert second.time_last_synced > first.time_last_synced
    _write(server, volume_id, image, 3 << 30, os.urandom(UNIT_SIZE))  # one unit changes
    _sync(server)
    third = rep.get_replica("volume", replica_id)
    assert third.bytes_transferred - second.bytes_transferred == UNIT_SIZE
    at_sync = dict(image)
    _write(server, volume_id, image, 0, b"\x01" * MIB)  # not synced
    activated = _activate(server, replica_id)
    drain(server)
    assert _contents(server, activated, at_sync) == at_sync
    # the replica's files are under its own DEK, wrapped by phoenix's provider key: no source key involved
    replica = rep.get_replica("volume", replica_id)
    assert replica.kms_key_id is None
    assert replica.key_version_id != server.regions[IAD].blockstorage.volumes.get(volume_id).key_version_id  # type: ignore[union-attr]


def test_one_activation_at_a_time_and_d4_key(server: Server) -> None:
    _, phx_key = _key(server, PHX)
    _volume_id, replica_id = _replicating(server, xrr=phx_key)
    drain(server)
    first = _activate(server, replica_id)
    rep = server.regions[PHX].blockstorage.replication
    assert rep.get_replica("volume", replica_id).state == replication.ACTIVATING
    with pytest.raises(Conflict, match="one volume"):
        _activate(server, replica_id)
    # a sync due meanwhile waits for the activation, then runs
    server.domain_clock.advance(timedelta(seconds=61))
    assert rep.tick() == []
    drain(server)
    assert rep.tick() == [replica_id]
    assert rep.tick() == []  # never two syncs of one replica pending
    drain(server)
    phx = server.regions[PHX].blockstorage
    assert phx.get_volume("volume", first).kms_key_id == phx_key  # D4
    replica = rep.get_replica("volume", replica_id)
    assert (replica.state, replica.sync_count) == (AVAILABLE, 2)
    second = _activate(server, replica_id)
    drain(server)
    assert phx.get_volume("volume", second).state == AVAILABLE


class _Crashing(InProcessRegionClient):
    """Dies (like kill -9) after `limit` unit batches of a sync."""

    def __init__(self, inner: Any, limit: int) -> None:
        super().__init__(inner)
        self.limit, self.calls = limit, 0

    def read_replica_units(self, kind: str, volume_id: str, snapshot: str, units: tuple[int, ...]) -> tuple[bytes, ...]:
        self.calls += 1
        if self.calls > self.limit:
            raise SystemExit("killed")
        return super().read_replica_units(kind, volume_id, snapshot, units)


def _run_jobs(server: Server, operation: str) -> None:
    runner = server.regions[PHX].runner
    for job in [j for j in runner.pending() if j.operation == operation]:
        runner.run_one(job)


def _run_sync_job(server: Server) -> None:
    runner = server.regions[PHX].runner
    [job] = [j for j in runner.pending() if j.operation == "SyncReplica"]
    runner.run_one(job)


def test_a_sync_killed_midway_keeps_the_old_sync_point_and_converges(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replication, "BATCH_UNITS", 2)  # several batches: the second one "kills the process"
    volume_id, replica_id = _replicating(server)
    drain(server)
    image: dict[int, bytes] = {}
    _write(server, volume_id, image, 0, os.urandom(8 * UNIT_SIZE))
    _sync(server)
    rep = server.regions[PHX].blockstorage.replication
    before = rep.get_replica("volume", replica_id)
    at_sync = dict(image)
    _write(server, volume_id, image, 0, os.urandom(8 * UNIT_SIZE))
    phx = server.regions[PHX].blockstorage
    good = phx.peers[IAD]
    phx.peers[IAD] = _Crashing(server.regions[IAD].blockstorage, limit=1)
    server.domain_clock.advance(timedelta(seconds=61))
    rep.tick()
    with pytest.raises(SystemExit):
        _run_sync_job(server)
    crashed = rep.get_replica("volume", replica_id)
    assert (crashed.sync_count, crashed.time_last_synced) == (before.sync_count, before.time_last_synced)
    activated = _activate(server, replica_id)
    _run_jobs(server, "ActivateReplica")  # the interrupted sync is still IN_PROGRESS; activation reads sync-N
    assert _contents(server, activated, at_sync) == at_sync
    phx.peers[IAD] = good
    drain(server)  # the interrupted sync runs again and converges
    after = rep.get_replica("volume", replica_id)
    assert after.sync_count == before.sync_count + 1
    latest = _activate(server, replica_id)
    drain(server)
    assert _contents(server, latest, image) == image


def test_a_crash_between_the_replica_snapshot_and_the_commit_redoes_the_sync(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume_id, replica_id = _replicating(server)
    drain(server)
    image: dict[int, bytes] = {}
    _write(server, volume_id, image, 5 * MIB, os.urandom(MIB))
    calls = []

    def dying(point: Any, interval: float) -> Any:
        calls.append(point)
        raise SystemExit("killed after the replica snapshot")

    rep = server.regions[PHX].blockstorage.replication
    monkeypatch.setattr(replication, "next_sync_time", dying)
    server.domain_clock.advance(timedelta(seconds=61))
    rep.tick()
    with pytest.raises(SystemExit):
        _run_sync_job(server)
    assert calls
    assert rep.get_replica("volume", replica_id).sync_count == 1  # the frozen sync-2 is not reported
    monkeypatch.undo()
    drain(server)
    assert rep.get_replica("volume", replica_id).sync_count == 2
    activated = _activate(server, replica_id)
    drain(server)
    assert _contents(server, activated, image) == image


def test_d1_both_ways_parks_the_sync_and_d2_makes_the_replica_faulty(server: Server) -> None:
    iad_vault, iad_key = _key(server, IAD)
    phx_vault, phx_key = _key(server, PHX)
    volume_id, replica_id = _replicating(server, key=iad_key, xrr=phx_key)
    drain(server)
    image: dict[int, bytes] = {}
    _write(server, volume_id, image, 0, os.urandom(MIB))
    _sync(server)
    rep = server.regions[PHX].blockstorage.replication
    phx_vault_svc, iad_vault_svc = server.regions[PHX].vault, server.regions[IAD].vault
    synced = rep.get_replica("volume", replica_id).sync_count

    # destination key disabled: the sync parks, activation refuses naming the key; the source is untouched
    phx_vault_svc.key_action(phx_key, phx_vault, "disable")
    _write(server, volume_id, image, MIB, os.urandom(MIB))
    _sync(server)
    assert rep.get_replica("volume", replica_id).sync_count == synced
    assert server.regions[PHX].runner.pending()  # parked, not failed
    with pytest.raises(KeyUnusable, match=phx_key):
        _activate(server, replica_id)
    phx_vault_svc.key_action(phx_key, phx_vault, "enable")
    drain(server)
    assert rep.get_replica("volume", replica_id).sync_count == synced + 1

    # source key disabled: the sync parks; the replica still activates under its own key
    iad_vault_svc.key_action(iad_key, iad_vault, "disable")
    _write_refused = pytest.raises(KeyUnusable)
    with _write_refused:
        server.regions[IAD].blockstorage.write("volume", volume_id, 0, b"x")
    _sync(server)
    assert rep.get_replica("volume", replica_id).sync_count == synced + 1
    activated = _activate(server, replica_id)
    drain(server)
    assert _contents(server, activated, image) == image
    iad_vault_svc.key_action(iad_key, iad_vault, "enable")
    drain(server)

    # D2: the destination key destroyed: the replica is FAULTY and cannot be activated
    phx_vault_svc.key_action(phx_key, phx_vault, "schedule_deletion")
    server.domain_clock.advance(timedelta(days=31))
    phx_vault_svc.process_deletions()
    assert rep.get_replica("volume", replica_id).state == FAULTY
    with pytest.raises(Conflict):
        _activate(server, replica_id)


def test_resize_refused_and_empty_list_terminates(server: Server) -> None:
    volume_id, replica_id = _replicating(server)
    drain(server)
    iad = server.regions[IAD].blockstorage
    with pytest.raises(Conflict, match="replication"):
        iad.update_volume("volume", volume_id, {"sizeInGBs": 60})
    iad.update_volume("volume", volume_id, {"blockVolumeReplicas": []})
    drain(server)
    assert server.regions[PHX].blockstorage.replication.get_replica("volume", replica_id).state == "TERMINATED"
    assert not (
        server.regions[PHX].blockstorage.replication.replica_dir(
            server.regions[PHX].blockstorage.replication.get_replica("volume", replica_id)
        )
        / "map.db"
    ).exists()
    assert iad.update_volume("volume", volume_id, {"sizeInGBs": 60}).size_gb == 60
    _, fresh = _replicating(server)
    with pytest.raises(IncorrectState):  # a replica still provisioning cannot be activated yet (transient)
        _activate(server, fresh)


def test_a_destroyed_source_key_leaves_the_replica_activatable(server: Server) -> None:
    """D2 on the source: the source is FAULTY for good; the replica keeps its last sync point under its own key."""
    iad_vault, iad_key = _key(server, IAD)
    volume_id, replica_id = _replicating(server, key=iad_key)
    drain(server)
    image: dict[int, bytes] = {}
    _write(server, volume_id, image, 0, os.urandom(MIB))
    _sync(server)
    rep = server.regions[PHX].blockstorage.replication
    synced = rep.get_replica("volume", replica_id)
    server.regions[IAD].vault.key_action(iad_key, iad_vault, "schedule_deletion")
    server.domain_clock.advance(timedelta(days=31))
    server.regions[IAD].vault.process_deletions()
    assert server.regions[IAD].blockstorage.get_volume("volume", volume_id).state == FAULTY
    _sync(server)  # skipped, not failed: the sync point stays, the next try is one interval later
    after = rep.get_replica("volume", replica_id)
    assert (after.state, after.sync_count) == (AVAILABLE, synced.sync_count)
    assert after.next_sync_at > server.domain_clock.now()
    assert not server.regions[PHX].runner.pending()
    activated = _activate(server, replica_id)
    drain(server)
    assert _contents(server, activated, image) == image


def test_failback_activation_replicates_back_to_the_original_region(server: Server) -> None:
    """R5.13: activate in the destination with replication back to the source's region; after its initial sync
    the data can be brought back there."""
    volume_id, replica_id = _replicating(server)
    drain(server)
    image: dict[int, bytes] = {}
    _write(server, volume_id, image, 9 * MIB, os.urandom(MIB))
    _sync(server)
    back = _activate(server, replica_id, blockVolumeReplicas=[{"availabilityDomain": "bvlt:US-ASHBURN-AD-3"}])
    drain(server)
    phx = server.regions[PHX].blockstorage
    [link] = phx.replication.links_of(back)
    iad = server.regions[IAD].blockstorage
    returned = iad.replication.get_replica("volume", link.id)
    assert (returned.state, returned.source_volume_id, returned.sync_count) == (AVAILABLE, back, 1)
    home, _ = iad.create_volume(
        "volume",
        {"compartmentId": server.bootstrap.tenancy_id, "sourceDetails": {"type": "blockVolumeReplica", "id": link.id}},
    )
    drain(server)
    assert home.availability_domain == "bvlt:US-ASHBURN-AD-3"
    assert {o: iad.read("volume", home.id, o, len(d)) for o, d in image.items()} == image


def test_deleting_a_replicating_volume_deletes_its_replica(server: Server) -> None:
    volume_id, replica_id = _replicating(server)
    drain(server)
    iad = server.regions[IAD].blockstorage
    iad.delete_volume("volume", volume_id)
    drain(server)
    assert iad.get_volume("volume", volume_id).state == "TERMINATED"
    assert iad.replication.links_of(volume_id) == []
    assert server.regions[PHX].blockstorage.replication.get_replica("volume", replica_id).state == "TERMINATED"
