"""Crash safety: SIGKILL `blockvault serve` while a backup is being written, while a clone hydrates and while a
restore runs, then start it again on the same data dir. Every job converges (AVAILABLE / hydrated, or FAULTY
cleanly); nothing is ever AVAILABLE with wrong data; acknowledged writes survive. Checked byte for byte.

Uses its own server (conftest start_server/stop_server), never the session one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import GIB, MIB, Image, Sdk, e2e_conftest, payload, put, verify

pytestmark = pytest.mark.e2e

BIG = 16 * MIB  # four writes of this: 64 MiB of data in the volume


class Crashable:
    """A server of our own that we can kill -9 and start again on the same data dir and port."""

    def __init__(self, data_dir: Any) -> None:
        self.conf = e2e_conftest()
        self.data_dir = data_dir
        self.server = self.conf.start_server(data_dir)

    def crash_and_restart(self) -> None:
        self.conf.stop_server(self.server, kill=True)
        assert self.server.process.returncode == -9
        self.server = self.conf.start_server(self.data_dir, port=self.server.port)

    def stop(self) -> None:
        self.conf.stop_server(self.server)

    @property
    def sdk(self) -> Sdk:
        return Sdk(self.server)


@pytest.fixture
def crashable(tmp_path: Any) -> Iterator[Crashable]:
    srv = Crashable(tmp_path / "data")
    try:
        yield srv
    finally:
        srv.stop()


def _fill(server: Any, volume_id: str, tag: str) -> Image:
    image = Image()
    for n, offset in enumerate((0, GIB + 7, 10 * GIB + 4097, 30 * GIB)):
        put(server, volume_id, image, offset, payload(BIG, f"{tag}/{n}"))
    return image


def _settled_backup(sdk: Sdk, backup_id: str) -> Any:
    backup = sdk.wait_backup(backup_id, timeout=180)
    assert backup.lifecycle_state in ("AVAILABLE", "FAULTY"), backup.lifecycle_state
    return backup


def _check_backup(crashable: Crashable, compartment: str, backup_id: str, expected: Image, key: str) -> None:
    """An AVAILABLE backup restores to exactly the data at backup time; a FAULTY one refuses to restore."""
    sdk = crashable.sdk
    backup = _settled_backup(sdk, backup_id)
    if backup.lifecycle_state == "FAULTY":
        before = sdk.volume_ids(compartment)
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do; a volume must not appear
            sdk.restore(compartment, backup_id, wait=False)
        assert sdk.volume_ids(compartment) == before
        return
    assert backup.kms_key_id == key
    restored = sdk.restore(compartment, backup_id, name=f"restore-{backup_id[-6:]}")
    restored = sdk.wait_hydrated(restored.id, timeout=180)
    assert restored.lifecycle_state == "AVAILABLE"
    verify(crashable.server, restored.id, expected)


def _check_clone(crashable: Crashable, clone_id: str, expected: Image) -> Image | None:
    """A clone ends hydrated with the source's data at clone time, or FAULTY."""
    sdk = crashable.sdk
    clone = sdk.wait_hydrated(clone_id, timeout=180)
    if clone.lifecycle_state == "FAULTY":
        return None
    assert clone.lifecycle_state == "AVAILABLE"
    assert clone.is_hydrated is True
    verify(crashable.server, clone_id, expected)
    return expected.copy()


def test_kill_during_backup_clone_and_restore(crashable: Crashable) -> None:
    sdk = crashable.sdk
    compartment = sdk.new_compartment("restart")
    vault = sdk.new_vault(compartment, "vault-restart")
    key = sdk.new_key(vault, compartment, "k-restart").id
    volume = sdk.create_volume(compartment, name="restart-src", kms_key_id=key)
    image = _fill(crashable.server, volume.id, "v1")
    verify(crashable.server, volume.id, image)

    # 1. Killed while a FULL backup of ~64 MiB is CREATING (or right after the create call).
    backup = sdk.backup(volume.id, "FULL", name="in-flight", wait=False)
    assert backup.lifecycle_state in ("CREATING", "REQUEST_RECEIVED")
    at_backup = image.copy()
    crashable.crash_and_restart()
    sdk = crashable.sdk
    verify(crashable.server, volume.id, image)  # acknowledged writes survived the kill
    _check_backup(crashable, compartment, backup.id, at_backup, key)
    assert sdk.bs.get_volume(volume.id).data.lifecycle_state == "AVAILABLE"
    # Whatever happened to it, the volume can be backed up again.
    again = sdk.backup(volume.id, "FULL", name="after-restart")
    assert again.lifecycle_state == "AVAILABLE"
    _check_backup(crashable, compartment, again.id, at_backup, key)

    # 2. Killed while a clone hydrates.
    put(crashable.server, volume.id, image, 5 * GIB + 3, payload(BIG, "v2"))
    clone = sdk.clone(compartment, volume.id, name="hydrating", wait=False)
    at_clone = image.copy()
    crashable.crash_and_restart()
    sdk = crashable.sdk
    verify(crashable.server, volume.id, image)
    clone_image = _check_clone(crashable, clone.id, at_clone)
    # The clone and its source are independent afterwards.
    put(crashable.server, volume.id, image, 7, payload(MIB, "src-after-restart"))
    if clone_image is not None:
        put(crashable.server, clone.id, clone_image, 20 * GIB + 1, payload(MIB, "clone-after-restart"))
        verify(crashable.server, clone.id, clone_image)
    verify(crashable.server, volume.id, image)

    # 3. Killed with a backup, a clone and a restore all in flight at once.
    incr = sdk.backup(volume.id, "INCREMENTAL", name="in-flight-2", wait=False)
    at_incr = image.copy()
    clone2 = sdk.clone(compartment, volume.id, name="hydrating-2", wait=False)
    restore = sdk.restore(compartment, again.id, name="restoring", wait=False)
    crashable.crash_and_restart()
    sdk = crashable.sdk
    verify(crashable.server, volume.id, image)
    _check_backup(crashable, compartment, incr.id, at_incr, key)
    _check_clone(crashable, clone2.id, at_incr)
    restored = sdk.wait_hydrated(restore.id, timeout=180)
    if restored.lifecycle_state != "FAULTY":
        assert restored.lifecycle_state == "AVAILABLE"
        verify(crashable.server, restore.id, at_backup)
