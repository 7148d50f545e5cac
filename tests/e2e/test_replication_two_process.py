"""Block volume replication with the regions in two `blockvault serve` processes (docs/design/replication.md,
docs/design/regions.md).

The main flows of test_replication.py, whose bodies are imported here, run against `two_process_server`: the
replica is created in the phoenix process (RegionClient.create_replica over the peer transport), an xrrKmsKeyId of
phoenix's Vault is authorized in the phoenix process for the caller's principal (BackupCopyTarget.authorize_key_use;
absent and forbidden keys give the same 400 RelatedResourceNotAuthorizedOrNotFound naming xrrKmsKeyId), the
phoenix sync job reads the ashburn snapshot over HTTP, and the replica is read and activated on phoenix's endpoint.
The admin clock is one clock for both processes (regions.md I5), so advancing it through ashburn makes phoenix's
scheduler sync.

Then kill -9 of either process in the middle of a sync (a deployment of our own): the replica converges after the
restart, and at no point does it report a sync point whose data is not all there.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import oci
import pytest
from helpers import MIB, Image, Sdk, advance_clock, e2e_conftest, payload, put, raw, server_now, verify, wait_for
from iam_helpers import new_user, oci_as, policy
from test_replication import (  # noqa: F401 - the fixture and test bodies, re-collected here
    IAD,
    INTERVAL,
    PHX,
    World,
    _replicating_volume,
    _sync_past,
    _wait_available,
    test_cli_turns_replication_on_and_activation_gives_the_sync_point_byte_for_byte,
    test_key_errors_are_clear_and_create_nothing,
    test_our_cli_replicates_lists_and_activates_with_a_new_key,
    test_replica_data_needs_only_the_destination_key_d1_both_ways,
    test_turning_replication_on_needs_replica_permissions_and_the_destination_key,
    world,
)

pytestmark = pytest.mark.e2e
models = oci.core.models


@pytest.fixture(scope="module")
def server(two_process_server: Any) -> Any:
    """This module's `server` is the two-process deployment (overrides the session's one-process server)."""
    return two_process_server


def test_the_replica_and_its_data_live_in_the_phoenix_process(world: World) -> None:  # noqa: F811
    srv = world.server
    assert srv.processes[IAD].pid != srv.processes[PHX].pid
    volume_id, replica_id, _ = _replicating_volume(world, "where", xrr_key=world.phx_key.id)
    # ashburn's endpoint does not answer for phoenix (421), phoenix's does
    wrong = raw(srv, "GET", f"/20160918/blockVolumeReplicas/{replica_id}", base=srv.endpoint(IAD).replace(IAD, PHX))
    assert wrong.status_code == 421, wrong.text
    assert world.phx.bs.get_block_volume_replica(replica_id).data.block_volume_id == volume_id


def test_absent_and_forbidden_destination_keys_are_the_same_400_across_processes(
    world: World,  # noqa: F811 - the imported fixture
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """D6 when the key's region is another process: a user who may create replicas and copies but may not delegate
    (or even see) the phoenix key gets, for the real key and for an absent one, the same 400
    RelatedResourceNotAuthorizedOrNotFound with the same message (but for the OCID), naming the field; nothing is
    created. Both fields whose key lives in the destination: xrrKmsKeyId (replica) and kmsKeyId (backup copy)."""
    srv = world.server
    user = new_user(srv, tmp_path_factory.mktemp("repl-2p-iam"), "nokey")
    group = f"nokey-{uuid.uuid4().hex[:6]}"
    gid = srv.oci("iam", "group", "create", "--name", group, "--description", "no keys").json["data"]["id"]
    srv.oci("iam", "group", "add-user", "--group-id", gid, "--user-id", user.id)
    name = srv.oci("iam", "compartment", "get", "--compartment-id", world.compartment).json["data"]["name"]
    policy(
        srv,
        srv.tenancy,
        "nokey",
        f"Allow group {group} to manage volume-family in compartment {name}",
        f"Allow group {group} to manage volume-backups in compartment {name}",  # the family excludes the copy
    )
    volume = world.iad.create_volume(world.compartment, name="nokey-src")
    backup = world.iad.backup(volume.id, name="nokey-backup")
    absent = world.phx_key.id[:-6] + "zzzzzz"

    def replicate(key: str) -> Any:
        spec = json.dumps([{"availabilityDomain": world.phx.ad(1), "xrrKmsKeyId": key}])
        return oci_as(srv, user, "bv", "volume", "update", "--volume-id", volume.id, "--block-volume-replicas", spec,
                      "--force", check=False, endpoint=srv.endpoint(IAD))  # fmt: skip

    def copy(key: str) -> Any:
        return oci_as(srv, user, "bv", "backup", "copy", "--volume-backup-id", backup.id, "--destination-region", PHX,
                      "--kms-key-id", key, check=False, endpoint=srv.endpoint(IAD))  # fmt: skip

    for call, field in ((replicate, "xrrKmsKeyId"), (copy, "kmsKeyId")):
        forbidden = wait_for(
            lambda c=call: c(world.phx_key.id),  # type: ignore[misc]
            lambda r: r.rc != 0 and "RelatedResource" in r.err,
            what=f"{field} refused",
            timeout=30,
        )
        missing = call(absent)
        for result in (forbidden, missing):
            assert (result.error["status"], result.error["code"]) == (400, "RelatedResourceNotAuthorizedOrNotFound")
            assert field in result.error["message"]
        assert forbidden.error["message"].replace(world.phx_key.id, "K") == missing.error["message"].replace(
            absent, "K"
        )
    assert world.iad.bs.get_volume(volume.id).data.block_volume_replicas is None
    assert "nokey-backup" not in {b.display_name for b in world.phx.bs.list_volume_backups(world.compartment).data}


# --------------------------------------------------------------------------------------------- kill -9

# Large enough that a sync takes seconds between two processes on this machine, so that the kill lands while the
# sync job is IN_PROGRESS; the test fails (it does not pass vacuously) if the sync ends first.
SYNC_MIB = 384


@dataclass
class Deployment:
    server: Any
    iad: Sdk
    phx: Sdk
    compartment: str
    phx_key: Any


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    conf = e2e_conftest()
    srv = conf.start_two_process(tmp_path_factory.mktemp("repl-kill") / "data")
    try:
        iad, phx = Sdk(srv, IAD), Sdk(srv, PHX)
        compartment = iad.new_compartment("repl-kill")
        phx_vault = phx.new_vault(compartment, "phx-vault")
        yield Deployment(srv, iad, phx, compartment, phx.new_key(phx_vault, compartment, "phx-key"))
    finally:
        srv.stop_all()


def _sync_job(dep: Deployment, replica_id: str, generation: int) -> tuple[str, float] | None:
    """(state, percentComplete) of the replica's sync number `generation`, read from phoenix's region database (the
    API answers a work request by id only, and a sync's id is listed nowhere). A read-only probe: the job's state
    is what the kill has to land in, the assertions go through the API."""
    db = dep.server.data_dir / "regions" / PHX / "meta.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT state, percent_complete, payload FROM jobs WHERE operation = 'SyncReplica' AND resource_id = ?",
            (replica_id,),
        ).fetchall()
    finally:
        conn.close()
    for state, percent, body in rows:
        if json.loads(body).get("generation") == generation:
            return str(state), float(percent)
    return None


def _wait_mid_sync(dep: Deployment, replica_id: str, generation: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = _sync_job(dep, replica_id, generation)
        if job is not None:
            state, percent = job
            if state in ("SUCCEEDED", "FAILED"):
                pytest.fail(f"sync {generation} ended ({state}) before it could be interrupted: raise SYNC_MIB")
            if state == "IN_PROGRESS" and percent < 80:  # running (0: taking the snapshot or the first batches)
                return
        time.sleep(0.005)
    pytest.fail(f"sync {generation} never showed progress")


def _activate(dep: Deployment, replica_id: str, name: str) -> str:
    volume = dep.phx.create_volume(
        dep.compartment,
        ad=dep.phx.ad(1),
        size_gb=None,
        source=models.VolumeSourceFromBlockVolumeReplicaDetails(id=replica_id),
        name=name,
    )
    assert volume.lifecycle_state == "AVAILABLE", volume
    return str(volume.id)


def _write_big(dep: Deployment, volume_id: str, image: Image, tag: str) -> None:
    for n in range(SYNC_MIB // 32):  # spread over the volume, unaligned: 32 MiB pieces of incompressible data
        put(dep.server, volume_id, image, n * 1536 * MIB + n * 4097, payload(32 * MIB, f"{tag}/{n}"))


@pytest.mark.parametrize("victim", [PHX, IAD], ids=["destination-killed", "source-killed"])
def test_kill_9_mid_sync_converges_and_never_reports_a_partial_sync_point(deployment: Deployment, victim: str) -> None:
    dep = deployment
    srv = dep.server
    volume = dep.iad.create_volume(dep.compartment, name=f"kill-{victim}")
    image = Image()
    _write_big(dep, volume.id, image, f"first/{victim}")
    dep.iad.bs.update_volume(
        volume.id,
        models.UpdateVolumeDetails(
            block_volume_replicas=[
                models.BlockVolumeReplicaDetails(availability_domain=dep.phx.ad(1), xrr_kms_key_id=dep.phx_key.id)
            ]
        ),
    )
    replica_id = dep.iad.bs.get_volume(volume.id).data.block_volume_replicas[0].block_volume_replica_id

    # the initial sync, interrupted
    _wait_mid_sync(dep, replica_id, 1)
    srv.kill(victim)
    if victim == IAD:  # the destination is up: the replica is still PROVISIONING, never AVAILABLE half synced
        assert dep.phx.bs.get_block_volume_replica(replica_id).data.lifecycle_state == "PROVISIONING"
    srv.spawn(victim)
    first = _wait_available(dep.phx, replica_id)
    assert first.lifecycle_state == "AVAILABLE", first
    verify(srv, _activate(dep, replica_id, f"first-{victim}"), image, region=PHX)

    # a second round: new data, a forced sync, kill -9 while it runs
    at_first = image.copy()
    _write_big(dep, volume.id, image, f"second/{victim}")
    moment = server_now(srv)
    advance_clock(srv, INTERVAL + 1)
    _wait_mid_sync(dep, replica_id, 2)
    srv.kill(victim)
    if victim == IAD:
        shown = dep.phx.bs.get_block_volume_replica(replica_id).data
        assert shown.time_last_synced == first.time_last_synced  # the interrupted sync point is not reported
        verify(srv, _activate(dep, replica_id, f"while-source-down-{victim}"), at_first, region=PHX)
    srv.spawn(victim)
    # whatever sync point the replica reports, activation gives exactly that point's data
    now = dep.phx.bs.get_block_volume_replica(replica_id).data
    assert now.lifecycle_state == "AVAILABLE"
    expected = image if now.time_last_synced >= moment else at_first
    verify(srv, _activate(dep, replica_id, f"early-{victim}"), expected, region=PHX)
    # and the sync converges after the restart
    done = _sync_past(srv, dep.phx, replica_id, moment)
    assert done.lifecycle_state == "AVAILABLE"
    verify(srv, _activate(dep, replica_id, f"late-{victim}"), image, region=PHX)
