"""Crash consistency of volume group backups and clones (R3.33), through the services in process.

A writer keeps writing a counter to two member volumes in turn (A then B, each write acknowledged before the next
starts) while group backups and a group clone are taken. Every restored or cloned pair must be a state the volumes
really were in at one instant: B never ahead of A, and A at most one write ahead of B. Snapshots are made slow
(each one gives the writer time to go on), so snapshots taken one member after the other, without holding the
writer off, show B ahead of A.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from blockvault.backup.objectstore.local import LocalObjectStore
from blockvault.blockstorage.groups import VolumeGroupService
from blockvault.blockstorage.jobs import JobRunner
from blockvault.blockstorage.service import BlockStorageService, NotImplementedYet, Region
from blockvault.clock import OffsetClock
from blockvault.db.engine import make_engine, sqlite_url, upgrade
from blockvault.errors import Conflict, InvalidArgument, RelatedResourceNotFound
from blockvault.store.volume import VolumeStore
from blockvault.vault.keystore.software import SoftwareKeystore
from blockvault.vault.service import VaultService

AD = "bvlt:US-ASHBURN-AD-1"
COMPARTMENT = "ocid1.compartment.oc1..aaaagroups"
ROOT_KEY = bytes(range(32))
COUNTER = struct.Struct(">Q")


@dataclass
class Stack:
    bs: BlockStorageService
    groups: VolumeGroupService
    runner: JobRunner

    def idle(self) -> None:
        assert self.runner.wait_idle(timeout=120), "jobs did not finish"

    def volume(self, name: str) -> str:
        volume, _ = self.bs.create_volume(
            "volume", {"compartmentId": COMPARTMENT, "availabilityDomain": AD, "sizeInGBs": 50, "displayName": name}
        )
        return volume.id

    def counter(self, volume_id: str) -> int:
        return int(COUNTER.unpack(self.bs.read("volume", volume_id, 0, COUNTER.size))[0])


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    engine = make_engine(sqlite_url(tmp_path / "meta.db"))
    upgrade(engine, "region")
    keystore = SoftwareKeystore(tmp_path / "keystore" / "keys.db", ROOT_KEY)
    clock = OffsetClock()
    vault = VaultService(
        engine=engine,
        keystore=keystore,
        clock=clock,
        region="us-ashburn-1",
        region_key="iad",
        endpoint="http://127.0.0.1:1/us-ashburn-1/",
    )
    runner = JobRunner(engine, region_key="iad", clock=clock)
    bs = BlockStorageService(
        engine=engine,
        vault=vault,
        objects=LocalObjectStore(tmp_path / "objects"),
        region=Region("us-ashburn-1", "iad", (AD,), tmp_path / "region"),
        clock=clock,
        runner=runner,
        compartment_exists=lambda _c: True,
    )
    groups = VolumeGroupService(blockstorage=bs, engine=engine, clock=clock)
    runner.start()
    try:
        yield Stack(bs, groups, runner)
    finally:
        runner.stop()
        bs.close()
        keystore.close()
        engine.dispose()


class Writer(threading.Thread):
    """Writes 1, 2, 3, ... to A then B at offset 0, each write acknowledged before the next starts."""

    def __init__(self, bs: BlockStorageService, a: str, b: str) -> None:
        super().__init__(daemon=True)
        self.bs, self.a, self.b = bs, a, b
        self.stop = threading.Event()
        self.written = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        a, b = self.bs.get_volume("volume", self.a), self.bs.get_volume("volume", self.b)
        try:
            while not self.stop.is_set():
                n = self.written + 1
                # One request per write through the lease, as an NBD session makes them (no flush: a write is
                # acknowledged when it returns; a snapshot flushes first).
                with self.bs.lease(a) as store:
                    store.write(0, COUNTER.pack(n))
                with self.bs.lease(b) as store:
                    store.write(0, COUNTER.pack(n))
                self.written = n
        except Exception as exc:  # noqa: BLE001 - the test reports it
            self.error = exc

    def wait_for(self, count: int) -> None:
        while self.written < count and self.error is None and self.is_alive():
            self.stop.wait(0.001)


def _assert_one_instant(a: int, b: int) -> None:
    assert a - b in (0, 1), f"A={a}, B={b}: not a state the pair was in at one instant"


def test_group_backups_and_clones_are_crash_consistent_under_concurrent_writes(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = stack.volume("a"), stack.volume("b")
    stack.idle()
    writer = Writer(stack.bs, a, b)
    original = VolumeStore.snapshot

    def slow_snapshot(store: VolumeStore, name: str) -> None:
        """A slow snapshot: after each member's, give the writer time for two more rounds. If it gets them, the next
        member's snapshot is a later instant than this one's, which the assertions below catch."""
        original(store, name)
        target, deadline = writer.written + 2, time.monotonic() + 0.2
        while writer.written < target and time.monotonic() < deadline and writer.is_alive():
            time.sleep(0.001)

    monkeypatch.setattr(VolumeStore, "snapshot", slow_snapshot)
    view, _ = stack.groups.create_group(
        {
            "compartmentId": COMPARTMENT,
            "availabilityDomain": AD,
            "sourceDetails": {"type": "volumeIds", "volumeIds": [a, b]},
        }
    )
    group_id = view.group.id
    writer.start()
    backups: list[str] = []
    clone_ids: list[str] = []
    try:
        for round_ in range(6):
            writer.wait_for(20 * (round_ + 1))
            gb, _ = stack.groups.create_group_backup({"volumeGroupId": group_id, "type": "FULL"})
            backups.append(gb.backup.id)
            stack.idle()  # the next backup of a member waits for this one (R3.5)
        writer.wait_for(writer.written + 20)
        clone, _ = stack.groups.create_group(
            {
                "compartmentId": COMPARTMENT,
                "availabilityDomain": AD,
                "sourceDetails": {"type": "volumeGroupId", "volumeGroupId": group_id},
            }
        )
        clone_ids = [v.id for v in clone.members]
    finally:
        writer.stop.set()
        writer.join(timeout=60)
    assert writer.error is None, writer.error
    stack.idle()

    # Each clone was taken while the writer ran: its pair is one instant too, and each clone keeps its source.
    by_source = {stack.bs.get_volume("volume", c).source_id: c for c in clone_ids}
    _assert_one_instant(stack.counter(by_source[a]), stack.counter(by_source[b]))

    seen: list[tuple[int, int]] = []
    for backup_id in backups:
        gb = stack.groups.get_group_backup(backup_id)
        assert gb.state == "AVAILABLE"
        assert sorted(m.volume_id for m in gb.members) == sorted([a, b])
        restored, _ = stack.groups.create_group(
            {
                "compartmentId": COMPARTMENT,
                "availabilityDomain": AD,
                "sourceDetails": {"type": "volumeGroupBackupId", "volumeGroupBackupId": backup_id},
            }
        )
        stack.idle()
        source_volume = {m.id: m.volume_id for m in gb.members}
        values = {
            source_volume[str(v.source_id)]: stack.counter(v.id)
            for v in stack.groups.get_group(restored.group.id).members
        }
        _assert_one_instant(values[a], values[b])
        seen.append((values[a], values[b]))
    assert seen == sorted(seen), "later group backups hold later points in time"
    assert seen[-1][0] >= 100, "the writer ran during the backups"


def test_a_volume_is_in_at_most_one_group(stack: Stack) -> None:
    a, b = stack.volume("a"), stack.volume("b")
    stack.idle()
    first, _ = stack.groups.create_group(
        {
            "compartmentId": COMPARTMENT,
            "availabilityDomain": AD,
            "sourceDetails": {"type": "volumeIds", "volumeIds": [a]},
        }
    )
    with pytest.raises(Conflict, match=f"already in volume group {first.group.id}"):
        stack.groups.create_group(
            {
                "compartmentId": COMPARTMENT,
                "availabilityDomain": AD,
                "sourceDetails": {"type": "volumeIds", "volumeIds": [b, a]},
            }
        )
    assert stack.bs.get_volume("volume", b).volume_group_id is None, "a refused group claims nothing"
    missing = "ocid1.volume.oc1.iad.aaaamissing"
    with pytest.raises(RelatedResourceNotFound):
        stack.groups.update_group(first.group.id, {"volumeIds": [a, missing]})
    stack.groups.delete_group(first.group.id)
    assert stack.bs.get_volume("volume", a).state == "AVAILABLE", "deleting a group keeps its volumes"
    second, _ = stack.groups.create_group(
        {
            "compartmentId": COMPARTMENT,
            "availabilityDomain": AD,
            "sourceDetails": {"type": "volumeIds", "volumeIds": [b, a]},
        }
    )
    assert stack.bs.get_volume("volume", a).volume_group_id == second.group.id


def test_features_not_built_yet_are_refused_not_ignored(stack: Stack) -> None:
    """501 (NotImplementedYet), never retried: a policy on a group must not be silently dropped. Group replicas are
    built (group_replication.py): a replica to the group's own AD and an unknown replica to activate are refused."""
    a = stack.volume("a")
    stack.idle()
    base = {
        "compartmentId": COMPARTMENT,
        "availabilityDomain": AD,
        "sourceDetails": {"type": "volumeIds", "volumeIds": [a]},
    }
    with pytest.raises(NotImplementedYet):
        stack.groups.create_group({**base, "backupPolicyId": "ocid1.volumebackuppolicy.oc1..aaaagold"})
    with pytest.raises(InvalidArgument, match="another availability domain"):
        stack.groups.create_group({**base, "volumeGroupReplicas": [{"availabilityDomain": AD}]})
    with pytest.raises(RelatedResourceNotFound):
        stack.groups.create_group(
            {
                **base,
                "sourceDetails": {
                    "type": "volumeGroupReplicaId",
                    "volumeGroupReplicaId": "ocid1.volumegroupreplica.oc1.iad.aaaar",
                },
            }
        )
    assert stack.bs.get_volume("volume", a).volume_group_id is None
