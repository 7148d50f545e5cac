"""A replica sync whose source region's process is unreachable parks and retries (blockstorage/replication.py
`_job_sync`; docs/design/replication.md, "Regions in separate processes"): the replica is never made FAULTY for
it, keeps its last sync point meanwhile, and the retried sync completes once the source answers again."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_regions import drain
from test_replication_sync import IAD, PHX, _activate, _contents, _replicating, _sync, _write

from blockvault.blockstorage import replication
from blockvault.blockstorage.model import AVAILABLE
from blockvault.blockstorage.regions import InProcessRegionClient
from blockvault.config import Settings
from blockvault.peer.client import PeerUnavailable
from blockvault.server import Server

MIB = 1 << 20


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(Settings(data_dir=tmp_path / "data", nbd_port=0))  # runners not started: jobs run in this thread
    yield srv
    for region in srv.regions.values():
        region.blockstorage.close()


class _Unreachable(InProcessRegionClient):
    """The source region as a peer process that stopped answering: every sync call raises `PeerUnavailable` (what
    the HTTP transport raises once its retry window is over) at the method `fail_at`."""

    def __init__(self, inner: Any, fail_at: str) -> None:
        super().__init__(inner)
        self.fail_at, self.calls = fail_at, 0

    def _down(self, method: str) -> None:
        if method == self.fail_at:
            self.calls += 1
            raise PeerUnavailable(region=IAD, url="http://127.0.0.1:1", reason="ConnectionError")

    def begin_replica_sync(self, kind: str, volume_id: str, replica_id: str, generation: int) -> Any:
        self._down("begin_replica_sync")
        return super().begin_replica_sync(kind, volume_id, replica_id, generation)

    def read_replica_units(self, kind: str, volume_id: str, snapshot: str, units: tuple[int, ...]) -> Any:
        self._down("read_replica_units")
        return super().read_replica_units(kind, volume_id, snapshot, units)


@pytest.mark.parametrize("fail_at", ["begin_replica_sync", "read_replica_units"])
def test_an_unreachable_source_parks_the_sync_and_never_faults_the_replica(server: Server, fail_at: str) -> None:
    volume_id, replica_id = _replicating(server)
    drain(server)
    image: dict[int, bytes] = {}
    _write(server, volume_id, image, 0, os.urandom(MIB))
    _sync(server)
    rep = server.regions[PHX].blockstorage.replication
    before = rep.get_replica("volume", replica_id)
    assert (before.state, before.sync_count) == (AVAILABLE, 2)
    at_sync = dict(image)
    _write(server, volume_id, image, 0, os.urandom(MIB))

    phx = server.regions[PHX].blockstorage
    good = phx.peers[IAD]
    down = _Unreachable(server.regions[IAD].blockstorage, fail_at)
    phx.peers[IAD] = down
    server.domain_clock.advance(timedelta(seconds=replication.DEFAULT_INTERVAL_SECONDS + 1))
    assert rep.tick() == [replica_id]
    runner = server.regions[PHX].runner
    for _ in range(3):  # however often it is retried while the source is away
        [job] = [j for j in runner.pending() if j.operation == "SyncReplica"]
        runner.run_one(job)
        parked = runner.repo.get(job.id)
        assert parked is not None
        assert parked.state == "IN_PROGRESS", parked  # parked: not FAILED
        replica = rep.get_replica("volume", replica_id)
        assert (replica.state, replica.sync_count) == (AVAILABLE, before.sync_count)
        assert replica.time_last_synced == before.time_last_synced
    assert down.calls >= 3
    activated = _activate(server, replica_id)  # meanwhile the last sync point is still there to activate
    drain(server)
    assert _contents(server, activated, at_sync) == at_sync

    phx.peers[IAD] = good  # the source's process is back
    drain(server)
    after = rep.get_replica("volume", replica_id)
    assert (after.state, after.sync_count) == (AVAILABLE, before.sync_count + 1)
    latest = _activate(server, replica_id)
    drain(server)
    assert _contents(server, latest, image) == image
