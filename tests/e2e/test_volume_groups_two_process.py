"""Volume group backup copy with the regions in two `blockvault serve` processes (docs/design/volume-groups.md,
docs/design/regions.md).

The copy flow of test_volume_groups.py, whose body is imported here, runs against `two_process_server`: the group
backup is made in the ashburn process, CopyVolumeGroupBackup on ashburn's endpoint asks the phoenix process to make
the copy (BackupCopyTarget.create_group_backup_copy: the kmsKeyId's delegation is checked there, for the caller),
phoenix's copy jobs read every member backup from ashburn over the peer transport, the CLI's waiter polls the copy
through ashburn's endpoint (RegionClient.get_group_backup), and the copy restores in phoenix byte for byte.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_volume_groups import (  # noqa: F401 - the fixture and test body, re-collected here
    World,
    test_group_backup_copy_to_another_region_restores_there,
    world,
)

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"


@pytest.fixture(scope="module")
def server(two_process_server: Any) -> Any:
    """This module's `server` is the two-process deployment (overrides the session's one-process server)."""
    return two_process_server


def test_the_group_backup_copy_lives_in_the_phoenix_process(world: World) -> None:  # noqa: F811
    """After the copy above: the copy is phoenix's (its OCID, its process), and the source names it nowhere."""
    srv = world.server
    assert srv.processes[IAD].pid != srv.processes[PHX].pid
    copies = [
        b
        for b in srv.oci(
            "bv", "volume-group-backup", "list", "-c", world.compartment, "--all", endpoint=srv.endpoint(PHX)
        ).json["data"]
        if b.get("source-volume-group-backup-id")
    ]
    assert copies, "the copy test above made a group backup copy in phoenix"
    assert all(b["id"].startswith("ocid1.volumegroupbackup.oc1.phx.") for b in copies)
    in_iad = srv.oci("bv", "volume-group-backup", "list", "-c", world.compartment, "--all").json["data"]
    assert not [b for b in in_iad if b["id"] in {c["id"] for c in copies}]
