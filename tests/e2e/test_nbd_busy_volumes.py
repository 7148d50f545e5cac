"""NBD on volumes that are busy with a job (nbd.md "Key state on the data path", last item): a clone that is still
hydrating and a volume with a backup in progress serve NBD I/O normally, with real clients and data checked byte
for byte. A few tens of MiB make the jobs take a moment; each test records that the job really was in progress
when the first NBD I/O ran (else it would test nothing).

The kernel client (nbd-client + /dev/nbdX) runs only where the nbd module is present: see
test_kernel_nbd_client and nbd.md "Clients".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import MIB, Sdk, raw

pytestmark = pytest.mark.e2e

SIZE = 48 * MIB
CLONE_SIZE = 160 * MIB  # hydration copies fast: give it enough to still be running after the first NBD I/O


@pytest.fixture(scope="module")
def sdk(server: Any) -> Sdk:
    return Sdk(server)


@pytest.fixture(scope="module")
def compartment(sdk: Sdk) -> str:
    return sdk.new_compartment("nbd-busy")


def run(*cmd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    return proc


def attach(server: Any, volume_id: str) -> tuple[str, str]:
    """Attach through the REST API (no CLI start-up time: the clone test races its hydration)."""
    resp = raw(server, "POST", f"/20160918/volumes/{volume_id}/actions/attach", json_body={"transport": "plain"})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    return str(data["uri"]), str(data["exportName"])


def nbd_read(server: Any, export: str, length: int, out: Path) -> bytes:
    """The first `length` bytes of the export, through qemu-img convert (a raw layer bounds the size)."""
    run(
        "qemu-img",
        "convert",
        "-O",
        "raw",
        "--image-opts",
        f"driver=raw,size={length},file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,"
        f"file.server.port={server.nbd_port},file.export={export}",
        str(out),
    )
    return out.read_bytes()


def rest_read(server: Any, volume_id: str, offset: int, length: int) -> bytes:
    resp = raw(server, "GET", f"/20160918/volumes/{volume_id}/data", params={"offset": offset, "length": length})
    assert resp.status_code == 200, resp.text
    return resp.content


def filled_volume(
    server: Any, sdk: Sdk, compartment: str, name: str, tmp_path: Path, size: int = SIZE
) -> tuple[Any, bytes]:
    volume = sdk.create_volume(compartment, name=name)
    data = os.urandom(size)
    image = tmp_path / f"{name}.img"
    image.write_bytes(data)
    uri, _export = attach(server, volume.id)
    run("nbdcopy", "--flush", str(image), uri)
    return volume, data


def test_hydrating_clone_serves_nbd_reads_and_writes(server: Any, sdk: Sdk, compartment: str, tmp_path: Path) -> None:
    size = CLONE_SIZE
    source, data = filled_volume(server, sdk, compartment, "busy-src", tmp_path, size)
    clone = sdk.clone(compartment, source.id, name="busy-clone", wait=False)
    deadline = time.monotonic() + 120
    while sdk.bs.get_volume(clone.id).data.lifecycle_state != "AVAILABLE":  # AVAILABLE once its store exists
        assert time.monotonic() < deadline, "the clone did not become AVAILABLE"
        time.sleep(0.02)
    uri, export = attach(server, clone.id)
    # Writes while hydrating: they must win over the units the hydration would copy later.
    tail = size - 4 * MIB + 512
    run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k", "-c", f"write -P 0xa5 {tail} 4k", "-c", "flush", uri)
    hydrating = sdk.bs.get_volume(clone.id).data.is_hydrated is False
    assert hydrating, "the clone was hydrated before the NBD writes returned: raise CLONE_SIZE"
    expected = bytearray(data)
    expected[MIB : MIB + 65536] = b"\x5a" * 65536
    expected[tail : tail + 4096] = b"\xa5" * 4096
    assert nbd_read(server, export, size, tmp_path / "clone-1.img") == expected
    assert sdk.wait_hydrated(clone.id, timeout=300).is_hydrated is True
    assert nbd_read(server, export, size, tmp_path / "clone-2.img") == expected
    assert rest_read(server, clone.id, 0, 8 * MIB) == expected[: 8 * MIB]
    assert rest_read(server, source.id, MIB, 65536) == data[MIB : MIB + 65536]  # the source is untouched


def test_volume_with_backup_in_progress_serves_nbd_io(server: Any, sdk: Sdk, compartment: str, tmp_path: Path) -> None:
    volume, data = filled_volume(server, sdk, compartment, "busy-backup", tmp_path)
    uri, export = attach(server, volume.id)
    backup = sdk.backup(volume.id, "FULL", name="busy", wait=False)
    run("qemu-io", "-f", "raw", "-c", "write -P 0x33 2M 128k", "-c", "flush", uri)
    in_progress = sdk.bs.get_volume_backup(backup.id).data.lifecycle_state == "CREATING"
    read = nbd_read(server, export, SIZE, tmp_path / "during.img")
    assert in_progress, "the backup finished before the NBD I/O: raise SIZE"
    expected = bytearray(data)
    expected[2 * MIB : 2 * MIB + 131072] = b"\x33" * 131072
    assert read == expected
    assert sdk.wait_backup(backup.id, timeout=300).lifecycle_state == "AVAILABLE"
    assert nbd_read(server, export, SIZE, tmp_path / "after.img") == expected
    # The backup holds the point in time of its creation (R3.4), not the write that raced it.
    restored = sdk.restore(compartment, backup.id, name="busy-restored")
    sdk.wait_volume(restored.id, timeout=300)
    assert rest_read(server, restored.id, 0, SIZE) == data


def test_kernel_nbd_client(server: Any, sdk: Sdk, compartment: str, tmp_path: Path) -> None:
    """Only where the kernel has NBD (/dev/nbd0 exists, i.e. the nbd module is loaded or built in) and
    nbd-client is installed; elsewhere this is an explicit skip with the reason (nbd.md "Clients")."""
    if not Path("/dev/nbd0").exists():
        pytest.skip("no /dev/nbd0: the kernel has no NBD driver (modprobe nbd unavailable or CONFIG_BLK_DEV_NBD off)")
    if shutil.which("nbd-client") is None:
        pytest.skip("nbd-client is not installed (apt-get install nbd-client)")
    volume = sdk.create_volume(compartment, name="kernel-nbd")
    _uri, export = attach(server, volume.id)
    device = "/dev/nbd0"
    run("nbd-client", "127.0.0.1", str(server.nbd_port), device, "-N", export, "-b", "4096")
    try:
        data = os.urandom(4 * MIB)
        with open(device, "r+b", buffering=0) as dev:
            dev.write(data)
            os.fsync(dev.fileno())
            dev.seek(0)
            assert dev.read(len(data)) == data
    finally:
        run("nbd-client", "-d", device)
    assert rest_read(server, volume.id, 0, 4 * MIB) == data
