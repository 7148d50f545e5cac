"""The coordinated sync point of a volume group replica (blockstorage/group_replication.py), on a real two-region
Server without HTTP: jobs run in this thread (drain), a crash is injected as SystemExit, and every check reads the
data back byte for byte. The pure rules are tested at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_regions import drain

from blockvault.blockstorage import group_replication as gr
from blockvault.blockstorage import replication
from blockvault.blockstorage.model import AVAILABLE, PROVISIONING
from blockvault.blockstorage.regions import InProcessRegionClient
from blockvault.blockstorage.replication import Replica, ReplicaLink
from blockvault.config import Settings
from blockvault.errors import Conflict, IncorrectState, Unavailable
from blockvault.server import Server

MIB = 1 << 20
IAD, PHX = "us-ashburn-1", "us-phoenix-1"
IAD_AD, PHX_AD = "bvlt:US-ASHBURN-AD-1", "bvlt:US-PHOENIX-AD-1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(Settings(data_dir=tmp_path / "data", nbd_port=0))  # runners not started: drain() runs jobs
    yield srv
    for region in srv.regions.values():
        region.blockstorage.close()


def _volume(srv: Server) -> str:
    volume, _ = srv.regions[IAD].blockstorage.create_volume(
        "volume", {"compartmentId": srv.bootstrap.tenancy_id, "availabilityDomain": IAD_AD, "sizeInGBs": 50}
    )
    return volume.id


def _replicating_group(srv: Server, n: int = 2) -> tuple[str, list[str], str]:
    volumes = [_volume(srv) for _ in range(n)]
    drain(srv)
    groups = srv.regions[IAD].groups
    assert groups is not None
    view, _ = groups.create_group(
        {
            "compartmentId": srv.bootstrap.tenancy_id,
            "availabilityDomain": IAD_AD,
            "sourceDetails": {"type": "volumeIds", "volumeIds": volumes},
            "volumeGroupReplicas": [{"availabilityDomain": PHX_AD}],
        }
    )
    [link] = groups.replica_links(view.group.id)
    return view.group.id, volumes, link.id


def _write(srv: Server, volume_id: str, image: dict[int, bytes], offset: int, data: bytes) -> None:
    srv.regions[IAD].blockstorage.write("volume", volume_id, offset, data)
    image[offset] = data


def _sync(srv: Server) -> None:
    srv.domain_clock.advance(timedelta(seconds=replication.DEFAULT_INTERVAL_SECONDS + 1))
    srv.regions[PHX].blockstorage.replication.tick()
    drain(srv)


def _activate(srv: Server, replica_id: str) -> list[str]:
    groups = srv.regions[PHX].groups
    assert groups is not None
    view, _ = groups.create_group(
        {
            "compartmentId": srv.bootstrap.tenancy_id,
            "availabilityDomain": PHX_AD,
            "sourceDetails": {"type": "volumeGroupReplicaId", "volumeGroupReplicaId": replica_id},
        }
    )
    return [v.id for v in view.members]


def _source(srv: Server, activated_id: str) -> str:
    phx = srv.regions[PHX].blockstorage
    volume = phx.volumes.get(activated_id)
    assert volume is not None
    assert volume.source_id is not None
    member = phx.replication.replicas.get(volume.source_id)
    assert member is not None
    return member.source_volume_id


def _contents(srv: Server, volume_id: str, image: dict[int, bytes]) -> dict[int, bytes]:
    phx = srv.regions[PHX].blockstorage
    return {offset: phx.read("volume", volume_id, offset, len(data)) for offset, data in image.items()}


class _Crashing(InProcessRegionClient):
    """Dies (like kill -9) at the `limit`+1-th unit batch read."""

    def __init__(self, inner: Any, limit: int) -> None:
        super().__init__(inner)
        self.limit, self.calls = limit, 0

    def read_replica_units(self, kind: str, volume_id: str, snapshot: str, units: tuple[int, ...]) -> tuple[bytes, ...]:
        self.calls += 1
        if self.calls > self.limit:
            raise SystemExit("killed")
        return super().read_replica_units(kind, volume_id, snapshot, units)


def test_every_member_shares_the_group_sync_point_taken_once_for_all(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _group_id, volumes, replica_id = _replicating_group(server)
    iad = server.regions[IAD].blockstorage
    calls: list[list[str]] = []
    real = iad.snapshot_at_one_point

    def spy(vols: list[Any], names: dict[str, str]) -> dict[str, int]:
        calls.append(sorted(v.id for v in vols))
        return real(vols, names)

    monkeypatch.setattr(iad, "snapshot_at_one_point", spy)
    drain(server)  # the initial group sync
    assert calls == [sorted(volumes)]  # ONE held point in time for both members
    grs = server.regions[PHX].blockstorage.replication.group_replicas
    view = grs.get(replica_id)
    assert (view.state, view.replica.sync_count) == (AVAILABLE, 1)
    assert {m.time_last_synced for m in view.members} == {view.replica.time_last_synced}
    assert {view.membership_state(m) for m in view.members} == {gr.STABLE}
    assert {m.source_volume_id for m in view.members} == set(volumes)


def test_a_group_sync_killed_after_one_member_moves_no_member_and_converges(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _group_id, volumes, replica_id = _replicating_group(server)
    drain(server)
    images: dict[str, dict[int, bytes]] = {v: {} for v in volumes}
    for v in volumes:
        _write(server, v, images[v], 0, os.urandom(MIB))
    _sync(server)
    grs = server.regions[PHX].blockstorage.replication.group_replicas
    before = grs.get(replica_id)
    at_sync = {v: dict(image) for v, image in images.items()}
    for v in volumes:
        _write(server, v, images[v], 0, os.urandom(MIB))
    phx = server.regions[PHX].blockstorage
    good = phx.peers[IAD]
    phx.peers[IAD] = _Crashing(server.regions[IAD].blockstorage, limit=1)  # the first member ships, then death
    server.domain_clock.advance(timedelta(seconds=61))
    phx.replication.tick()
    [job] = [j for j in server.regions[PHX].runner.pending() if j.operation == gr.SYNC_JOB]
    with pytest.raises(SystemExit):
        server.regions[PHX].runner.run_one(job)
    crashed = grs.get(replica_id)
    assert (crashed.replica.sync_count, crashed.replica.time_last_synced) == (
        before.replica.sync_count,
        before.replica.time_last_synced,
    )
    assert [(m.sync_count, m.time_last_synced) for m in crashed.members] == [
        (m.sync_count, m.time_last_synced) for m in before.members
    ]
    # activation still gives the previous coordinated point for every member
    activated = _activate(server, replica_id)
    for job in [j for j in server.regions[PHX].runner.pending() if j.operation == "ActivateReplica"]:
        server.regions[PHX].runner.run_one(job)
    assert len(activated) == 2
    for volume_id in activated:
        source = _source(server, volume_id)
        assert _contents(server, volume_id, at_sync[source]) == at_sync[source]
    phx.peers[IAD] = good
    drain(server)  # the interrupted group sync runs again and converges
    after = grs.get(replica_id)
    assert after.replica.sync_count == before.replica.sync_count + 1
    assert {m.time_last_synced for m in after.members} == {after.replica.time_last_synced}
    latest = _activate(server, replica_id)
    drain(server)
    for volume_id in latest:
        source = _source(server, volume_id)
        assert _contents(server, volume_id, images[source]) == images[source]


def test_a_member_added_later_is_add_pending_and_not_activated_until_a_group_sync(server: Server) -> None:
    group_id, volumes, replica_id = _replicating_group(server)
    drain(server)
    late = _volume(server)
    drain(server)
    groups = server.regions[IAD].groups
    assert groups is not None
    groups.update_group(group_id, {"volumeIds": [*volumes, late]})
    grs = server.regions[PHX].blockstorage.replication.group_replicas
    # add_group_members enqueued a group sync at once; before it runs the newcomer is not in the point
    view = grs.get(replica_id)
    states = {m.source_volume_id: view.membership_state(m) for m in view.members}
    assert states == {volumes[0]: gr.STABLE, volumes[1]: gr.STABLE, late: gr.ADD_PENDING}
    assert {_source(server, v) for v in _activate_and_run(server, replica_id)} == set(volumes)
    drain(server)
    view = grs.get(replica_id)
    assert {view.membership_state(m) for m in view.members} == {gr.STABLE}
    assert {_source(server, v) for v in _activate_and_run(server, replica_id)} == {*volumes, late}


def _activate_and_run(srv: Server, replica_id: str) -> list[str]:
    made = _activate(srv, replica_id)
    for job in [j for j in srv.regions[PHX].runner.pending() if j.operation == "ActivateReplica"]:
        srv.regions[PHX].runner.run_one(job)
    return made


def test_one_activation_at_a_time_and_no_sync_meanwhile(server: Server) -> None:
    _group_id, _volumes, replica_id = _replicating_group(server)
    drain(server)
    _activate(server, replica_id)  # its ActivateReplica jobs have not run yet
    with pytest.raises(Conflict, match="one volume group"):
        _activate(server, replica_id)
    grs = server.regions[PHX].blockstorage.replication.group_replicas
    assert grs.get(replica_id).state == gr.ACTIVATING
    server.domain_clock.advance(timedelta(seconds=61))
    assert grs.tick(server.domain_clock.now()) == []  # activation reads the members' last sync: no sync now
    drain(server)
    assert grs.get(replica_id).state == AVAILABLE
    assert grs.tick(server.domain_clock.now()) == [replica_id]


def test_activation_before_the_first_sync_waits(server: Server) -> None:
    _group_id, _volumes, replica_id = _replicating_group(server)
    with pytest.raises(IncorrectState):
        _activate(server, replica_id)


# --- pure rules --------------------------------------------------------------------------------------------------


def _group(sync_count: int, synced: datetime | None) -> gr.GroupReplica:
    return gr.GroupReplica(
        id="g",
        compartment_id="c",
        availability_domain=PHX_AD,
        display_name="g",
        source_region=IAD,
        source_group_id="sg",
        state=AVAILABLE,
        kms_key_id=None,
        time_created=T0,
        next_sync_at=T0,
        sync_count=sync_count,
        time_last_synced=synced,
    )


def _member(rid: str, sync_count: int, synced: datetime | None) -> Replica:
    return Replica(
        id=rid,
        kind="volume",
        compartment_id="c",
        availability_domain=PHX_AD,
        display_name=rid,
        source_region=IAD,
        source_volume_id=f"vol-{rid}",
        size_gb=50,
        state=AVAILABLE,
        kms_key_id=None,
        key_version_id="",
        wrapped_dek=b"",
        time_created=T0,
        next_sync_at=T0,
        sync_count=sync_count,
        time_last_synced=synced,
        volume_group_replica_id="g",
    )


def test_only_members_committed_with_the_last_group_sync_are_in_its_point() -> None:
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    group = _group(2, t2)
    members = [_member("a", 5, t2), _member("b", 1, t2), _member("c", 0, None), _member("d", 3, t1)]
    assert [m.id for m in gr.coordinated_members(group, members)] == ["a", "b"]
    assert gr.coordinated_members(_group(0, None), [_member("a", 0, None)]) == []


def test_sync_plan_asks_each_member_for_its_own_next_generation() -> None:
    plan = gr.sync_plan([_member("a", 5, T0), _member("b", 0, None)])
    assert [(m.volume_id, m.replica_id, m.generation) for m in plan] == [("vol-a", "a", 6), ("vol-b", "b", 1)]


def _link(rid: str, ad: str, group: str | None = None) -> ReplicaLink:
    return ReplicaLink(rid, "v", PHX, ad, rid, None, T0, group)


def test_classify_members_adopts_same_destination_and_flags_conflicts() -> None:
    links = {
        "same": [_link("r1", PHX_AD)],
        "other-ad": [_link("r2", "bvlt:US-PHOENIX-AD-2")],
        "other-group": [_link("r3", PHX_AD, "other")],
        "ours": [_link("r4", PHX_AD, "g")],
        "none": [],
    }
    adopt, conflicts = gr.classify_members(links, PHX_AD, "g")
    assert adopt == {"same": "r1", "ours": "r4"}
    assert sorted(conflicts) == ["other-ad", "other-group"]


def test_group_replica_state_leaves_activating_when_no_member_is() -> None:
    assert gr.group_replica_state(gr.ACTIVATING, [AVAILABLE, gr.ACTIVATING]) == gr.ACTIVATING
    assert gr.group_replica_state(gr.ACTIVATING, [AVAILABLE, AVAILABLE]) == AVAILABLE
    assert gr.group_replica_state(PROVISIONING, [gr.ACTIVATING]) == PROVISIONING


class _Unreachable(InProcessRegionClient):
    """The source process is away: every call that reaches it fails as the peer transport does."""

    def begin_group_replica_sync(self, group_id: str, group_replica_id: str, members: Any) -> Any:
        raise Unavailable(dependency="peer us-ashburn-1")


def test_an_unreachable_source_parks_the_group_sync_instead_of_failing_it(server: Server) -> None:
    _group_id, _volumes, replica_id = _replicating_group(server)
    phx = server.regions[PHX].blockstorage
    good = phx.peers[IAD]
    phx.peers[IAD] = _Unreachable(server.regions[IAD].blockstorage)
    [job] = [j for j in server.regions[PHX].runner.pending() if j.operation == gr.SYNC_JOB]
    server.regions[PHX].runner.run_one(job)
    parked = server.regions[PHX].runner.repo.get(job.id)
    assert parked is not None
    assert parked.state == "IN_PROGRESS"  # parked, to be retried: not FAILED
    assert phx.replication.group_replicas.get(replica_id).state == PROVISIONING  # not FAULTY
    phx.peers[IAD] = good
    drain(server)
    assert phx.replication.group_replicas.get(replica_id).state == AVAILABLE
