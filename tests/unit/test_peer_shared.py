"""What processes of one data dir share (peer/shared.py, config.parse_topology): one admin clock, a directory
generation that moves on another process's commit, one process per region, and a validated topology."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from blockvault.config import DEFAULT_REGIONS, Settings, parse_topology
from blockvault.errors import Conflict, InvalidArgument
from blockvault.peer.shared import RegionLock, SharedDirectorySource, SharedOffsetClock


def test_an_advance_in_one_process_moves_the_clock_of_the_other(tmp_path: Path) -> None:
    a, b = SharedOffsetClock(tmp_path / "clock-offset"), SharedOffsetClock(tmp_path / "clock-offset")
    assert a.offset == b.offset == timedelta(0)
    a.advance(timedelta(hours=1))
    assert b.offset == timedelta(hours=1)
    b.advance(timedelta(seconds=30))
    assert a.offset == timedelta(hours=1, seconds=30)
    assert abs(a.now() - b.now()) < timedelta(seconds=5)
    with pytest.raises(ValueError, match="forward"):
        a.advance(timedelta(seconds=-1))
    # a restarted process starts from the shared offset, not from zero
    assert SharedOffsetClock(tmp_path / "clock-offset").offset == timedelta(hours=1, seconds=30)


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def generation(self) -> int:
        return self.value

    def directory(self) -> object:
        return object()


def test_the_directory_generation_moves_when_another_connection_commits(tmp_path: Path) -> None:
    db = tmp_path / "identity.db"
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x)")
    writer.commit()
    inner = _Counter()
    source = SharedDirectorySource(inner, db)  # type: ignore[arg-type]
    first = source.generation()
    assert source.generation() == first  # nothing changed
    writer.execute("INSERT INTO t VALUES (1)")
    writer.commit()
    second = source.generation()
    assert second != first
    inner.value += 1  # this process's own change counter still counts
    assert source.generation() != second
    source.close()
    writer.close()


def test_a_region_is_served_by_one_process_at_a_time(tmp_path: Path) -> None:
    first = RegionLock(tmp_path / "r", "us-ashburn-1")
    with pytest.raises(Conflict, match="another blockvault serve process"):
        RegionLock(tmp_path / "r", "us-ashburn-1")
    first.release()
    RegionLock(tmp_path / "r", "us-ashburn-1").release()


def test_topology_parsing() -> None:
    served, peers = parse_topology("us-ashburn-1", ["us-phoenix-1=http://127.0.0.1:8081/"], DEFAULT_REGIONS)
    assert served == ("us-ashburn-1",)
    assert peers == (("us-phoenix-1", "http://127.0.0.1:8081"),)
    # served defaults to every region no peer serves
    assert parse_topology((), "us-ashburn-1=https://h:1", DEFAULT_REGIONS) == (
        ("us-phoenix-1",),
        (("us-ashburn-1", "https://h:1"),),
    )
    assert parse_topology((), "us-ashburn-1=http://localhost:1", DEFAULT_REGIONS)[1] == (
        ("us-ashburn-1", "http://localhost:1"),
    )
    assert parse_topology((), "us-ashburn-1=http://[::1]:1", DEFAULT_REGIONS)[1] == (
        ("us-ashburn-1", "http://[::1]:1"),
    )
    assert parse_topology((), (), DEFAULT_REGIONS) == ((), ())


@pytest.mark.parametrize(
    ("served", "peers"),
    [
        ("eu-frankfurt-1", ()),
        ((), ["us-phoenix-1"]),
        ((), ["us-phoenix-1=ftp://x"]),
        ((), ["eu-frankfurt-1=https://x:1"]),
        ("us-ashburn-1", ["us-ashburn-1=https://x:1"]),
        ((), ["us-phoenix-1=https://x:1", "us-phoenix-1=https://y:1"]),
        ((), ["us-phoenix-1=https://x:1", "us-ashburn-1=https://y:1"]),
    ],
)
def test_bad_topologies_are_refused(served: object, peers: object) -> None:
    with pytest.raises(InvalidArgument):
        parse_topology(served, peers, DEFAULT_REGIONS)


@pytest.mark.parametrize("url", ["http://10.0.0.5:8081", "http://peer.example:8081", "http://0.0.0.0:1"])
def test_plain_http_peer_off_loopback_is_refused(url: str) -> None:
    """Peer calls carry plaintext volume data: plain http only to this host; another host needs https."""
    with pytest.raises(InvalidArgument, match="https"):
        parse_topology((), [f"us-phoenix-1={url}"], DEFAULT_REGIONS)


def test_settings_give_each_region_its_endpoint(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {}, data_dir=str(tmp_path), port=8080, served_regions="us-ashburn-1", peers=["us-phoenix-1=https://h:8081"]
    )
    assert [rs.name for rs in settings.served] == ["us-ashburn-1"]
    assert [rs.name for rs in settings.reachable] == ["us-ashburn-1", "us-phoenix-1"]
    assert settings.region_url("us-ashburn-1") == "http://127.0.0.1:8080/us-ashburn-1"
    assert settings.region_url("us-phoenix-1") == "https://h:8081/us-phoenix-1"
    single = Settings.from_env({}, data_dir=str(tmp_path))
    assert single.served == single.regions
    assert single.peers == ()


_BUILD = """
import json, sys
from pathlib import Path
from blockvault.config import Settings
from blockvault.server import Server
region, peer, url = sys.argv[1:4]
settings = Settings(data_dir=Path(sys.argv[4]), port=1, nbd_port=0, served_regions=(region,), peers=((peer, url),))
server = Server(settings)
print(json.dumps({"tenancy": server.bootstrap.tenancy_id, "admin": server.bootstrap.admin_user_id,
                  "service": server.service_identity.key_id, "regions": sorted(server.regions),
                  "tenancies": len(server.identity.tenancies.find()),
                  "users": [u.name for u in server.identity.users.find()]}))
server.stop()
"""


def test_two_processes_bootstrapping_an_empty_data_dir_at_once_make_one_tenancy(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    runs = [
        ("us-ashburn-1", "us-phoenix-1", "http://127.0.0.1:2"),
        ("us-phoenix-1", "us-ashburn-1", "http://127.0.0.1:1"),
    ]
    procs = [
        subprocess.Popen([sys.executable, "-c", _BUILD, *run, str(data_dir)], stdout=subprocess.PIPE, text=True)
        for run in runs
    ]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    iad, phx = outs
    assert iad["tenancy"] == phx["tenancy"]
    assert iad["admin"] == phx["admin"]
    assert iad["service"] == phx["service"]
    assert (iad["tenancies"], phx["tenancies"]) == (1, 1)
    assert iad["users"] == phx["users"] == ["admin"]
    assert (iad["regions"], phx["regions"]) == (["us-ashburn-1"], ["us-phoenix-1"])


def test_a_region_is_refused_to_a_second_server_while_one_serves_it(tmp_path: Path) -> None:
    from blockvault.server import Server

    first = Server(Settings(data_dir=tmp_path / "data", port=1, nbd_port=0))
    try:
        with pytest.raises(Conflict, match="another blockvault serve process"):
            Server(Settings(data_dir=tmp_path / "data", port=1, nbd_port=0, served_regions=("us-phoenix-1",)))
    finally:
        first.stop()
