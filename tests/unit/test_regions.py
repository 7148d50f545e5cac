"""Cross-region backup copy through the in-process RegionClient (blockstorage/regions.py), on a real two-region
Server (no HTTP): the export reads plaintext chunks, the copy job re-encrypts under a new DEK, a crashed copy
restarts from scratch, and nothing is AVAILABLE half-done."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from blockvault.backup.format import UNIT_SIZE
from blockvault.blockstorage import regions
from blockvault.blockstorage.model import AVAILABLE, CREATING, GIB, Backup
from blockvault.blockstorage.regions import BackupExport, BackupLayout, ExportSource, InProcessRegionClient
from blockvault.config import Settings
from blockvault.errors import Conflict, IncorrectState, InvalidArgument, KeyUnusable, NotFound
from blockvault.server import Server

MIB = 1 << 20
IAD, PHX = "us-ashburn-1", "us-phoenix-1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(Settings(data_dir=tmp_path / "data", nbd_port=0))  # runners not started: drain() runs jobs
    yield srv
    for region in srv.regions.values():
        region.blockstorage.close()


def drain(srv: Server) -> None:
    """Run every pending job of every region to its end, in this thread (parked jobs are left pending)."""
    for _ in range(20):
        ran = False
        for region in srv.regions.values():
            for job in region.runner.pending():
                before = job.attempts
                region.runner.run_one(job)
                current = region.runner.repo.get(job.id)
                ran = ran or (current is not None and current.state not in ("ACCEPTED", "IN_PROGRESS"))
                assert current is not None
                assert current.attempts == before + 1
        if not ran:
            return


def _volume_with_backup(srv: Server, writes: list[tuple[int, bytes]]) -> tuple[str, Backup]:
    bs = srv.regions[IAD].blockstorage
    volume, _ = bs.create_volume(
        "volume",
        {"compartmentId": srv.bootstrap.tenancy_id, "availabilityDomain": "bvlt:US-ASHBURN-AD-1", "sizeInGBs": 50},
    )
    drain(srv)
    for offset, data in writes:
        bs.write("volume", volume.id, offset, data)
    backup, _ = bs.create_backup("volume", {"volumeId": volume.id, "type": "FULL"})
    drain(srv)
    backup = bs.get_backup("volume", backup.id)
    assert backup.state == AVAILABLE
    return volume.id, backup


WRITES = [(0, os.urandom(MIB)), (5 * MIB + 123, os.urandom(300_007)), (49 * GIB + 17, os.urandom(4096))]


def _restore_and_read(srv: Server, region: str, backup_id: str) -> dict[int, bytes]:
    bs = srv.regions[region].blockstorage
    volume, _ = bs.create_volume(
        "volume",
        {
            "compartmentId": srv.bootstrap.tenancy_id,
            "availabilityDomain": srv.regions[region].region.availability_domains[0],
            "sourceDetails": {"type": "volumeBackup", "id": backup_id},
        },
    )
    drain(srv)
    assert bs.get_volume("volume", volume.id).state == AVAILABLE
    return {offset: bs.read("volume", volume.id, offset, len(data)) for offset, data in WRITES}


def test_in_process_client_exports_plaintext_chunks(server: Server) -> None:
    volume_id, backup = _volume_with_backup(server, WRITES)
    client = InProcessRegionClient(server.regions[IAD].blockstorage)
    assert (client.region, client.region_key) == (IAD, "iad")
    assert client.get_backup("volume", backup.id).backup.id == backup.id
    assert client.check_exportable("volume", backup.id).state == AVAILABLE
    with pytest.raises(NotFound):
        client.get_backup("bootvolume", backup.id)
    export = client.open_export("volume", backup.id)
    try:
        layout = export.layout
        assert (layout.volume_id, layout.size_bytes) == (volume_id, 50 * GIB)
        source = ExportSource(export)
        for offset, data in WRITES:
            assert source.read(offset, len(data)) == data
        assert source.read(20 * GIB, 4096) == bytes(4096)  # a hole
        assert source.read_unit(0) == WRITES[0][1][:UNIT_SIZE]
        stored = [i for i, _ in export.layout.chunks]
        batch = export.read_chunks([stored[1], 1000, stored[0]])  # any order; 1000 is a hole
        assert batch[0] == source.read(stored[1] * layout.chunk_size, layout.chunk_size)
        assert batch[1] == bytes(layout.chunk_size)
        assert batch[2] == WRITES[0][1][: layout.chunk_size]
    finally:
        export.close()
    with pytest.raises(ValueError, match="closed"):
        export.read_chunks([0])


def test_copy_job_reencrypts_under_destination_provider_key(server: Server) -> None:
    _, backup = _volume_with_backup(server, WRITES)
    phx = server.regions[PHX].blockstorage
    copy, _ = phx.create_copy("volume", IAD, backup.id, {"displayName": "cp"})
    assert copy.id.startswith("ocid1.volumebackup.oc1.phx.")
    assert (copy.state, copy.kms_key_id, copy.type, copy.display_name) == (CREATING, None, "FULL", "cp")
    drain(server)
    done = phx.get_backup("volume", copy.id)
    assert (done.state, done.size_gb, done.type, done.kms_key_id) == (AVAILABLE, 50, "FULL", None)
    assert phx.copy_source(copy.id) == backup.id
    # own objects in phoenix's store, none shared with ashburn
    assert phx.objects.list(f"chunks/{copy.id}/")
    assert not server.regions[IAD].blockstorage.objects.list(f"chunks/{copy.id}/")
    # cross-region lookup by OCID region code, both directions
    assert server.regions[IAD].blockstorage.lookup_backup("volume", copy.id).source_backup_id == backup.id
    assert phx.lookup_backup("volume", backup.id).backup.id == backup.id
    restored = _restore_and_read(server, PHX, copy.id)
    assert restored == dict(WRITES)


def test_copy_validation_creates_nothing(server: Server) -> None:
    _, backup = _volume_with_backup(server, WRITES[:1])
    phx = server.regions[PHX].blockstorage
    iad_vault = server.regions[IAD].vault.create_vault(
        compartment_id=server.bootstrap.tenancy_id,
        display_name="v",
        vault_type="DEFAULT",
        freeform_tags={},
        defined_tags={},
    )
    before = phx.list_backups("volume", None, None, None, None)
    with pytest.raises(InvalidArgument, match="not in region"):
        phx.create_copy("volume", IAD, backup.id, {"kmsKeyId": iad_vault.id.replace("vault", "key", 1)})
    with pytest.raises(InvalidArgument):
        phx.create_copy("volume", IAD, backup.id, {"kmsKeyId": "not-an-ocid"})
    with pytest.raises(InvalidArgument):
        phx.create_copy("volume", "eu-frankfurt-1", backup.id, {})
    with pytest.raises(NotFound):
        phx.create_copy("bootvolume", IAD, backup.id, {})
    assert phx.list_backups("volume", None, None, None, None) == before


class _Crashing:
    """A BackupExport that dies after `limit` chunks, like a process killed mid-copy."""

    def __init__(self, inner: BackupExport, limit: int) -> None:
        self.inner, self.limit, self.reads = inner, limit, 0

    @property
    def layout(self) -> BackupLayout:
        return self.inner.layout

    def read_chunks(self, chunk_indexes: Sequence[int]) -> list[bytes]:
        self.reads += 1
        if self.reads > self.limit:
            raise SystemExit("killed")  # not a BlockvaultError: nothing may mark the copy done or failed
        return self.inner.read_chunks(chunk_indexes)

    def close(self) -> None:
        self.inner.close()


class _CrashingClient(InProcessRegionClient):
    def open_export(self, kind: str, backup_id: str) -> BackupExport:
        return _Crashing(super().open_export(kind, backup_id), limit=1)


def test_crashed_copy_restarts_from_scratch_and_is_never_available_half_done(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(regions, "BATCH", 2)  # several batches: the second one "kills the process"
    _, backup = _volume_with_backup(server, WRITES)
    phx, runner = server.regions[PHX].blockstorage, server.regions[PHX].runner
    copy, job_id = phx.create_copy("volume", IAD, backup.id, {})
    good = phx.peers[IAD]
    phx.peers[IAD] = _CrashingClient(server.regions[IAD].blockstorage)
    job = runner.repo.get(job_id)
    assert job is not None
    with pytest.raises(SystemExit):
        runner.run_one(job)
    assert phx.get_backup("volume", copy.id).state == CREATING
    assert not phx.objects.exists(f"manifests/{copy.id}")
    # whatever the crashed attempt managed to put, plus a stray object that no attempt would write again
    stray = f"chunks/{copy.id}/9999999999"
    phx.objects.put(stray, b"garbage of a crashed attempt")
    phx.peers[IAD] = good
    drain(server)  # the job is still IN_PROGRESS: it runs again from scratch
    assert phx.get_backup("volume", copy.id).state == AVAILABLE
    assert not phx.objects.exists(stray)
    assert _restore_and_read(server, PHX, copy.id) == dict(WRITES)


def test_source_key_disabled_refuses_then_copy_parks_until_enabled(server: Server) -> None:
    iad, phx = server.regions[IAD], server.regions[PHX].blockstorage
    tenancy = server.bootstrap.tenancy_id
    vault = iad.vault.create_vault(
        compartment_id=tenancy, display_name="v", vault_type="DEFAULT", freeform_tags={}, defined_tags={}
    )
    key = iad.vault.create_key(
        vault.id,
        compartment_id=tenancy,
        display_name="k",
        algorithm="AES",
        length=32,
        curve_id=None,
        protection_mode="SOFTWARE",
        freeform_tags={},
        defined_tags={},
    )
    bs = iad.blockstorage
    volume, _ = bs.create_volume(
        "volume",
        {"compartmentId": tenancy, "availabilityDomain": "bvlt:US-ASHBURN-AD-1", "sizeInGBs": 50, "kmsKeyId": key.id},
    )
    drain(server)
    bs.write("volume", volume.id, 0, b"x" * 4096)
    backup, _ = bs.create_backup("volume", {"volumeId": volume.id})
    with pytest.raises(IncorrectState):  # CREATING: transient, the CLI retries
        phx.create_copy("volume", IAD, backup.id, {})
    drain(server)
    iad.vault.key_action(key.id, vault.id, "disable")
    with pytest.raises(KeyUnusable) as info:  # D1, before anything is created
        phx.create_copy("volume", IAD, backup.id, {})
    assert isinstance(info.value, Conflict)
    assert key.id in str(info.value)
    iad.vault.key_action(key.id, vault.id, "enable")
    copy, _ = phx.create_copy("volume", IAD, backup.id, {})
    iad.vault.key_action(key.id, vault.id, "disable")
    drain(server)  # parks: the source's key is not usable
    assert phx.get_backup("volume", copy.id).state == CREATING
    iad.vault.key_action(key.id, vault.id, "enable")
    time.sleep(2.1)  # PARK_SECONDS
    drain(server)
    done = phx.get_backup("volume", copy.id)
    assert (done.state, done.kms_key_id) == (AVAILABLE, None)  # R3.26: never the source's key
