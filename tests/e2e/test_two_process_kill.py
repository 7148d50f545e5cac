"""kill -9 either region's process in the middle of a cross-region backup copy (docs/design/regions.md, "Failure
behaviour"): after a restart the copy converges to AVAILABLE with exactly the source's data, and at no point is a
half-copied backup AVAILABLE.

- Destination killed: its copy job is durable (ACCEPTED/IN_PROGRESS in its region database) and idempotent (the
  half-written chunks are deleted, the manifest is committed last): the restarted process copies again.
- Source killed: the destination's job sees its batch reads fail, retries them, and when the restarted source no
  longer knows the export handle, opens the export again (the backup is immutable) and goes on.

These tests run their own two-process deployment: they kill its processes.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import oci
import pytest
from helpers import MIB, Sdk, e2e_conftest, raw, read, wait_for, write

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"
# Large enough that the copy takes seconds on this machine (~100 MB/s between processes), so that the kill lands
# while the copy job is IN_PROGRESS; the test fails (it does not pass vacuously) if the copy ends first.
COPY_MIB = 320


@dataclass
class Source:
    server: Any
    iad: Sdk
    phx: Sdk
    compartment: str
    backup_id: str
    digest: str


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    conftest = e2e_conftest()
    server = conftest.start_two_process(tmp_path_factory.mktemp("bv-kill") / "data")
    try:
        iad, phx = Sdk(server, IAD), Sdk(server, PHX)
        compartment = iad.new_compartment("kill")
        volume = iad.create_volume(compartment, name="kill-src", size_gb=50)
        data = os.urandom(COPY_MIB * MIB)  # incompressible: the copy moves every byte
        write(server, volume.id, 0, data)
        backup = iad.backup(volume.id, "FULL", name="kill-src-backup")
        assert backup.lifecycle_state == "AVAILABLE"
        yield Source(server, iad, phx, compartment, backup.id, hashlib.sha256(data).hexdigest())
    finally:
        server.stop_all()


def _job(src: Source, job_id: str) -> dict[str, Any]:
    resp = raw(src.server, "GET", f"/20160918/workRequests/{job_id}", region=PHX)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _wait_mid_copy(src: Source, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = _job(src, job_id)
        if job["status"] in ("SUCCEEDED", "FAILED"):
            pytest.fail(f"the copy ended ({job['status']}) before it could be interrupted: raise COPY_MIB")
        if job["status"] == "IN_PROGRESS" and 0 < job["percentComplete"] < 70:
            return job
        time.sleep(0.02)
    pytest.fail("the copy job never showed progress")


def _restored_digest(src: Source, copy_id: str) -> str:
    restored = src.phx.restore(src.compartment, copy_id, name="from-interrupted-copy")
    assert restored.lifecycle_state == "AVAILABLE", restored
    return hashlib.sha256(read(src.server, restored.id, 0, COPY_MIB * MIB, region=PHX)).hexdigest()


@pytest.mark.parametrize("victim", [PHX, IAD], ids=["destination-killed", "source-killed"])
def test_kill_mid_copy_then_restart_converges_and_nothing_half_copied_is_available(source: Source, victim: str) -> None:
    src = source
    resp = src.iad.bs.copy_volume_backup(
        src.backup_id, oci.core.models.CopyVolumeBackupDetails(destination_region=PHX, display_name=f"kill-{victim}")
    )
    copy_id, job_id = resp.data.id, resp.headers["opc-work-request-id"]
    _wait_mid_copy(src, job_id)

    src.server.kill(victim)
    if victim == IAD:
        # The destination is up: its copy is still CREATING (never AVAILABLE while the source is gone).
        assert src.phx.bs.get_volume_backup(copy_id).data.lifecycle_state == "CREATING"
    src.server.spawn(victim)

    done = wait_for(
        lambda: src.phx.bs.get_volume_backup(copy_id).data,
        lambda b: b.lifecycle_state in ("AVAILABLE", "FAULTY"),
        timeout=300,
        what=f"copy {copy_id} settled",
    )
    assert done.lifecycle_state == "AVAILABLE", f"the copy did not converge: {done.lifecycle_state}"
    assert _job(src, job_id)["status"] == "SUCCEEDED"
    assert _restored_digest(src, copy_id) == src.digest


def test_a_copy_into_a_region_whose_process_is_down_is_503_and_creates_nothing(source: Source) -> None:
    src = source
    src.server.kill(PHX)
    try:
        details = oci.core.models.CopyVolumeBackupDetails(destination_region=PHX, display_name="while-down")
        with pytest.raises(oci.exceptions.ServiceError) as caught:
            src.iad.bs.copy_volume_backup(src.backup_id, details, retry_strategy=oci.retry.NoneRetryStrategy())
        assert (caught.value.status, caught.value.code) == (503, "ServiceUnavailable")
        assert PHX in caught.value.message
    finally:
        src.server.spawn(PHX)
    names = [b.display_name for b in src.phx.bs.list_volume_backups(src.compartment).data]
    assert "while-down" not in names
